//! Templates, sync runs and leases.

use super::*;

/// Every put is a new version; the latest is the default.
pub async fn templates_are_versioned(store: Store) -> CheckResult {
    let t = t0();
    let id = unique("tpl");
    let (v1, v2) = (template("orders")?, template("orders_v2")?);
    expect_eq(
        "first version",
        store
            .put_template(&id, "source 1", &v1, t)
            .await
            .ctx("put_template")?,
        1,
    )?;
    let later = t + Duration::seconds(1);
    expect_eq(
        "second version",
        store
            .put_template(&id, "source 2", &v2, later)
            .await
            .ctx("put_template")?,
        2,
    )?;
    let latest = store
        .get_template(&id, None)
        .await
        .ctx("get_template")?
        .ok_or("latest missing")?;
    expect_eq(
        "latest",
        (
            latest.version,
            latest.source.as_str(),
            &latest.template,
            latest.created_at,
        ),
        (2, "source 2", &v2, later),
    )?;
    let first = store
        .get_template(&id, Some(1))
        .await
        .ctx("get_template")?
        .ok_or("v1 missing")?;
    expect_eq(
        "v1",
        (
            first.id.as_str(),
            first.version,
            first.source.as_str(),
            &first.template,
            first.created_at,
        ),
        (id.as_str(), 1, "source 1", &v1, t),
    )?;
    expect_eq(
        "v3",
        store.get_template(&id, Some(3)).await.ctx("get_template")?,
        None,
    )?;
    expect_eq(
        "unknown template",
        store
            .get_template(&unique("tpl-none"), None)
            .await
            .ctx("get_template")?,
        None,
    )?;
    let all = store.list_templates().await.ctx("list_templates")?;
    expect_eq(
        "listed version",
        all.iter().find(|s| s.id == id).map(|s| s.version),
        Some(2),
    )
}

/// Four writers adding versions of one template at once get four distinct versions.
pub async fn concurrent_template_versions_are_distinct(store: Store) -> CheckResult {
    let t = t0();
    let id = unique("tpl-race");
    let tpl = template("race")?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (store, id, tpl) = (store.clone(), id.clone(), tpl.clone());
        tasks.spawn(async move {
            store
                .put_template(&id, &format!("source {i}"), &tpl, t)
                .await
        });
    }
    let mut versions = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        versions.push(joined.ctx("join")?.ctx("put_template")?);
    }
    versions.sort_unstable();
    expect_eq("versions", versions, vec![1, 2, 3, 4])
}

/// Sync runs list newest first, and the last recorded is the connector's last sync.
pub async fn sync_runs_newest_first(store: Store) -> CheckResult {
    let t = t0();
    let conn = create_new_connector(&store, "runs", t).await?;
    let runs: Vec<SyncRun> = (0..3)
        .map(|i| run(&conn.id, t + Duration::seconds(i), i as u64))
        .collect();
    // Recorded out of order: listing sorts by start time, not by insertion.
    for r in [&runs[1], &runs[0], &runs[2]] {
        store.record_sync_run(r).await.ctx("record_sync_run")?;
    }
    let newest_first = vec![runs[2].clone(), runs[1].clone(), runs[0].clone()];
    expect_eq(
        "all runs",
        store
            .list_sync_runs(&conn.id, 10)
            .await
            .ctx("list_sync_runs")?,
        newest_first.clone(),
    )?;
    expect_eq(
        "two runs",
        store
            .list_sync_runs(&conn.id, 2)
            .await
            .ctx("list_sync_runs")?,
        newest_first[..2].to_vec(),
    )?;
    expect_eq(
        "no runs",
        store
            .list_sync_runs(&conn.id, 0)
            .await
            .ctx("list_sync_runs")?,
        vec![],
    )?;
    let last = store
        .get_connector(&conn.id)
        .await
        .ctx("get")?
        .and_then(|c| c.last_sync);
    expect_eq("last sync", last, Some(runs[2].clone()))?;
    let mut failed = run(&conn.id, t + Duration::seconds(10), 0);
    failed.error = Some("cannot list s3://source-bucket/incoming/: AccessDenied".into());
    store
        .record_sync_run(&failed)
        .await
        .ctx("record_sync_run")?;
    expect_eq(
        "latest run",
        store
            .list_sync_runs(&conn.id, 1)
            .await
            .ctx("list_sync_runs")?,
        vec![failed],
    )?;
    is_not_found(
        "recording for an unknown connector",
        store.record_sync_run(&run(&unique("c-none"), t, 0)).await,
    )?;
    clean_up(&store, &conn.id).await
}

/// A named lease has one holder until it expires; the holder may renew and release it.
pub async fn lease_is_exclusive_until_expiry(store: Store) -> CheckResult {
    let t = t0();
    let name = unique("lease");
    let ttl = Duration::minutes(1);
    let acquire = |owner: &'static str, at: DateTime<Utc>| {
        let (store, name) = (store.clone(), name.clone());
        async move {
            store
                .acquire_lease(&name, owner, at, ttl)
                .await
                .ctx("acquire_lease")
        }
    };
    expect("a takes the free lease", acquire("a", t).await?)?;
    expect(
        "b must not take a live lease",
        !acquire("b", t + Duration::seconds(30)).await?,
    )?;
    expect(
        "a renews its own lease",
        acquire("a", t + Duration::seconds(30)).await?,
    )?;
    expect(
        "b must not take the renewed lease",
        !acquire("b", t + Duration::seconds(80)).await?,
    )?;
    expect(
        "b must not take it at its last instant",
        !acquire("b", t + Duration::seconds(90)).await?,
    )?;
    expect(
        "b takes the expired lease",
        acquire("b", t + Duration::seconds(91)).await?,
    )?;
    store
        .release_lease(&name, "a")
        .await
        .ctx("release by a former holder")?;
    expect(
        "a must not take b's lease",
        !acquire("a", t + Duration::seconds(92)).await?,
    )?;
    store.release_lease(&name, "b").await.ctx("release_lease")?;
    expect(
        "a takes the released lease",
        acquire("a", t + Duration::seconds(92)).await?,
    )?;
    store.release_lease(&name, "a").await.ctx("release_lease")
}

/// Six listers firing at once for one connector: one takes the lease.
pub async fn concurrent_lease_acquisitions_one_wins(store: Store) -> CheckResult {
    let t = t0();
    let name = unique("lease-race");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (store, name) = (store.clone(), name.clone());
        tasks.spawn(async move {
            store
                .acquire_lease(&name, &format!("l{i}"), t, Duration::minutes(1))
                .await
        });
    }
    let mut taken = 0;
    while let Some(joined) = tasks.join_next().await {
        taken += usize::from(joined.ctx("join")?.ctx("acquire_lease")?);
    }
    expect_eq("concurrent acquisitions won", taken, 1)
}

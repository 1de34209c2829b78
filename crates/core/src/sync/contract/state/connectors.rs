//! The connectors' checks: round trips, names, the watermark, updates and deletion.

use super::*;

/// A connector reads back as written, by id, by name and in the list.
pub async fn connectors_round_trip_exactly(store: Store) -> CheckResult {
    let t = t0();
    let mut conn = new_connector("rt", t);
    conn.status = ConnectorStatus::Broken {
        reason: "cannot assume role: AccessDenied".into(),
    };
    conn.destination = DestinationConfig::S3Jsonl {
        bucket: "out".into(),
        prefix: "".into(),
    };
    create_connector(&store, &conn).await?;
    expect_connector(&store, "get_connector", &conn.id, Some(conn.clone())).await?;
    expect_eq(
        "find_connector_by_name",
        store.find_connector_by_name(&conn.name).await.ctx("find")?,
        Some(conn.clone()),
    )?;
    let all = store.list_connectors().await.ctx("list_connectors")?;
    expect_eq("listed", all.iter().find(|c| c.id == conn.id), Some(&conn))?;
    expect_connector(&store, "get of an unknown id", &unique("c-none"), None).await?;
    expect_eq(
        "find of an unknown name",
        store
            .find_connector_by_name(&unique("none"))
            .await
            .ctx("find")?,
        None,
    )?;
    is_conflict(
        "creating the same id again",
        store
            .create_connector(&Connector {
                name: unique("other"),
                ..conn.clone()
            })
            .await,
    )?;
    clean_up(&store, &conn.id).await
}

/// The watermark only moves forward; a lower value is a no-op, an unknown connector an error.
pub async fn watermark_is_monotonic(store: Store) -> CheckResult {
    let t = t0();
    let conn = create_new_connector(&store, "wm", t).await?;
    let t2 = t + Duration::milliseconds(2) + Duration::nanoseconds(5);
    let t3 = t2 + Duration::nanoseconds(1000);
    // (what is offered, the value offered, the watermark after it)
    let steps = [
        ("advancing", t2, t2),
        ("a lower value", t, t2),
        ("the same value", t2, t2),
        ("advancing again", t3, t3),
    ];
    for (what, offered, want) in steps {
        store
            .advance_watermark(&conn.id, offered)
            .await
            .ctx(&format!("advance ({what})"))?;
        let got = store
            .get_connector(&conn.id)
            .await
            .ctx("get_connector")?
            .ok_or("connector vanished".to_owned())?;
        expect_eq(&format!("after {what}"), got.watermark, Some(want))?;
    }
    is_not_found(
        "advancing an unknown connector",
        store.advance_watermark(&unique("c-none"), t3).await,
    )?;
    clean_up(&store, &conn.id).await
}

/// Names are unique across create and rename; a rename frees the old name.
pub async fn names_are_unique_and_rename_frees_the_old_name(store: Store) -> CheckResult {
    let t = t0();
    let (n1, n2, n3) = (unique("n1"), unique("n2"), unique("n3"));
    let a = connector(&unique("c-a"), &n1, t);
    store.create_connector(&a).await.ctx("create a")?;
    let b = connector(&unique("c-b"), &n1, t);
    is_name_taken("create b with a's name", store.create_connector(&b).await)?;
    expect_connector(&store, "b after a refused create", &b.id, None).await?;
    let b = Connector {
        name: n2.clone(),
        ..b
    };
    store.create_connector(&b).await.ctx("create b")?;
    is_name_taken(
        "rename a to b's name",
        store
            .update_connector(&Connector {
                name: n2.clone(),
                ..a.clone()
            })
            .await,
    )?;
    expect_connector(&store, "a after a refused rename", &a.id, Some(a.clone())).await?;
    let renamed = Connector {
        name: n3.clone(),
        updated_at: t + Duration::seconds(1),
        ..a.clone()
    };
    store.update_connector(&renamed).await.ctx("rename a")?;
    expect_eq(
        "find old name",
        store.find_connector_by_name(&n1).await.ctx("find")?,
        None,
    )?;
    expect_eq(
        "find new name",
        store.find_connector_by_name(&n3).await.ctx("find")?,
        Some(renamed.clone()),
    )?;
    let c = connector(&unique("c-c"), &n1, t);
    store
        .create_connector(&c)
        .await
        .ctx("create c with the freed name")?;
    is_not_found(
        "update of an unknown connector",
        store
            .update_connector(&connector(&unique("c-none"), &unique("n"), t))
            .await,
    )?;
    for id in [&a.id, &b.id, &c.id] {
        delete_connector(&store, id).await?;
    }
    Ok(())
}

/// Four CLIs creating connectors with one name at once: one wins.
pub async fn concurrent_creates_with_one_name_one_wins(store: Store) -> CheckResult {
    let t = t0();
    let name = unique("n-race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, conn) = (store.clone(), connector(&unique("c-nrace"), &name, t));
        tasks.spawn(async move { (conn.id.clone(), store.create_connector(&conn).await) });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.ctx("join")? {
            (id, Ok(())) => winners.push(id),
            (_, Err(StateError::NameTaken { .. })) => {}
            (_, Err(e)) => return Err(format!("create_connector: unexpected error: {e}")),
        }
    }
    expect_eq("winners", winners.len(), 1)?;
    let found = store
        .find_connector_by_name(&name)
        .await
        .ctx("find")?
        .map(|c| c.id);
    expect_eq("owner of the name", found.as_ref(), winners.first())?;
    clean_up(&store, &winners[0]).await
}

/// The reconciliation's progress reads back as saved, is replaced by the next save, and an unknown connector
/// is an error.
pub async fn reconcile_progress_round_trips(store: Store) -> CheckResult {
    let t = t0();
    let conn = create_new_connector(&store, "rec", t).await?;
    let steps = [
        Reconcile {
            completed_at: None,
            in_progress: Some(ReconcileProgress {
                started_at: t,
                after_key: "in/ünïcode key+%.csv".into(),
            }),
        },
        Reconcile {
            completed_at: Some(t + Duration::milliseconds(1)),
            in_progress: None,
        },
    ];
    for (i, want) in steps.into_iter().enumerate() {
        store
            .save_reconcile(&conn.id, &want)
            .await
            .ctx(&format!("save_reconcile {i}"))?;
        let got = store
            .get_connector(&conn.id)
            .await
            .ctx("get_connector")?
            .ok_or("connector vanished".to_owned())?;
        expect_eq(
            &format!("reconcile after save {i}"),
            got.reconcile,
            Some(want),
        )?;
    }
    is_not_found(
        "saving for an unknown connector",
        store
            .save_reconcile(&unique("c-none"), &Reconcile::default())
            .await,
    )?;
    clean_up(&store, &conn.id).await
}

/// A settings change keeps the lister's watermark and last sync and reconciliation, and removes cleared
/// optional settings.
pub async fn update_keeps_watermark_and_last_sync(store: Store) -> CheckResult {
    let t = t0();
    let conn = create_new_connector(&store, "upd", t).await?;
    store.advance_watermark(&conn.id, t).await.ctx("advance")?;
    let r = run(&conn.id, t, 3);
    store.record_sync_run(&r).await.ctx("record_sync_run")?;
    let reconcile = Reconcile {
        completed_at: Some(t),
        in_progress: None,
    };
    store
        .save_reconcile(&conn.id, &reconcile)
        .await
        .ctx("save_reconcile")?;
    // The caller's copy is stale (no watermark, no last sync, no reconciliation): the update must not write
    // those back.
    let mut changed = conn.clone();
    changed.status = ConnectorStatus::Paused;
    changed.template_version = None;
    changed.source.role_arn = None;
    changed.source.external_id = None;
    changed.updated_at = t + Duration::seconds(5);
    store
        .update_connector(&changed)
        .await
        .ctx("update_connector")?;
    let want = Connector {
        watermark: Some(t),
        last_sync: Some(r),
        reconcile: Some(reconcile),
        ..changed
    };
    expect_connector(&store, "updated connector", &conn.id, Some(want)).await?;
    clean_up(&store, &conn.id).await
}

/// Deleting a connector removes its ledger, sync runs, name and sync lease; the count says how many items.
pub async fn delete_removes_everything(store: Store) -> CheckResult {
    let t = t0();
    let conn = create_new_connector(&store, "del", t).await?;
    for i in 0..30 {
        claim(&store, &entry(&conn.id, &format!("d/{i}.csv"), "\"d\"", t)).await?;
    }
    store
        .record_sync_run(&run(&conn.id, t, 1))
        .await
        .ctx("record_sync_run")?;
    store
        .record_sync_run(&run(&conn.id, t + Duration::seconds(1), 2))
        .await
        .ctx("record_sync_run")?;
    let lease = crate::sync::model::sync_lease_name(&conn.id);
    let acquire_lease = |owner| store.acquire_lease(&lease, owner, t, Duration::minutes(10));
    expect(
        "lease",
        acquire_lease("lister-1").await.ctx("acquire_lease")?,
    )?;

    expect_eq(
        "items removed",
        delete_connector(&store, &conn.id).await?,
        33,
    )?;
    expect_connector(&store, "connector", &conn.id, None).await?;
    expect_eq(
        "by name",
        store.find_connector_by_name(&conn.name).await.ctx("find")?,
        None,
    )?;
    expect_eq(
        "files",
        store
            .list_files(&conn.id, None)
            .await
            .ctx("list_files")?
            .len(),
        0,
    )?;
    expect_eq(
        "sync runs",
        store
            .list_sync_runs(&conn.id, 10)
            .await
            .ctx("list_sync_runs")?
            .len(),
        0,
    )?;
    let listed = store.list_connectors().await.ctx("list_connectors")?;
    expect(
        "deleted connector still listed",
        !listed.iter().any(|c| c.id == conn.id),
    )?;
    expect(
        "sync lease still held",
        acquire_lease("lister-2").await.ctx("acquire_lease")?,
    )?;
    store
        .release_lease(&lease, "lister-2")
        .await
        .ctx("release_lease")?;
    let reuse = connector(&unique("c-reuse"), &conn.name, t);
    store
        .create_connector(&reuse)
        .await
        .ctx("create with the deleted connector's name")?;
    expect_eq(
        "second delete",
        delete_connector(&store, &conn.id).await?,
        0,
    )?;
    expect_eq(
        "delete of the reuse",
        delete_connector(&store, &reuse.id).await?,
        1,
    )
}

//! The file ledger's checks: claims, starts and leases, checkpoints, outcomes, retries, listings.

use super::*;

/// A file version is claimed once; a new ETag on the same key is a new version.
pub async fn claim_is_exclusive(store: Store) -> CheckResult {
    let c = unique("c-claim");
    let t = t0();
    let e = entry(&c, "in/a.csv", "\"e1\"", t);
    claim(&store, &e).await?;
    let again = LedgerEntry {
        size: 99,
        ..e.clone()
    };
    expect_eq(
        "second claim",
        store.claim_file(&again).await.ctx("claim_file")?,
        ClaimOutcome::AlreadyKnown,
    )?;
    expect_eq(
        "stored entry is the first claim",
        get(&store, &e).await?,
        e.clone(),
    )?;
    let newer = entry(&c, "in/a.csv", "\"e2\"", t);
    claim(&store, &newer).await?;
    expect_eq(
        "entries of the key",
        store.list_files(&c, None).await.ctx("list_files")?.len(),
        2,
    )
}

/// Eight listers racing to claim one version: exactly one wins.
pub async fn concurrent_claims_one_wins(store: Store) -> CheckResult {
    let c = unique("c-race");
    let e = entry(&c, "race.csv", "\"e\"", t0());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, e) = (store.clone(), e.clone());
        tasks.spawn(async move { store.claim_file(&e).await });
    }
    let mut claimed = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.ctx("join")?.ctx("claim_file")? == ClaimOutcome::Claimed {
            claimed += 1;
        }
    }
    expect_eq("claims won", claimed, 1)
}

/// Every field of an entry survives the store, to the nanosecond.
pub async fn entries_round_trip_exactly(store: Store) -> CheckResult {
    let c = unique("c-rt");
    let t = t0();
    let mut e = entry(&c, "in/rich file.csv.gz", "\"abc-3\"", t);
    e.version.version_id = Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into());
    e.status = FileStatus::Skipped;
    e.format = Some(FileFormat {
        format: Format::Tsv,
        compression: Compression::Gzip,
    });
    e.skip_reason = Some(SkipReason::TooLarge {
        size: 5 << 30,
        limit: 1 << 30,
    });
    e.queued_at = Some(t + Duration::nanoseconds(1));
    e.started_at = Some(t + Duration::milliseconds(2));
    e.finished_at = Some(t + Duration::seconds(3));
    e.lease_until = Some(t + Duration::minutes(4) + Duration::nanoseconds(7));
    e.lease_owner = Some("worker-1".into());
    e.attempts = 3;
    e.rows_imported = u64::from(u32::MAX) * 4;
    e.rows_rejected = 12;
    e.error_report = Some("s3://reports/c/abc.jsonl".into());
    e.error = Some("line 3, column \"amount\": not a decimal — «x»".into());
    e.template_version = Some(7);
    e.checkpoint = Some(Checkpoint {
        start: CheckpointStart {
            byte: 1 << 33,
            record: 10_000_000,
            line: 10_000_001,
            header: Some(vec!["id".into(), "".into(), "ä".into()]),
        },
        piece: 4,
        rows_imported: 9_999_990,
        rows_rejected: 10,
        rows_state: Some(serde_json::json!({
            "upload_id": "u-1",
            "parts": [{"n": 1, "etag": "\"p1\""}, {"n": 2, "etag": "\"p2\""}],
            "carry": null,
            "bytes": 1u64 << 40,
            "empty": [],
        })),
        rejects_state: Some(serde_json::json!({"entries": 0})),
        continued: true,
        template_version: Some(7),
        format: e.format,
        pace: Some(crate::pace::Pace {
            write_ms: 1500,
            write_rows: 2000,
            batch_rows: 333,
            batch_floor: 0,
            suspend_ms: 2500,
        }),
        validated: Some(crate::sync::model::Validated {
            error_report: Some("s3://reports/c/abc.jsonl".into()),
        }),
    });
    claim(&store, &e).await?;
    expect_eq("get_file", get(&store, &e).await?, e.clone())?;
    let id = e.version.file_id();
    let many = store
        .get_files(&c, std::slice::from_ref(&id))
        .await
        .ctx("get_files")?;
    expect_eq("get_files", many.get(&id), Some(&e))?;
    expect_eq(
        "list_files",
        store.list_files(&c, None).await.ctx("list_files")?,
        vec![e],
    )
}

/// `mark_queued` moves `claimed → queued` and nothing else.
pub async fn mark_queued_only_moves_claimed(store: Store) -> CheckResult {
    let c = unique("c-mq");
    let t = t0();
    let e = entry(&c, "q.csv", "\"q\"", t);
    claim(&store, &e).await?;
    store
        .mark_queued(&c, &e.version.file_id(), t + Duration::seconds(1))
        .await
        .ctx("mark_queued")?;
    let queued = get(&store, &e).await?;
    expect_eq("status", queued.status, FileStatus::Queued)?;
    expect_eq(
        "queued_at",
        queued.queued_at,
        Some(t + Duration::seconds(1)),
    )?;
    store
        .mark_queued(&c, &e.version.file_id(), t + Duration::seconds(9))
        .await
        .ctx("mark_queued again")?;
    expect_eq(
        "queued_at after a second mark",
        get(&store, &e).await?.queued_at,
        Some(t + Duration::seconds(1)),
    )?;
    // A worker may start the file before the lister marks it queued: the mark must not undo the start.
    let s = entry(&c, "started-first.csv", "\"s\"", t);
    claim_and_start(&store, &s, "w", t).await?;
    store
        .mark_queued(&c, &s.version.file_id(), t)
        .await
        .ctx("mark_queued on processing")?;
    expect_eq(
        "status after marking a started entry",
        get(&store, &s).await?.status,
        FileStatus::Processing,
    )?;
    store
        .mark_queued(&c, "0123#missing", t)
        .await
        .ctx("mark_queued on a missing entry")?;
    expect_eq(
        "entries",
        store.list_files(&c, None).await.ctx("list_files")?.len(),
        2,
    )
}

/// `start_file`: Unknown, Started, Busy (while the lease lives), AlreadyFinished.
pub async fn start_file_outcomes(store: Store) -> CheckResult {
    let c = unique("c-start");
    let t = t0();
    let missing = store
        .start_file(&c, "0000#none", "w1", t, t + Duration::minutes(5))
        .await
        .ctx("start_file")?;
    expect_eq("start of a missing entry", missing, StartOutcome::Unknown)?;

    let e = entry(&c, "s.csv", "\"s\"", t);
    claim(&store, &e).await?;
    store
        .mark_queued(&c, &e.version.file_id(), t + Duration::seconds(1))
        .await
        .ctx("mark_queued")?;
    let now = t + Duration::seconds(2);
    let until = now + Duration::minutes(5);
    let started = start(&store, &e, "w1", now, until).await?;
    let mut want = e.clone();
    want.status = FileStatus::Processing;
    want.queued_at = Some(t + Duration::seconds(1));
    want.started_at = Some(now);
    want.lease_until = Some(until);
    want.lease_owner = Some("w1".into());
    want.attempts = 1;
    expect_eq("started entry", started.clone(), want)?;
    expect_eq(
        "stored started entry",
        get(&store, &e).await?,
        started.clone(),
    )?;

    let id = e.version.file_id();
    let busy = store
        .start_file(&c, &id, "w2", now + Duration::seconds(1), until)
        .await
        .ctx("start_file w2")?;
    expect_eq(
        "start while the lease lives",
        busy,
        StartOutcome::Busy(until),
    )?;
    // The lease ends strictly after `lease_until`.
    let at_end = store
        .start_file(&c, &id, "w2", until, until + Duration::minutes(5))
        .await
        .ctx("start_file")?;
    expect_eq(
        "start at the lease's last instant",
        at_end,
        StartOutcome::Busy(until),
    )?;

    let mut done = started;
    done.status = FileStatus::Imported;
    done.rows_imported = 10;
    done.finished_at = Some(now + Duration::seconds(30));
    store.finish_file(&done, "w1").await.ctx("finish_file")?;
    let dup = store
        .start_file(
            &c,
            &id,
            "w3",
            now + Duration::hours(1),
            now + Duration::hours(2),
        )
        .await
        .ctx("start_file")?;
    expect_eq(
        "start of an imported entry",
        dup,
        StartOutcome::AlreadyFinished(FileStatus::Imported),
    )?;
    expect_eq("entry after the duplicate", get(&store, &e).await?, done)
}

/// Eight workers receiving the same message: exactly one starts, the rest see it busy.
pub async fn concurrent_starts_one_wins(store: Store) -> CheckResult {
    let c = unique("c-srace");
    let t = t0();
    let e = entry(&c, "srace.csv", "\"e\"", t);
    claim(&store, &e).await?;
    let until = t + Duration::minutes(5);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, c, id) = (store.clone(), c.clone(), e.version.file_id());
        tasks.spawn(async move { store.start_file(&c, &id, &format!("w{i}"), t, until).await });
    }
    let (mut started, mut busy) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.ctx("join")?.ctx("start_file")? {
            StartOutcome::Started(_) => started += 1,
            StartOutcome::Busy(u) if u == until => busy += 1,
            other => return Err(format!("unexpected outcome {other:?}")),
        }
    }
    expect_eq("(started, busy)", (started, busy), (1, 7))?;
    expect_eq("attempts", get(&store, &e).await?.attempts, 1)
}

/// A worker that died keeps nobody waiting longer than its lease; it cannot finish after a takeover.
pub async fn expired_lease_can_be_taken_over(store: Store) -> CheckResult {
    let c = unique("c-expire");
    let t = t0();
    let e = entry(&c, "x.csv", "\"x\"", t);
    let first = claim_and_start(&store, &e, "w1", t).await?;
    let until = first.lease_until.ok_or("no lease_until")?;
    let later = until + Duration::milliseconds(1);
    let second = start(&store, &e, "w2", later, later + Duration::minutes(5)).await?;
    expect_eq(
        "owner after takeover",
        second.lease_owner.as_deref(),
        Some("w2"),
    )?;
    expect_eq("attempts after takeover", second.attempts, 2)?;
    let mut late = first.clone();
    late.status = FileStatus::Imported;
    is_conflict(
        "finish by the old owner",
        store.finish_file(&late, "w1").await,
    )?;
    is_conflict(
        "renew by the old owner",
        store
            .renew_file(
                &c,
                &e.version.file_id(),
                "w1",
                later + Duration::hours(1),
                None,
            )
            .await,
    )?;
    is_conflict(
        "release by the old owner",
        store
            .release_file(&c, &e.version.file_id(), "w1", "late")
            .await,
    )?;
    let mut done = second;
    done.status = FileStatus::Imported;
    store
        .finish_file(&done, "w2")
        .await
        .ctx("finish by the new owner")?;
    expect_eq("final entry", get(&store, &e).await?, done)
}

/// `renew_file` extends the lease and stores a checkpoint; `None` keeps the last one.
pub async fn renew_extends_the_lease_and_keeps_the_checkpoint(store: Store) -> CheckResult {
    let c = unique("c-renew");
    let t = t0();
    let e = entry(&c, "long.jsonl", "\"l\"", t);
    claim_and_start(&store, &e, "w", t).await?;
    let id = e.version.file_id();
    let checkpoint = Checkpoint {
        start: CheckpointStart {
            byte: 4096,
            record: 100,
            line: 101,
            header: Some(vec!["id".into()]),
        },
        piece: 1,
        rows_imported: 99,
        rows_rejected: 1,
        rows_state: None,
        rejects_state: Some(serde_json::json!({"entries": 1})),
        continued: false,
        template_version: None,
        format: None,
        pace: None,
        validated: None,
    };
    let until = t + Duration::minutes(20);
    store
        .renew_file(&c, &id, "w", until, Some(&checkpoint))
        .await
        .ctx("renew_file")?;
    let renewed = get(&store, &e).await?;
    expect_eq("lease_until", renewed.lease_until, Some(until))?;
    expect_eq("checkpoint", renewed.checkpoint.as_ref(), Some(&checkpoint))?;
    let until = until + Duration::minutes(20);
    store
        .renew_file(&c, &id, "w", until, None)
        .await
        .ctx("renew_file without checkpoint")?;
    let renewed = get(&store, &e).await?;
    expect_eq("lease_until", renewed.lease_until, Some(until))?;
    expect_eq(
        "checkpoint kept",
        renewed.checkpoint.as_ref(),
        Some(&checkpoint),
    )?;
    let busy = store
        .start_file(
            &c,
            &id,
            "w2",
            t + Duration::minutes(30),
            t + Duration::hours(1),
        )
        .await
        .ctx("start")?;
    expect_eq(
        "start during the renewed lease",
        busy,
        StartOutcome::Busy(until),
    )?;
    is_conflict(
        "renew by another worker",
        store.renew_file(&c, &id, "w2", until, None).await,
    )?;
    is_conflict(
        "renew of a missing entry",
        store.renew_file(&c, "0000#none", "w", until, None).await,
    )
}

/// `checkpoint_file` hands a held file back as `queued` with its checkpoint (only by the holder);
/// `mark_continued` flags the checkpoint of that piece only; a new attempt starts with the checkpoint.
pub async fn checkpoint_hands_the_file_back_and_marks_the_continuation(
    store: Store,
) -> CheckResult {
    let c = unique("c-checkpoint");
    let t = t0();
    let e = entry(&c, "long.csv", "\"l\"", t);
    claim_and_start(&store, &e, "w", t).await?;
    let id = e.version.file_id();
    let checkpoint = Checkpoint {
        start: CheckpointStart {
            byte: 1 << 32,
            record: 7,
            line: 9,
            header: Some(vec!["id".into(), "qty".into()]),
        },
        piece: 3,
        rows_imported: 6,
        rows_rejected: 1,
        rows_state: Some(serde_json::json!({"parts": [{"n": 1, "etag": "\"x\""}], "bytes": 5})),
        rejects_state: None,
        continued: false,
        template_version: None,
        format: None,
        pace: None,
        validated: None,
    };
    is_conflict(
        "checkpoint by another worker",
        store
            .checkpoint_file(&c, &id, "w2", Some(&checkpoint))
            .await,
    )?;
    store
        .checkpoint_file(&c, &id, "w", Some(&checkpoint))
        .await
        .ctx("checkpoint_file")?;
    let queued = get(&store, &e).await?;
    expect_eq(
        "status, lease and checkpoint",
        (
            queued.status,
            queued.lease_owner.clone(),
            queued.lease_until,
            queued.checkpoint.clone(),
        ),
        (FileStatus::Queued, None, None, Some(checkpoint.clone())),
    )?;
    is_conflict(
        "a second checkpoint without the lease",
        store.checkpoint_file(&c, &id, "w", None).await,
    )?;
    store
        .mark_continued(&c, &id, 2)
        .await
        .ctx("mark_continued of another piece")?;
    expect_eq(
        "continued after marking another piece",
        get(&store, &e).await?.checkpoint.map(|c| c.continued),
        Some(false),
    )?;
    store
        .mark_continued(&c, &id, 3)
        .await
        .ctx("mark_continued")?;
    let marked = get(&store, &e).await?;
    expect_eq(
        "continued",
        marked
            .checkpoint
            .as_ref()
            .map(|c| (c.continued, c.piece, c.rows_state.clone())),
        Some((true, 3, checkpoint.rows_state.clone())),
    )?;
    store
        .mark_continued(&c, "0000#none", 3)
        .await
        .ctx("mark_continued of a missing entry")?;
    let started = store
        .start_file(&c, &id, "w3", t, t + Duration::minutes(15))
        .await
        .ctx("start the next piece")?;
    let StartOutcome::Started(next) = started else {
        return Err(format!("the next piece did not start: {started:?}"));
    };
    expect_eq(
        "the next piece sees the checkpoint",
        next.checkpoint.map(|c| c.piece),
        Some(3),
    )?;
    // Handing back without a checkpoint keeps the stored one.
    store
        .checkpoint_file(&c, &id, "w3", None)
        .await
        .ctx("hand back")?;
    let back = get(&store, &e).await?;
    expect_eq(
        "handed back",
        (back.status, back.checkpoint.map(|c| c.piece)),
        (FileStatus::Queued, Some(3)),
    )
}

/// Only the lease holder writes the outcome, and only a final one.
pub async fn finish_requires_lease_owner(store: Store) -> CheckResult {
    let c = unique("c-finish");
    let t = t0();
    let e = entry(&c, "f.csv", "\"f\"", t);
    let started = claim_and_start(&store, &e, "w1", t).await?;
    let mut failed = started.clone();
    failed.status = FileStatus::Failed;
    failed.error = Some("line 7: expected 3 fields, found 2".into());
    failed.finished_at = Some(t + Duration::seconds(5));
    is_conflict(
        "finish by another worker",
        store.finish_file(&failed, "w2").await,
    )?;
    let not_final = store.finish_file(&started, "w1").await;
    expect(
        &format!("finish with status processing must fail, got {not_final:?}"),
        not_final.is_err(),
    )?;
    expect_eq(
        "entry after refused finishes",
        get(&store, &e).await?,
        started,
    )?;
    store.finish_file(&failed, "w1").await.ctx("finish_file")?;
    expect_eq("finished entry", get(&store, &e).await?, failed.clone())?;
    is_conflict("a second finish", store.finish_file(&failed, "w1").await)?;
    let never = entry(&c, "never-claimed.csv", "\"n\"", t);
    is_conflict(
        "finish of a missing entry",
        store
            .finish_file(
                &LedgerEntry {
                    status: FileStatus::Imported,
                    ..never
                },
                "w1",
            )
            .await,
    )
}

/// A transient failure hands the file back (`queued`, error kept) for the redelivery.
pub async fn release_returns_to_queued(store: Store) -> CheckResult {
    let c = unique("c-release");
    let t = t0();
    let e = entry(&c, "r.csv", "\"r\"", t);
    let started = claim_and_start(&store, &e, "w1", t).await?;
    let id = e.version.file_id();
    is_conflict(
        "release by another worker",
        store.release_file(&c, &id, "w2", "nope").await,
    )?;
    store
        .release_file(&c, &id, "w1", "throttled by the records table")
        .await
        .ctx("release_file")?;
    let mut want = started;
    want.status = FileStatus::Queued;
    want.error = Some("throttled by the records table".into());
    want.lease_owner = None;
    want.lease_until = None;
    expect_eq("released entry", get(&store, &e).await?, want)?;
    is_conflict(
        "a second release",
        store.release_file(&c, &id, "w1", "again").await,
    )?;
    let again = start(
        &store,
        &e,
        "w2",
        t + Duration::seconds(1),
        t + Duration::minutes(5),
    )
    .await?;
    expect_eq("attempts after a release", again.attempts, 2)
}

/// `reopen_file` moves an entry in the given state to `claimed` (outcome cleared, a replay counted) and
/// nothing else: the retry of a failed file and the replay of an imported one.
pub async fn reopen_only_from_the_given_state(store: Store) -> CheckResult {
    let c = unique("c-retry");
    let t = t0();
    let f = entry(&c, "bad.csv", "\"b\"", t);
    let mut failed = claim_and_start(&store, &f, "w", t).await?;
    failed.status = FileStatus::Failed;
    failed.error = Some("template mismatch".into());
    failed.error_report = Some("s3://r/bad.jsonl".into());
    failed.rows_imported = 5;
    failed.rows_rejected = 7;
    failed.finished_at = Some(t + Duration::seconds(9));
    failed.checkpoint = Some(Checkpoint {
        start: CheckpointStart {
            byte: 10,
            record: 1,
            line: 2,
            header: None,
        },
        piece: 1,
        rows_imported: 5,
        ..Checkpoint::default()
    });
    store.finish_file(&failed, "w").await.ctx("finish_file")?;
    let reopen = |id: String, from: FileStatus, replay: bool| {
        let store = &store;
        let c = &c;
        async move {
            store
                .reopen_file(c, &id, from, replay)
                .await
                .ctx("reopen_file")
        }
    };
    expect(
        "retry of a failed entry",
        reopen(f.version.file_id(), FileStatus::Failed, false).await?,
    )?;
    let mut want = failed;
    want.reopen(false);
    expect_eq("retried entry", get(&store, &f).await?, want.clone())?;
    expect(
        "retry of a claimed entry must be refused",
        !reopen(f.version.file_id(), FileStatus::Failed, false).await?,
    )?;
    expect_eq("entry after a refused retry", get(&store, &f).await?, want)?;

    let ok = entry(&c, "good.csv", "\"g\"", t);
    let mut imported = claim_and_start(&store, &ok, "w", t).await?;
    imported.status = FileStatus::Imported;
    imported.rows_imported = 3;
    imported.finished_at = Some(t + Duration::seconds(4));
    store.finish_file(&imported, "w").await.ctx("finish_file")?;
    expect(
        "retry (from failed) of an imported entry must be refused",
        !reopen(ok.version.file_id(), FileStatus::Failed, false).await?,
    )?;
    expect_eq("imported entry", get(&store, &ok).await?, imported.clone())?;
    for round in 1..=2 {
        expect(
            "replay of an imported entry",
            reopen(ok.version.file_id(), FileStatus::Imported, true).await?,
        )?;
        let mut want = imported.clone();
        want.reopen(true);
        want.replays = round;
        expect_eq("replayed entry", get(&store, &ok).await?, want)?;
        expect(
            "a second replay while the first is on its way must be refused",
            !reopen(ok.version.file_id(), FileStatus::Imported, true).await?,
        )?;
        let mut again = start(&store, &ok, "w", t, t + Duration::minutes(5)).await?;
        again.status = FileStatus::Imported;
        again.rows_imported = 3;
        store.finish_file(&again, "w").await.ctx("finish_file")?;
        imported = again;
    }
    expect(
        "retry of a missing entry must be refused",
        !reopen("0000#none".into(), FileStatus::Failed, false).await?,
    )
}

/// `dead_letter_file` fails an entry still waiting for a worker (`claimed`, `queued`, `processing` with an
/// expired lease) and leaves final entries and live leases alone.
pub async fn dead_letter_fails_only_files_on_their_way(store: Store) -> CheckResult {
    let c = unique("c-dlq");
    let t = t0();
    let why = "moved to the dead-letter queue after 5 receives";
    let later = t + Duration::minutes(10);

    let queued = entry(&c, "queued.csv", "\"q\"", t);
    claim(&store, &queued).await?;
    store
        .mark_queued(&c, &queued.version.file_id(), t)
        .await
        .ctx("mark_queued")?;
    let mut want = get(&store, &queued).await?;
    expect(
        "a queued entry is failed",
        store
            .dead_letter_file(&c, &queued.version.file_id(), why, later)
            .await
            .ctx("dead_letter_file")?,
    )?;
    want.dead_lettered(why, later);
    expect_eq("dead-lettered entry", get(&store, &queued).await?, want)?;

    let held = entry(&c, "held.csv", "\"h\"", t);
    let busy = claim_and_start(&store, &held, "w", t).await?;
    expect(
        "a live lease keeps the file",
        !store
            .dead_letter_file(&c, &held.version.file_id(), why, t + Duration::minutes(1))
            .await
            .ctx("dead_letter_file")?,
    )?;
    expect_eq("held entry", get(&store, &held).await?, busy.clone())?;
    expect(
        "an expired lease does not",
        store
            .dead_letter_file(&c, &held.version.file_id(), why, later)
            .await
            .ctx("dead_letter_file")?,
    )?;
    let mut want = busy;
    want.dead_lettered(why, later);
    expect_eq("dead-lettered held entry", get(&store, &held).await?, want)?;

    let done = entry(&c, "done.csv", "\"d\"", t);
    let mut imported = claim_and_start(&store, &done, "w", t).await?;
    imported.status = FileStatus::Imported;
    store.finish_file(&imported, "w").await.ctx("finish_file")?;
    expect(
        "an imported entry stays imported",
        !store
            .dead_letter_file(&c, &done.version.file_id(), why, later)
            .await
            .ctx("dead_letter_file")?,
    )?;
    expect_eq("imported entry", get(&store, &done).await?, imported)?;
    expect(
        "a missing entry is refused",
        !store
            .dead_letter_file(&c, "0000#none", why, later)
            .await
            .ctx("dead_letter_file")?,
    )
}

/// `list_files` returns every entry, or those with one status.
pub async fn list_files_filters_by_status(store: Store) -> CheckResult {
    let c = unique("c-list");
    let t = t0();
    let entries: Vec<LedgerEntry> = (0..5)
        .map(|i| entry(&c, &format!("l/{i}.csv"), &format!("\"{i}\""), t))
        .collect();
    for e in &entries {
        claim(&store, e).await?;
    }
    store
        .mark_queued(&c, &entries[0].version.file_id(), t)
        .await
        .ctx("mark_queued")?;
    store
        .mark_queued(&c, &entries[1].version.file_id(), t)
        .await
        .ctx("mark_queued")?;
    start(&store, &entries[1], "w", t, t + Duration::minutes(1)).await?;
    let count = |s: Option<FileStatus>| {
        let store = store.clone();
        let c = c.clone();
        async move {
            store
                .list_files(&c, s)
                .await
                .ctx("list_files")
                .map(|v| v.len())
        }
    };
    expect_eq("all", count(None).await?, 5)?;
    expect_eq("claimed", count(Some(FileStatus::Claimed)).await?, 3)?;
    expect_eq("queued", count(Some(FileStatus::Queued)).await?, 1)?;
    expect_eq("processing", count(Some(FileStatus::Processing)).await?, 1)?;
    expect_eq("imported", count(Some(FileStatus::Imported)).await?, 0)?;
    expect_eq(
        "another connector",
        store
            .list_files(&unique("c-none"), None)
            .await
            .ctx("list_files")?
            .len(),
        0,
    )
}

/// `get_files` with more ids than one DynamoDB batch (100), unknown ids and duplicates.
pub async fn get_files_over_100_ids(store: Store) -> CheckResult {
    let c = unique("c-many");
    let t = t0();
    let entries: Vec<LedgerEntry> = (0..250)
        .map(|i| entry(&c, &format!("many/{i:04}.csv"), &format!("\"etag{i}\""), t))
        .collect();
    for chunk in entries.chunks(25) {
        let mut tasks = tokio::task::JoinSet::new();
        for e in chunk {
            let (store, e) = (store.clone(), e.clone());
            tasks.spawn(async move { store.claim_file(&e).await });
        }
        while let Some(joined) = tasks.join_next().await {
            expect_eq(
                "claim",
                joined.ctx("join")?.ctx("claim_file")?,
                ClaimOutcome::Claimed,
            )?;
        }
    }
    let mut ids: Vec<String> = entries.iter().map(|e| e.version.file_id()).collect();
    ids.extend((0..30).map(|i| format!("{i:032x}#unknown")));
    ids.extend(entries[..10].iter().map(|e| e.version.file_id()));
    let found = store.get_files(&c, &ids).await.ctx("get_files")?;
    expect_eq("entries found", found.len(), 250)?;
    for e in &entries {
        expect_eq("entry", found.get(&e.version.file_id()), Some(e))?;
    }
    expect_eq(
        "get_files of nothing",
        store.get_files(&c, &[]).await.ctx("get_files")?.len(),
        0,
    )
}

/// S3 keys are up to 1024 bytes of any UTF-8; names too are any text.
pub async fn keys_with_unicode_and_1024_bytes(store: Store) -> CheckResult {
    let c = unique("c-unicode");
    let t = t0();
    let mut key = String::from("données/日本語/emoji 🎉/with spaces & #hash/");
    while key.len() < 1020 {
        key.push('é');
    }
    while key.len() < 1024 {
        key.push('x');
    }
    expect_eq("key length", key.len(), 1024)?;
    let e = entry(&c, &key, "\"d41d8cd98f00b204e9800998ecf8427e-2\"", t);
    claim(&store, &e).await?;
    expect_eq(
        "stored key",
        get(&store, &e).await?.version.key,
        key.clone(),
    )?;
    let listed = store.list_files(&c, None).await.ctx("list_files")?;
    expect_eq(
        "listed keys",
        listed
            .iter()
            .map(|e| e.version.key.as_str())
            .collect::<Vec<_>>(),
        vec![key.as_str()],
    )?;

    let name = unique("Ünïcödé connector 日本 «quotes» \"and\" spaces");
    let conn = connector(&unique("c-u"), &name, t);
    create_connector(&store, &conn).await?;
    expect_eq(
        "found by name",
        store.find_connector_by_name(&name).await.ctx("find")?,
        Some(conn.clone()),
    )?;
    clean_up(&store, &conn.id).await
}

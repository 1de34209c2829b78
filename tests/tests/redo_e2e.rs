//! Replay and re-drive on the emulator (README, "Replay and re-drive"): the lister's scheduled run sweeps the
//! real dead-letter queue and fails the file with the reason, a re-drive sends it again through SQS and the
//! ledger, and a replay of an imported file re-imports it into DynamoDB with the same rows, once however often
//! it is asked. The engine's rules for these (filters, races) run on the in-memory adapters in
//! `crates/core/tests/engine_redo.rs`.

use std::sync::Arc;

use anyhow::Result;
use s3_importer_core::sync::contract::fixtures::{csv, Fault, FaultyDestination};
use s3_importer_core::sync::ports::FileLedger;
use s3_importer_core::sync::redo::{self, ReplayFilter};
use s3_importer_core::sync::{Clock, FileStatus};
use s3_importer_tests::deployment::{request_id, Deployment, Options};
use serde_json::json;

#[tokio::test]
async fn a_dead_lettered_file_is_failed_by_the_scheduled_run_and_a_redrive_imports_it() -> Result<()>
{
    let d = Deployment::with(Options {
        max_receive_count: 2,
        ..Options::default()
    })
    .await?;
    d.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    let broken = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::TransientAfter(0),
    )));
    for _ in 0..2 {
        let messages = d.receive().await?;
        let response = d.deliver(&broken, &messages).await?;
        assert_eq!(d.settle(&messages, &response).await?.len(), 1);
        d.expire_visibility(&messages).await?;
    }
    assert!(d.receive().await?.is_empty());
    assert_eq!(d.dead_letter_depth().await?, (1, 0));
    assert_eq!(d.file("a.csv").await?.status, FileStatus::Queued);

    // The schedule's payload: a run over every connector, which sweeps the dead-letter queue first.
    s3_importer_lister::handle(&d.lister, json!({}), &request_id("schedule")).await?;
    let a = d.file("a.csv").await?;
    assert_eq!(a.status, FileStatus::Failed);
    assert_eq!(
        a.error.as_deref(),
        Some("moved to the dead-letter queue after 2 receives")
    );
    assert_eq!(d.dead_letter_depth().await?, (0, 0), "message deleted");

    let dead: Vec<_> = d
        .state
        .list_files(&d.connector.id, Some(FileStatus::Failed))
        .await?
        .into_iter()
        .filter(redo::was_dead_lettered)
        .collect();
    let done = redo::requeue(&*d.state, &*d.real_queue(), dead, false, d.clock.now()).await?;
    assert_eq!(done.sent.len(), 1);
    assert_eq!(d.file("a.csv").await?.status, FileStatus::Queued);
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    let a = d.file("a.csv").await?;
    assert_eq!(
        (a.status, a.rows_imported, a.error),
        (FileStatus::Imported, 2, None)
    );
    assert_eq!(d.records().await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn replaying_a_file_twice_leaves_the_table_as_one_import_did() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)])).await?;
    d.put("b.csv", &csv(&[("b-1", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 2);
    d.drain().await?;
    let strip = |records: std::collections::BTreeMap<
        String,
        std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    >| {
        records
            .into_iter()
            .map(|(k, mut item)| {
                item.remove("_imported_at");
                (k, item)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = strip(d.records().await?);
    assert_eq!(before.len(), 3);
    let filter = ReplayFilter {
        keys: vec![Deployment::key("a.csv")],
        ..ReplayFilter::default()
    };
    for round in 1..=2u32 {
        let entries = d.state.list_files(&d.connector.id, None).await?;
        let plan = filter.plan(entries);
        assert_eq!((plan.replay.len(), plan.rows_at_stake), (1, 2));
        // A second operator with the same plan finds it moved. (They race in `engine_redo.rs`: moto's
        // conditional writes are not atomic under concurrency, DynamoDB's are.)
        let now = d.clock.now();
        let queue = d.real_queue();
        let first = redo::requeue(&*d.state, &*queue, plan.replay.clone(), true, now).await?;
        let second = redo::requeue(&*d.state, &*queue, plan.replay, true, now).await?;
        assert_eq!(
            (
                first.sent.len(),
                second.sent.len(),
                second.moved_first.len()
            ),
            (1, 0, 1),
            "round {round}"
        );
        let drained = d.drain().await?;
        assert_eq!((drained.delivered, drained.acked), (1, 1));
        let a = d.file("a.csv").await?;
        assert_eq!(
            (a.status, a.replays, a.attempts),
            (FileStatus::Imported, round, round + 1)
        );
        assert_eq!(strip(d.records().await?), before, "round {round}");
    }
    assert_eq!(d.file("b.csv").await?.attempts, 1, "b.csv was not replayed");
    Ok(())
}

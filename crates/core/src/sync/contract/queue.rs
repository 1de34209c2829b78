//! The work queue contract: sends in batches of 10 (25 messages all accepted, each result in its message's
//! place), an entry the queue refuses (a message over the size limit) refused alone, and the visibility
//! extension of a received message, checked on [`FileQueue`] adapters.
//!
//! To run it against a new adapter, implement [`QueueFixture`] (fresh queues, receiving and deleting
//! messages as a worker does) and call [`file_queue_contract_tests!`](crate::file_queue_contract_tests) in
//! a test file with an expression giving the fixture (`impl Future<Output = Result<Arc<dyn QueueFixture>,
//! String>>`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use super::{expect, expect_eq, unique, CheckResult, Ctx};
use crate::sync::model::{FileMessage, FileVersion};
use crate::sync::ports::FileQueue;

/// A message received from a queue under test.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The message.
    pub message: FileMessage,
    /// Its receipt handle, for [`FileQueue::extend_visibility`] and [`TestQueue::delete`].
    pub receipt_handle: String,
}

/// One new, empty queue: the adapter sending to it, and a worker's view of it.
#[async_trait]
pub trait TestQueue: Send + Sync {
    /// The adapter under test, sending to this queue.
    fn queue(&self) -> Arc<dyn FileQueue>;
    /// Receives up to 10 visible messages, hiding each for `visibility_seconds` (ReceiveMessage).
    async fn receive(&self, visibility_seconds: u32) -> Result<Vec<Received>, String>;
    /// Deletes a received message (DeleteMessage).
    async fn delete(&self, receipt_handle: &str) -> Result<(), String>;
}

/// What a check needs from the backend behind a [`FileQueue`] adapter.
#[async_trait]
pub trait QueueFixture: Send + Sync {
    /// A new, empty queue.
    async fn new_queue(&self) -> Result<Box<dyn TestQueue>, String>;
}

/// A fixture under test, shared by the checks.
pub type Fixture = Arc<dyn QueueFixture>;

/// One `#[tokio::test]` per work queue contract check. `$fixture` is an expression evaluated afresh in each
/// test, of type `impl Future<Output = Result<Arc<dyn QueueFixture>, String>>`.
///
/// This macro holds the suite's one list of checks; the runner table ([`CHECKS`], [`run_check`]) is
/// generated from it too.
#[macro_export]
macro_rules! file_queue_contract_tests {
    ($fixture:expr) => {
        $crate::file_queue_contract_tests!(@suite [tests [$crate::sync::contract::queue] $fixture]);
    };
    (@suite [$($mode:tt)*]) => {
        $crate::__contract_suite! { $($mode)*;
            QUEUE_CHECKS on [] {
                batches_of_ten_take_25_messages,
                a_message_over_the_size_limit_is_refused_alone,
                a_received_message_stays_hidden_while_extended,
            }
        }
    };
}

crate::file_queue_contract_tests!(@suite [runner Fixture]);

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn message(connector_id: &str, key: String, i: u64) -> FileMessage {
    FileMessage {
        v: FileMessage::VERSION,
        version: FileVersion {
            connector_id: connector_id.to_owned(),
            bucket: "source-bucket".into(),
            key,
            etag: format!("\"e{i}\""),
            version_id: None,
        },
        size: i,
        last_modified: at(1_700_000_000),
        piece: 0,
    }
}

/// Receives until `count` messages came (at most 20 receives); deletes what it received.
async fn receive_all(queue: &dyn TestQueue, count: usize) -> Result<Vec<FileMessage>, String> {
    let mut received = Vec::new();
    for _ in 0..20 {
        let batch = queue.receive(30).await?;
        for r in batch {
            queue.delete(&r.receipt_handle).await?;
            received.push(r.message);
        }
        if received.len() >= count {
            break;
        }
    }
    // A standard queue does not keep order: compare as sets.
    received.sort_by(|a, b| a.version.key.cmp(&b.version.key));
    Ok(received)
}

/// 25 messages go in three batches: every one is accepted (one `true` per message, in its place) and
/// received once, as sent. Sending nothing accepts nothing.
pub async fn batches_of_ten_take_25_messages(fixture: Fixture) -> CheckResult {
    let queue = fixture.new_queue().await?;
    let connector = unique("c");
    let messages: Vec<FileMessage> = (0..25)
        .map(|i| message(&connector, format!("in/file {i:02}.csv"), i))
        .collect();
    expect_eq(
        "sending nothing",
        queue.queue().send(&[]).await.ctx("send nothing")?,
        vec![],
    )?;
    let accepted = queue.queue().send(&messages).await.ctx("send 25")?;
    expect_eq("accepted", accepted, vec![true; 25])?;
    let received = receive_all(queue.as_ref(), 25).await?;
    expect_eq("received (by key)", received, messages)
}

/// A message over the size limit (256 KiB) among 12 is refused alone: `false` in its place, the others
/// accepted and received.
pub async fn a_message_over_the_size_limit_is_refused_alone(fixture: Fixture) -> CheckResult {
    let queue = fixture.new_queue().await?;
    let connector = unique("c");
    let mut messages: Vec<FileMessage> = (0..12)
        .map(|i| message(&connector, format!("in/file {i:02}.csv"), i))
        .collect();
    messages[5].version.key = format!("in/{}", "x".repeat(300 * 1024));
    let accepted = queue.queue().send(&messages).await.ctx("send 12")?;
    let want: Vec<bool> = (0..12).map(|i| i != 5).collect();
    expect_eq("accepted", accepted, want)?;
    let received = receive_all(queue.as_ref(), 11).await?;
    let mut sent = messages;
    sent.remove(5);
    expect_eq("received (by key)", received, sent)
}

/// A received message extended before its visibility runs out stays hidden after it would have
/// reappeared; an extension to 0 shows it again, and a deleted message is gone. (SQS refuses a total
/// visibility of more than 12 hours from the receipt, whatever one extension asks: not a contract of the
/// port, so not checked.)
pub async fn a_received_message_stays_hidden_while_extended(fixture: Fixture) -> CheckResult {
    let queue = fixture.new_queue().await?;
    let sent = message(&unique("c"), "in/slow.csv".to_owned(), 1);
    expect_eq(
        "accepted",
        queue
            .queue()
            .send(std::slice::from_ref(&sent))
            .await
            .ctx("send")?,
        vec![true],
    )?;
    let first = queue.receive(1).await?;
    expect_eq("first receive", first.len(), 1)?;
    expect_eq("received message", &first[0].message, &sent)?;
    let handle = &first[0].receipt_handle;
    queue
        .queue()
        .extend_visibility(handle, 30)
        .await
        .ctx("extend the visibility by 30 s")?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let hidden = queue.receive(1).await?;
    expect(
        &format!(
            "the extended message is still hidden 2.5 s after a 1 s visibility, got {hidden:?}"
        ),
        hidden.is_empty(),
    )?;
    queue
        .queue()
        .extend_visibility(handle, 0)
        .await
        .ctx("make it visible again")?;
    let again = queue.receive(30).await?;
    expect_eq(
        "received again after an extension to 0",
        again.iter().map(|r| &r.message).collect::<Vec<_>>(),
        vec![&sent],
    )?;
    queue.delete(&again[0].receipt_handle).await?;
    let gone = queue.receive(0).await?;
    expect(
        &format!("a deleted message is gone, got {gone:?}"),
        gone.is_empty(),
    )
}

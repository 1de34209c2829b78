//! [`FileLedger`] on the state table: one item per file version, moved through its states by conditional
//! writes (`docs/architecture.md`, "The ledger"). Every transition's condition is the state it starts
//! from, so a duplicate delivery, a late worker or a second lister gets an outcome, never a second write.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use s3_importer_core::sync::model::{Checkpoint, FileStatus, LedgerEntry};
use s3_importer_core::sync::ports::{ClaimOutcome, FileLedger, StartOutcome, StateError};

use super::codec::{
    attr_str, connector_pk, file_key, json_av, millis_n, n, s, time_s, to_item, FILE_MILLIS,
    FILE_PREFIX,
};
use super::conditional::{WriteIf, Written};
use super::expr::Expr;
use super::{other, DynamoStateStore, Item, SK};

/// Rounds of `start_file` when the entry changes between the failed condition and the read that explains it.
const START_ATTEMPTS: u32 = 3;

impl DynamoStateStore {
    /// One conditional UpdateItem on a ledger entry held by `owner`; a failed condition is a
    /// [`StateError::Conflict`] (the lease expired and another worker took the file over).
    async fn update_held_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        mut expr: Expr,
        update: String,
        context: String,
    ) -> Result<(), StateError> {
        let status = expr.name("status");
        let lease_owner = expr.name("lease_owner");
        let processing = expr.value("processing", s(FileStatus::Processing.as_str()));
        let owner_value = expr.value("owner", s(owner));
        let condition = format!("{status} = {processing} AND {lease_owner} = {owner_value}");
        let write = WriteIf::update(file_key(connector_id, file_id), update, condition, expr);
        self.write_if(write, &context)
            .await?
            .or_conflict(|| format!("lease on file {file_id} of connector {connector_id}"))
    }
}

#[async_trait]
impl FileLedger for DynamoStateStore {
    async fn get_files(
        &self,
        connector_id: &str,
        file_ids: &[String],
    ) -> Result<HashMap<String, LedgerEntry>, StateError> {
        let context = self.ctx(format!(
            "read {} ledger entries of connector {connector_id}",
            file_ids.len()
        ));
        // BatchGetItem rejects a request that names the same key twice.
        let mut seen = HashSet::with_capacity(file_ids.len());
        let keys: Vec<Item> = file_ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .map(|id| file_key(connector_id, id))
            .collect();
        let mut found = HashMap::with_capacity(keys.len());
        for item in self.batch_get(keys, &context).await? {
            let Some(file_id) = attr_str(&item, SK).and_then(|sk| sk.strip_prefix(FILE_PREFIX))
            else {
                continue;
            };
            let file_id = file_id.to_owned();
            found.insert(file_id, self.parse_entry(&item)?);
        }
        Ok(found)
    }

    async fn get_file(
        &self,
        connector_id: &str,
        file_id: &str,
    ) -> Result<Option<LedgerEntry>, StateError> {
        let context = self.ctx(format!("read file {file_id} of connector {connector_id}"));
        let item = self
            .get_item(file_key(connector_id, file_id), &context)
            .await?;
        item.map(|item| self.parse_entry(&item)).transpose()
    }

    async fn list_files(
        &self,
        connector_id: &str,
        status: Option<FileStatus>,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let context = self.ctx(format!("list files of connector {connector_id}"));
        let items = self
            .query(
                connector_pk(connector_id),
                FILE_PREFIX,
                status,
                false,
                None,
                &context,
            )
            .await?;
        items.iter().map(|item| self.parse_entry(item)).collect()
    }

    async fn claim_file(&self, entry: &LedgerEntry) -> Result<ClaimOutcome, StateError> {
        let connector_id = &entry.version.connector_id;
        let file_id = entry.version.file_id();
        let context = self.ctx(format!("claim file {file_id} of connector {connector_id}"));
        let mut item = to_item(entry, &FILE_MILLIS).map_err(|e| other(context.clone(), e))?;
        item.extend(file_key(connector_id, &file_id));
        // Exactly one lister creates an entry: the ledger, not the listing, decides what is new.
        let write = WriteIf::put(item, "attribute_not_exists(pk)", Expr::default());
        Ok(match self.write_if(write, &context).await? {
            Written::Done(_) => ClaimOutcome::Claimed,
            Written::ConditionFailed(_) => ClaimOutcome::AlreadyKnown,
        })
    }

    async fn mark_queued(
        &self,
        connector_id: &str,
        file_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "mark file {file_id} of connector {connector_id} queued"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let queued_at = expr.name("queued_at");
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let at = expr.value("at", time_s(at).map_err(|e| other(context.clone(), e))?);
        let update = format!("SET {status} = {queued}, {queued_at} = {at}");
        // A worker may already have started it (SQS can deliver before we get here): then leave it.
        let condition = format!("{status} = {claimed}");
        let write = WriteIf::update(file_key(connector_id, file_id), update, condition, expr);
        self.write_if(write, &context).await?;
        Ok(())
    }

    async fn start_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<StartOutcome, StateError> {
        let context = self.ctx(format!("start file {file_id} of connector {connector_id}"));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let owner_name = expr.name("lease_owner");
        let until_name = expr.name("lease_until");
        let started_at = expr.name("started_at");
        let attempts = expr.name("attempts");
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let processing = expr.value("processing", s(FileStatus::Processing.as_str()));
        let owner_value = expr.value("owner", s(owner));
        let until_value = expr.value("until", n(millis_n(lease_until)));
        let now_ms = expr.value("now_ms", n(millis_n(now)));
        let now_s = expr.value("now", time_s(now).map_err(|e| other(context.clone(), e))?);
        let zero = expr.value("zero", n(0));
        let one = expr.value("one", n(1));
        let update = format!(
            "SET {status} = {processing}, {owner_name} = {owner_value}, {until_name} = {until_value}, \
             {started_at} = {now_s}, {attempts} = if_not_exists({attempts}, {zero}) + {one}"
        );
        // A lease ends strictly after `lease_until`; a missing one (never expected) counts as expired.
        let condition = format!(
            "{status} IN ({claimed}, {queued}) OR ({status} = {processing} AND \
             (attribute_not_exists({until_name}) OR {until_name} < {now_ms}))"
        );
        for _ in 0..START_ATTEMPTS {
            let key = file_key(connector_id, file_id);
            let write = WriteIf::update(key, update.clone(), condition.clone(), expr.clone())
                .returning_new()
                .old_on_failure();
            let old = match self.write_if(write, &context).await? {
                Written::Done(item) => {
                    let item = item.unwrap_or_default();
                    return Ok(StartOutcome::Started(Box::new(self.parse_entry(&item)?)));
                }
                Written::ConditionFailed(Some(old)) => Some(old),
                // No old item returned: either there is none, or the endpoint does not implement
                // ReturnValuesOnConditionCheckFailure; a consistent read tells which.
                Written::ConditionFailed(None) => {
                    self.get_item(file_key(connector_id, file_id), &context)
                        .await?
                }
            };
            let Some(old) = old else {
                return Ok(StartOutcome::Unknown);
            };
            let entry = self.parse_entry(&old)?;
            match (entry.status, entry.lease_until) {
                (FileStatus::Processing, Some(until)) if until >= now => {
                    return Ok(StartOutcome::Busy(until))
                }
                (status, _) if status.is_terminal() => {
                    return Ok(StartOutcome::AlreadyFinished(status))
                }
                // It changed between the write and the read (released, or its lease ran out): try again.
                _ => {
                    tracing::debug!(table = %self.table, connector = %connector_id, file_id, "ledger entry changed while starting; trying again");
                    continue;
                }
            }
        }
        Err(StateError::Conflict {
            what: format!("file {file_id} of connector {connector_id}"),
        })
    }

    async fn renew_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "renew the lease on file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let until_name = expr.name("lease_until");
        let until_value = expr.value("until", n(millis_n(lease_until)));
        let mut update = format!("SET {until_name} = {until_value}");
        if let Some(checkpoint) = checkpoint {
            let name = expr.name("checkpoint");
            let value = expr.value(
                "checkpoint",
                json_av(checkpoint).map_err(|e| other(context.clone(), e))?,
            );
            update.push_str(&format!(", {name} = {value}"));
        }
        self.update_held_file(connector_id, file_id, owner, expr, update, context)
            .await
    }

    async fn checkpoint_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "checkpoint file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let until = expr.name("lease_until");
        let lease_owner = expr.name("lease_owner");
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let mut set = format!("SET {status} = {queued}");
        if let Some(checkpoint) = checkpoint {
            let name = expr.name("checkpoint");
            let value = expr.value(
                "checkpoint",
                json_av(checkpoint).map_err(|e| other(context.clone(), e))?,
            );
            set.push_str(&format!(", {name} = {value}"));
        }
        let update = format!("{set} REMOVE {lease_owner}, {until}");
        self.update_held_file(connector_id, file_id, owner, expr, update, context)
            .await
    }

    async fn mark_continued(
        &self,
        connector_id: &str,
        file_id: &str,
        piece: u32,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "mark the continuation of file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let checkpoint = expr.name("checkpoint");
        let piece_name = expr.name("piece");
        let continued = expr.name("continued");
        let piece_value = expr.value("piece", n(u64::from(piece)));
        let yes = expr.value("yes", AttributeValue::Bool(true));
        let update = format!("SET {checkpoint}.{continued} = {yes}");
        // Another piece is current (or there is no checkpoint any more): nothing to mark.
        let condition = format!("{checkpoint}.{piece_name} = {piece_value}");
        let write = WriteIf::update(file_key(connector_id, file_id), update, condition, expr);
        self.write_if(write, &context).await?;
        Ok(())
    }

    async fn finish_file(&self, entry: &LedgerEntry, owner: &str) -> Result<(), StateError> {
        entry.check_final()?;
        let connector_id = &entry.version.connector_id;
        let file_id = entry.version.file_id();
        let context = self.ctx(format!("finish file {file_id} of connector {connector_id}"));
        let mut item = to_item(entry, &FILE_MILLIS).map_err(|e| other(context.clone(), e))?;
        item.extend(file_key(connector_id, &file_id));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let lease_owner = expr.name("lease_owner");
        let processing = expr.value("processing", s(FileStatus::Processing.as_str()));
        let owner_value = expr.value("owner", s(owner));
        // Only the lease holder writes the outcome: a worker whose lease expired and was taken over
        // must not overwrite the newer attempt's result.
        let condition = format!("{status} = {processing} AND {lease_owner} = {owner_value}");
        self.write_if(WriteIf::put(item, condition, expr), &context)
            .await?
            .or_conflict(|| format!("lease on file {file_id} of connector {connector_id}"))
    }

    async fn release_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        error: &str,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "release file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let error_name = expr.name("error");
        let until = expr.name("lease_until");
        let lease_owner = expr.name("lease_owner");
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let error_value = expr.value("error", s(error));
        let update = format!(
            "SET {status} = {queued}, {error_name} = {error_value} REMOVE {lease_owner}, {until}"
        );
        self.update_held_file(connector_id, file_id, owner, expr, update, context)
            .await
    }

    async fn reopen_file(
        &self,
        connector_id: &str,
        file_id: &str,
        from: FileStatus,
        replay: bool,
    ) -> Result<bool, StateError> {
        let context = self.ctx(format!(
            "reopen {from} file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let from_value = expr.value("from", s(from.as_str()));
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let zero = expr.value("zero", n(0));
        let imported = expr.name("rows_imported");
        let rejected = expr.name("rows_rejected");
        // The same reset as `LedgerEntry::reopen` (the contract suite compares both stores against it).
        let removed: Vec<String> = [
            "queued_at",
            "finished_at",
            "lease_until",
            "lease_owner",
            "error_report",
            "error",
            "skip_reason",
            "checkpoint",
        ]
        .iter()
        .map(|a| expr.name(a))
        .collect();
        let mut set = format!("{status} = {claimed}, {imported} = {zero}, {rejected} = {zero}");
        if replay {
            let replays = expr.name("replays");
            let one = expr.value("one", n(1));
            set.push_str(&format!(
                ", {replays} = if_not_exists({replays}, {zero}) + {one}"
            ));
        }
        let update = format!("SET {set} REMOVE {}", removed.join(", "));
        // Only an entry in `from` moves: a second caller (or a worker that got there first) changes nothing.
        let condition = format!("{status} = {from_value}");
        let write = WriteIf::update(file_key(connector_id, file_id), update, condition, expr);
        Ok(self.write_if(write, &context).await?.is_done())
    }

    async fn dead_letter_file(
        &self,
        connector_id: &str,
        file_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let context = self.ctx(format!(
            "fail dead-lettered file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let error_name = expr.name("error");
        let finished = expr.name("finished_at");
        let until = expr.name("lease_until");
        let owner = expr.name("lease_owner");
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let processing = expr.value("processing", s(FileStatus::Processing.as_str()));
        let failed = expr.value("failed", s(FileStatus::Failed.as_str()));
        let error_value = expr.value("error", s(error));
        let now_ms = expr.value("now_ms", n(millis_n(now)));
        let now_s = expr.value("now", time_s(now).map_err(|e| other(context.clone(), e))?);
        let update = format!(
            "SET {status} = {failed}, {error_name} = {error_value}, {finished} = {now_s} \
             REMOVE {until}, {owner}"
        );
        // The same rule as `LedgerEntry::awaits_a_worker`: a worker holding a live lease keeps the file.
        let condition = format!(
            "{status} IN ({claimed}, {queued}) OR ({status} = {processing} AND \
             (attribute_not_exists({until}) OR {until} < {now_ms}))"
        );
        let write = WriteIf::update(file_key(connector_id, file_id), update, condition, expr);
        Ok(self.write_if(write, &context).await?.is_done())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::{entry, meta, store};
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
    };
    use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    #[tokio::test]
    async fn claim_file_is_a_conditional_put_and_a_failed_condition_means_already_known(
    ) -> Result<(), StateError> {
        let rule = mock!(Client::put_item)
            .match_requests(|req| {
                req.table_name() == Some("state")
                    && req.condition_expression() == Some("attribute_not_exists(pk)")
                    && req
                        .item()
                        .and_then(|i| i.get("sk"))
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|sk| sk.starts_with("FILE#"))
                    && req.item().and_then(|i| i.get("pk")) == Some(&s("CONNECTOR#c-1"))
            })
            .then_error(|| {
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .message("The conditional request failed")
                        .meta(meta("ConditionalCheckFailedException"))
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule]);
        assert_eq!(
            store(client).claim_file(&entry()).await?,
            ClaimOutcome::AlreadyKnown
        );
        assert_eq!(rule.num_calls(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn claim_file_succeeds_when_the_put_does() -> Result<(), StateError> {
        let rule = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule]);
        assert_eq!(
            store(client).claim_file(&entry()).await?,
            ClaimOutcome::Claimed
        );
        Ok(())
    }

    #[tokio::test]
    async fn throttling_is_transient_and_names_what_was_done() {
        let rule = mock!(Client::put_item)
            .sequence()
            .error(|| {
                PutItemError::ProvisionedThroughputExceededException(
                    ProvisionedThroughputExceededException::builder()
                        .message("slow down")
                        .meta(meta("ProvisionedThroughputExceededException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule], |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
        let err = store(client).claim_file(&entry()).await.err();
        assert!(matches!(err, Some(StateError::Transient { .. })), "{err:?}");
        let text = err.map(|e| format!("{e}")).unwrap_or_default();
        assert!(
            text.contains("claim file")
                && text.contains("connector c-1")
                && text.contains("table state"),
            "{text}"
        );
        assert!(
            text.contains("ProvisionedThroughputExceededException: from the mock"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn start_file_explains_a_failed_condition_with_the_returned_item(
    ) -> Result<(), StateError> {
        let mut busy = entry();
        busy.status = FileStatus::Processing;
        let until = busy.discovered_at + chrono::Duration::minutes(10);
        busy.lease_until = Some(until);
        busy.lease_owner = Some("other".into());
        let mut old = to_item(&busy, &FILE_MILLIS).map_err(|e| other("test".into(), e))?;
        old.extend(file_key("c-1", &busy.version.file_id()));
        let rule = mock!(Client::update_item)
            .match_requests(|req| {
                req.return_values_on_condition_check_failure()
                    == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
                    && req
                        .condition_expression()
                        .is_some_and(|c| c.contains("IN (:claimed, :queued)"))
            })
            .then_error(move || {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .set_item(Some(old.clone()))
                        .meta(meta("ConditionalCheckFailedException"))
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule]);
        let now = busy.discovered_at;
        let outcome = store(client)
            .start_file(
                "c-1",
                &busy.version.file_id(),
                "me",
                now,
                now + chrono::Duration::minutes(1),
            )
            .await?;
        assert_eq!(outcome, StartOutcome::Busy(until));
        Ok(())
    }
}

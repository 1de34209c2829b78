//! Conditional writes on the state table, in one place: a PutItem, UpdateItem or DeleteItem that happens
//! only when its condition holds. A failed condition is never an error here: it comes back as
//! [`Written::ConditionFailed`] (with the item that failed it, when asked for), and each capability names
//! what it means (a conflict, not found, already known, or nothing to do). Every other failure goes
//! through the crate's error policy.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use s3_importer_core::sync::ports::StateError;

use super::expr::Expr;
use super::{sdk_error, DynamoStateStore, Item};

/// The request of a conditional write.
#[derive(Debug)]
enum Write {
    /// PutItem of a whole item (its key included).
    Put(Item),
    /// UpdateItem of the item at `key`; `return_new` asks for the item as written.
    Update {
        key: Item,
        update: String,
        return_new: bool,
    },
    /// DeleteItem of the item at this key.
    Delete(Item),
}

/// A write that happens only when `condition` holds, with the placeholders its expressions use.
#[derive(Debug)]
pub(super) struct WriteIf {
    write: Write,
    condition: String,
    expr: Expr,
    old_on_failure: bool,
}

impl WriteIf {
    /// A PutItem of `item` (its key included) when `condition` holds.
    pub(super) fn put(item: Item, condition: impl Into<String>, expr: Expr) -> Self {
        Self::new(Write::Put(item), condition, expr)
    }

    /// An UpdateItem of the item at `key` when `condition` holds.
    pub(super) fn update(
        key: Item,
        update: String,
        condition: impl Into<String>,
        expr: Expr,
    ) -> Self {
        let write = Write::Update {
            key,
            update,
            return_new: false,
        };
        Self::new(write, condition, expr)
    }

    /// A DeleteItem of the item at `key` when `condition` holds.
    pub(super) fn delete(key: Item, condition: impl Into<String>, expr: Expr) -> Self {
        Self::new(Write::Delete(key), condition, expr)
    }

    fn new(write: Write, condition: impl Into<String>, expr: Expr) -> Self {
        Self {
            write,
            condition: condition.into(),
            expr,
            old_on_failure: false,
        }
    }

    /// Asks for the item as written ([`Written::Done`]); UpdateItem only (PutItem cannot return it).
    pub(super) fn returning_new(mut self) -> Self {
        if let Write::Update { return_new, .. } = &mut self.write {
            *return_new = true;
        }
        self
    }

    /// Asks for the item that failed the condition ([`Written::ConditionFailed`]), so the caller can say
    /// why without another read (when the endpoint implements `ReturnValuesOnConditionCheckFailure`).
    pub(super) fn old_on_failure(mut self) -> Self {
        self.old_on_failure = true;
        self
    }
}

/// What a conditional write came to, when it did not fail for another reason.
#[derive(Debug)]
pub(super) enum Written {
    /// The condition held and the item was written (with the new item when asked for).
    Done(Option<Item>),
    /// The condition failed and nothing changed (with the item as it is, when asked for and returned).
    ConditionFailed(Option<Item>),
}

impl Written {
    pub(super) fn is_done(&self) -> bool {
        matches!(self, Written::Done(_))
    }

    /// `Ok` when written; a failed condition means another writer got there first.
    pub(super) fn or_conflict(self, what: impl FnOnce() -> String) -> Result<(), StateError> {
        match self {
            Written::Done(_) => Ok(()),
            Written::ConditionFailed(_) => Err(StateError::Conflict { what: what() }),
        }
    }
}

/// A conditional write's answer: a failed condition is [`Written::ConditionFailed`] with the item the
/// service returned (`old_item`), any other failure goes through the policy.
fn written<E>(
    result: Result<Option<Item>, SdkError<E, HttpResponse>>,
    context: &str,
    old_item: impl FnOnce(&E) -> Option<Item>,
) -> Result<Written, StateError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(item) => Ok(Written::Done(item)),
        Err(e) if is_condition_failed(&e) => Ok(Written::ConditionFailed(
            e.as_service_error().and_then(old_item),
        )),
        Err(e) => Err(sdk_error(e, context.to_owned())),
    }
}

/// True when the service refused the condition (the SDK's deserializer always sets the code).
fn is_condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

impl DynamoStateStore {
    /// Sends one conditional write (see [`WriteIf`]); `context` says what was being done.
    pub(super) async fn write_if(
        &self,
        write: WriteIf,
        context: &str,
    ) -> Result<Written, StateError> {
        let WriteIf {
            write,
            condition,
            expr,
            old_on_failure,
        } = write;
        let on_failure = old_on_failure.then_some(ReturnValuesOnConditionCheckFailure::AllOld);
        match write {
            Write::Put(item) => {
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .set_return_values_on_condition_check_failure(on_failure)
                    .send()
                    .await;
                written(result.map(|_| None), context, |e| match e {
                    PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => None,
                })
            }
            Write::Update {
                key,
                update,
                return_new,
            } => {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .update_expression(update)
                    .condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .set_return_values(return_new.then_some(ReturnValue::AllNew))
                    .set_return_values_on_condition_check_failure(on_failure)
                    .send()
                    .await;
                written(result.map(|out| out.attributes), context, |e| match e {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => None,
                })
            }
            Write::Delete(key) => {
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .set_return_values_on_condition_check_failure(on_failure)
                    .send()
                    .await;
                written(result.map(|_| None), context, |e| match e {
                    DeleteItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::{entry, meta, store};
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use s3_importer_core::sync::model::FileStatus;
    use s3_importer_core::sync::ports::{ConnectorStore, FileLedger, LeaseStore};

    fn condition_failed() -> ConditionalCheckFailedException {
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .meta(meta("ConditionalCheckFailedException"))
            .build()
    }

    #[tokio::test]
    async fn failed_conditions_are_named_outcomes() -> Result<(), StateError> {
        let update = mock!(Client::update_item)
            .then_error(|| UpdateItemError::ConditionalCheckFailedException(condition_failed()));
        let put = mock!(Client::put_item)
            .then_error(|| PutItemError::ConditionalCheckFailedException(condition_failed()));
        let delete = mock!(Client::delete_item)
            .then_error(|| DeleteItemError::ConditionalCheckFailedException(condition_failed()));
        // No item returned with the failed condition, and none there: the connector does not exist.
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            &[&update, &put, &delete, &get]
        );
        let store = store(client);
        let now = entry().discovered_at;

        // No-ops: someone else moved on, nothing of ours to change.
        store.mark_queued("c-1", "f", now).await?;
        store.mark_continued("c-1", "f", 2).await?;
        store.release_lease("sync", "me").await?;
        // Refusals.
        assert!(
            !store
                .reopen_file("c-1", "f", FileStatus::Failed, false)
                .await?
        );
        assert!(!store.dead_letter_file("c-1", "f", "dlq", now).await?);
        assert!(
            !store
                .acquire_lease("sync", "me", now, chrono::Duration::minutes(1))
                .await?
        );
        // Conflicts: the lease was taken over.
        let renewed = store.renew_file("c-1", "f", "me", now, None).await;
        assert!(
            matches!(&renewed, Err(StateError::Conflict { what }) if what.contains("lease on file f")),
            "{renewed:?}"
        );
        let released = store.release_file("c-1", "f", "me", "boom").await;
        assert!(
            matches!(released, Err(StateError::Conflict { .. })),
            "{released:?}"
        );
        // Not found, explained by a read.
        let advanced = store.advance_watermark("c-9", now).await;
        assert!(
            matches!(&advanced, Err(StateError::NotFound { what }) if what == "connector c-9"),
            "{advanced:?}"
        );
        assert_eq!(get.num_calls(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_watermark_condition_with_the_old_item_needs_no_read() -> Result<(), StateError>
    {
        let update = mock!(Client::update_item)
            .match_requests(|req| {
                req.return_values_on_condition_check_failure()
                    == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
            })
            .then_error(|| {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .set_item(Some(crate::state::codec::meta_key("c-1")))
                        .meta(meta("ConditionalCheckFailedException"))
                        .build(),
                )
            });
        let get = mock!(Client::get_item).then_output(|| GetItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&update, &get]);
        // Already at or beyond: nothing to do, and no read to tell why.
        store(client)
            .advance_watermark("c-1", entry().discovered_at)
            .await?;
        assert_eq!((update.num_calls(), get.num_calls()), (1, 0));
        Ok(())
    }
}

//! [`SyncHistory`] on the state table: one item per sync run under its connector (expiring after
//! [`SYNC_RUN_RETENTION`]), and the connector's `last_sync`, written together.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use s3_importer_core::sync::model::SyncRun;
use s3_importer_core::sync::ports::{StateError, SyncHistory};

use super::codec::{
    connector_pk, from_item, json_av, key, meta_key, n, sync_sk, to_item, SYNC_PREFIX,
};
use super::{other, transaction_error, DynamoStateStore, SYNC_RUN_RETENTION, TTL_ATTRIBUTE};

#[async_trait]
impl SyncHistory for DynamoStateStore {
    async fn record_sync_run(&self, run: &SyncRun) -> Result<(), StateError> {
        let id = &run.connector_id;
        let context = self.ctx(format!("record a sync run of connector {id}"));
        let mut item = to_item(run, &[]).map_err(|e| other(context.clone(), e))?;
        item.extend(key(connector_pk(id), sync_sk(run.started_at)));
        item.insert(
            TTL_ATTRIBUTE.into(),
            n((run.started_at + SYNC_RUN_RETENTION).timestamp()),
        );
        let run_value = json_av(run).map_err(|e| other(context.clone(), e))?;
        let last_sync = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .update_expression("SET #last_sync = :run")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#last_sync", "last_sync")
            .expression_attribute_values(":run", run_value)
            .build()
            .map_err(|e| other(context.clone(), e))?;
        let items = vec![
            self.put(item, None, &context)?,
            TransactWriteItem::builder().update(last_sync).build(),
        ];
        self.transact(items).await.map_err(|e| {
            transaction_error(e, context.clone(), |_| {
                Some(StateError::NotFound {
                    what: format!("connector {id}"),
                })
            })
        })
    }

    async fn list_sync_runs(
        &self,
        connector_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let context = self.ctx(format!("list sync runs of connector {connector_id}"));
        let items = self
            .query(
                connector_pk(connector_id),
                SYNC_PREFIX,
                None,
                true,
                Some(limit),
                &context,
            )
            .await?;
        items
            .iter()
            .map(|item| from_item(item, &[]).map_err(|e| other(context.clone(), e)))
            .collect()
    }
}

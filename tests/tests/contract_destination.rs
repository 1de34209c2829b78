//! The destination contract (`sync::contract::destination`) against `AwsDestination` on the emulator, once
//! per destination kind: the DynamoDB records table (upserts, the kind `MemoryDestination` has) and S3 JSONL
//! outputs (staged). Both write their error reports to S3. The records table's item layout and the outputs'
//! metadata are in `aws_adapters.rs`.
//!
//! Each test builds its own clients, table and buckets.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use s3_importer_aws::{create_records_table, AwsDestination};
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::contract::destination::{DestinationFixture, RowLineage, VisibleRow};
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::DestinationConfig;
use s3_importer_tests::{create_bucket, dynamodb_client, emulator, s3_client, unique_name};

/// The destination and its backing resources.
struct Aws {
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    destination: AwsDestination,
    config: DestinationConfig,
}

impl Aws {
    /// An output bucket (error reports, and rows for `S3Jsonl`) and, for `Dynamodb`, a records table.
    async fn new(jsonl: bool) -> Result<Self, String> {
        let cfg: SdkConfig = emulator().await.sdk_config().await;
        let bucket = unique_name("contract-out");
        create_bucket(&cfg, &bucket)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let config = if jsonl {
            DestinationConfig::S3Jsonl {
                bucket: bucket.clone(),
                prefix: "normalized/".into(),
            }
        } else {
            let table = unique_name("contract-records");
            create_records_table(&dynamodb_client(&cfg), &table)
                .await
                .map_err(|e| e.to_string())?;
            DestinationConfig::Dynamodb { table }
        };
        // 5 MiB parts (S3's minimum, which moto enforces) so the 6 MB checks really are multipart.
        let destination = AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), &bucket)
            .with_part_size(5 << 20);
        Ok(Self {
            s3: s3_client(&cfg),
            dynamodb: dynamodb_client(&cfg),
            destination,
            config,
        })
    }

    /// `(bucket, key prefix)` of a connector's JSONL outputs.
    fn jsonl_prefix(&self, connector_id: &str) -> Option<(String, String)> {
        match &self.config {
            DestinationConfig::S3Jsonl { bucket, prefix } => Some((
                bucket.clone(),
                format!("{}/{connector_id}/", prefix.trim_matches('/')),
            )),
            _ => None,
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(
                out.body
                    .collect()
                    .await
                    .map_err(|e| format!("read s3://{bucket}/{key}: {e}"))?
                    .to_vec(),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(format!("get s3://{bucket}/{key}: {e:?}")),
        }
    }

    async fn table_rows(&self, table: &str, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(table)
                .consistent_read(true)
                .filter_expression("connector_id = :c")
                .expression_attribute_values(":c", AttributeValue::S(connector_id.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| format!("scan {table}: {e:?}"))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        let text = |item: &HashMap<String, AttributeValue>, name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok().or_else(|| v.as_n().ok()))
                .cloned()
                .ok_or_else(|| format!("item without {name}: {item:?}"))
        };
        let mut rows = Vec::new();
        for item in &items {
            let mut row = serde_json::Map::new();
            for (name, value) in item {
                if name == "pk" || name == "connector_id" || name.starts_with('_') {
                    continue;
                }
                row.insert(name.clone(), json_of(value)?);
            }
            let lineage = RowLineage {
                source_key: text(item, "_source_key")?,
                source_etag: text(item, "_source_etag")?,
                source_last_modified_ms: text(item, "_source_last_modified")?
                    .parse()
                    .map_err(|e| format!("_source_last_modified: {e}"))?,
                record: text(item, "_source_row")?
                    .parse()
                    .map_err(|e| format!("_source_row: {e}"))?,
            };
            rows.push((
                text(item, "pk")?,
                VisibleRow {
                    row: row.into(),
                    lineage: Some(lineage),
                },
            ));
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(rows.into_iter().map(|(_, row)| row).collect())
    }
}

/// An attribute as the JSON value it was written from (N as a number, S as a string).
fn json_of(value: &AttributeValue) -> Result<serde_json::Value, String> {
    Ok(match value {
        AttributeValue::S(s) => serde_json::Value::String(s.clone()),
        AttributeValue::N(n) => serde_json::from_str(n).map_err(|e| format!("number {n}: {e}"))?,
        AttributeValue::Bool(b) => serde_json::Value::Bool(*b),
        AttributeValue::Null(_) => serde_json::Value::Null,
        other => return Err(format!("unexpected attribute {other:?}")),
    })
}

#[async_trait]
impl DestinationFixture for Aws {
    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(self.destination.clone())
    }

    fn config(&self) -> DestinationConfig {
        self.config.clone()
    }

    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        if let DestinationConfig::Dynamodb { table } = &self.config {
            return self.table_rows(table, connector_id).await;
        }
        let Some((bucket, _)) = self.jsonl_prefix(connector_id) else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        for key in self.visible_outputs(connector_id).await? {
            let body = self.get(&bucket, &key).await?.unwrap_or_default();
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                rows.push(VisibleRow {
                    row: serde_json::from_slice(line)
                        .map_err(|e| format!("a line of {key}: {e}"))?,
                    lineage: None,
                });
            }
        }
        Ok(rows)
    }

    async fn visible_outputs(&self, connector_id: &str) -> Result<Vec<String>, String> {
        let Some((bucket, prefix)) = self.jsonl_prefix(connector_id) else {
            return Ok(Vec::new());
        };
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(|e| format!("list s3://{bucket}/{prefix}: {e:?}"))?;
        // Carry objects (`.jsonl.carry-N`, the bytes a suspended piece left) are not outputs.
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .filter(|k| k.ends_with(".jsonl"))
            .map(str::to_owned)
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn open_uploads(&self, connector_id: &str) -> Result<Vec<String>, String> {
        let Some((bucket, prefix)) = self.jsonl_prefix(connector_id) else {
            return Ok(Vec::new());
        };
        let uploads = self
            .s3
            .list_multipart_uploads()
            .bucket(&bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(|e| format!("list uploads of s3://{bucket}/{prefix}: {e:?}"))?;
        Ok(uploads
            .uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect())
    }

    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String> {
        let (bucket, key) = location
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| format!("not an s3:// location: {location}"))?;
        let Some(body) = self.get(bucket, key).await? else {
            return Ok(None);
        };
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(|e| format!("a line of {location}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The records table: rows upserted by primary key.
mod records {
    use super::*;

    async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
        Ok(Arc::new(Aws::new(false).await?))
    }

    s3_importer_core::destination_contract_tests!(fixture(), upserts);
}

/// S3 JSONL: one object per file version, visible when complete.
mod jsonl {
    use super::*;

    async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
        Ok(Arc::new(Aws::new(true).await?))
    }

    s3_importer_core::destination_contract_tests!(fixture(), staged);
}

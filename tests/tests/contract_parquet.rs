//! The destination contract (`sync::contract::destination`, staged outputs) against `AwsDestination` writing
//! Parquet to S3 on the emulator. Rows are read back from the objects with the `parquet` crate's reader; the
//! row groups are small (64 KiB) and parts S3's minimum (5 MiB), so the 6 MB checks span many row groups and
//! several parts, and the pieces check carries row groups across pieces.
//!
//! Each test builds its own clients and bucket.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use s3_importer_aws::parquet::schema::{
    EXTRA, LINEAGE, SOURCE_ETAG, SOURCE_KEY, SOURCE_LAST_MODIFIED, SOURCE_ROW,
};
use s3_importer_aws::AwsDestination;
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::contract::destination::{DestinationFixture, RowLineage, VisibleRow};
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::DestinationConfig;
use s3_importer_tests::parquet_rows::parquet_rows;
use s3_importer_tests::{create_bucket, emulator, s3_client, unique_name};
use serde_json::Value;

const PREFIX: &str = "lake/orders";

/// The destination and its bucket.
struct Parquet {
    s3: aws_sdk_s3::Client,
    bucket: String,
    destination: AwsDestination,
}

impl Parquet {
    async fn new() -> Result<Self, String> {
        let cfg: SdkConfig = emulator().await.sdk_config().await;
        let bucket = unique_name("contract-parquet");
        create_bucket(&cfg, &bucket)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let destination = AwsDestination::new(
            s3_client(&cfg),
            s3_importer_tests::dynamodb_client(&cfg),
            &bucket,
        )
        .with_part_size(5 << 20)
        .with_row_group_bytes(64 << 10);
        Ok(Self {
            s3: s3_client(&cfg),
            bucket,
            destination,
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.body
                    .collect()
                    .await
                    .map_err(|e| format!("read s3://{}/{key}: {e}", self.bucket))?
                    .to_vec(),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(format!("get s3://{}/{key}: {e:?}", self.bucket)),
        }
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, String> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(|e| format!("list s3://{}/{prefix}: {e:?}", self.bucket))?;
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// A Parquet row as the contract sees it: the template's columns plus the keys kept in `_extra`, and the
/// lineage columns.
fn visible(mut row: serde_json::Map<String, Value>) -> Result<VisibleRow, String> {
    let text = |row: &serde_json::Map<String, Value>, name: &str| {
        row.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("row without {name}: {row:?}"))
    };
    let number = |row: &serde_json::Map<String, Value>, name: &str| {
        row.get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("row without {name}: {row:?}"))
    };
    let lineage = RowLineage {
        source_key: text(&row, SOURCE_KEY)?,
        source_etag: text(&row, SOURCE_ETAG)?,
        source_last_modified_ms: number(&row, SOURCE_LAST_MODIFIED)? / 1000,
        record: u64::try_from(number(&row, SOURCE_ROW)?).map_err(|e| e.to_string())?,
    };
    let extra = match row.get(EXTRA) {
        Some(Value::String(text)) => serde_json::from_str::<serde_json::Map<String, Value>>(text)
            .map_err(|e| format!("_extra: {e}"))?,
        _ => serde_json::Map::new(),
    };
    row.retain(|name, _| !LINEAGE.contains(&name.as_str()));
    row.extend(extra);
    Ok(VisibleRow {
        row: Value::Object(row),
        lineage: Some(lineage),
    })
}

#[async_trait]
impl DestinationFixture for Parquet {
    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(self.destination.clone())
    }

    fn config(&self) -> DestinationConfig {
        DestinationConfig::S3Parquet {
            bucket: self.bucket.clone(),
            prefix: PREFIX.into(),
        }
    }

    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        let mut rows = Vec::new();
        for key in self.visible_outputs(connector_id).await? {
            let body = self.get(&key).await?.unwrap_or_default();
            for row in parquet_rows(body).map_err(|e| format!("read {key}: {e:#}"))? {
                rows.push(visible(row)?);
            }
        }
        Ok(rows)
    }

    async fn visible_outputs(&self, connector_id: &str) -> Result<Vec<String>, String> {
        let keys = self
            .keys(&format!("{PREFIX}/connector={connector_id}/"))
            .await?;
        if let Some(stray) = keys.iter().find(|k| !k.ends_with(".parquet")) {
            return Err(format!("a non-Parquet object among the outputs: {stray}"));
        }
        Ok(keys)
    }

    /// Open multipart uploads of the connector, and the objects a piece staged (footers, carries).
    async fn open_uploads(&self, connector_id: &str) -> Result<Vec<String>, String> {
        let uploads = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(PREFIX)
            .send()
            .await
            .map_err(|e| format!("list uploads of s3://{}/{PREFIX}: {e:?}", self.bucket))?;
        let mut open: Vec<String> = uploads
            .uploads()
            .iter()
            .filter_map(|u| u.key())
            .filter(|k| k.contains(&format!("connector={connector_id}/")))
            .map(str::to_owned)
            .collect();
        open.extend(
            self.keys(&format!("{PREFIX}/_staging/connector={connector_id}/"))
                .await?,
        );
        Ok(open)
    }

    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String> {
        let key = location
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .ok_or_else(|| format!("not a location in s3://{}: {location}", self.bucket))?;
        let Some(body) = self.get(key).await? else {
            return Ok(None);
        };
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(|e| format!("a line of {location}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
    Ok(Arc::new(Parquet::new().await?))
}

s3_importer_core::destination_contract_tests!(fixture(), staged);

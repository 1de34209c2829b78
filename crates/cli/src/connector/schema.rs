//! `connector schema`: the Parquet schema of a connector's output, or the Athena table to query it.

use std::process::ExitCode;

use anyhow::Result;
use s3_importer_aws::parquet::{athena, OutputSchema};
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::sync::DestinationConfig;

use super::{find, require_template};
use crate::exit::{exit, Status};

/// Runs `connector schema`.
pub(super) async fn schema(state: &dyn StateStore, name: &str, athena: bool) -> Result<ExitCode> {
    let connector = find(state, name).await?;
    let DestinationConfig::S3Parquet { bucket, prefix } = &connector.destination else {
        return Err(exit(
            Status::Usage,
            format!(
                "connector {name} does not write Parquet: `connector update {name} --output-format parquet` \
                 makes its s3 destination do so"
            ),
        ));
    };
    let stored =
        require_template(state, &connector.template_id, connector.template_version).await?;
    let template = &stored.template;
    if athena {
        let table = athena::table_name(&connector.name);
        let sql = athena::create_table(&table, template, bucket, prefix, &connector.id)
            .map_err(|e| exit(Status::Usage, format!("template {}: {e}", template.name)))?;
        outln!("{sql}");
    } else {
        let text = OutputSchema::of(template)
            .and_then(|s| s.message_text())
            .map_err(|e| exit(Status::Usage, format!("template {}: {e}", template.name)))?;
        outln!("{}", text.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

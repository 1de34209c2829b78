//! `s3-importer template …`: stored, versioned data templates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::template::Template;

use crate::table;

/// `template` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Store a template (a new version when its name exists).
    #[command(after_help = "Example:\n  s3-importer template add examples/templates/orders.toml")]
    Add {
        /// The template file (TOML).
        file: PathBuf,
        /// Store under this id instead of the template's `name`.
        #[arg(long)]
        id: Option<String>,
    },
    /// List stored templates (latest versions).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one stored template.
    Show {
        /// Template id.
        id: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<u32>,
    },
}

/// Reads and parses a template file, naming the file in errors.
pub fn load(file: &PathBuf) -> Result<(String, Template)> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let template = Template::from_toml(&source)
        .with_context(|| format!("invalid template {}", file.display()))?;
    Ok((source, template))
}

/// Runs a `template` subcommand.
pub async fn run(state: &dyn StateStore, command: TemplateCommand) -> Result<()> {
    match command {
        TemplateCommand::Add { file, id } => {
            let (source, template) = load(&file)?;
            let id = id.unwrap_or_else(|| template.name.clone());
            let version = state
                .put_template(&id, &source, &template, chrono::Utc::now())
                .await?;
            println!(
                "stored template {id} version {version} ({} fields)",
                template.fields.len()
            );
        }
        TemplateCommand::List { json } => {
            let templates = state.list_templates().await?;
            if json {
                let list: Vec<_> = templates
                    .iter()
                    .map(|t| serde_json::json!({"id": t.id, "version": t.version, "fields": t.template.fields.len(), "created_at": t.created_at}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = templates
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.version.to_string(),
                            t.template.fields.len().to_string(),
                            t.created_at.to_rfc3339(),
                        ]
                    })
                    .collect();
                table::print(&["ID", "VERSION", "FIELDS", "CREATED"], &rows);
            }
        }
        TemplateCommand::Show { id, version } => {
            let stored = state.get_template(&id, version).await?.with_context(|| {
                format!("no template {id:?}: `s3-importer template list` shows the stored ones")
            })?;
            println!(
                "# template {} version {} (stored {})",
                stored.id,
                stored.version,
                stored.created_at.to_rfc3339()
            );
            print!("{}", stored.source);
        }
    }
    Ok(())
}

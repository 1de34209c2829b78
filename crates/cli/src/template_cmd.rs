//! `s3-importer template …`: stored, versioned data templates.

use std::path::PathBuf;

use std::process::ExitCode;

use anyhow::Result;
use s3_importer_core::template::Template;

use crate::aws_args::AwsArgs;
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
    #[command(after_help = "Example:\n  s3-importer template list --json")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one stored template.
    #[command(after_help = "Example:\n  s3-importer template show demo-orders --version 1")]
    Show {
        /// Template id.
        id: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a template file; with --against, dry-run it over files and report per file how many rows
    /// would pass and the first errors (nothing is written).
    #[command(
        after_help = "Examples:\n  s3-importer template validate orders.toml\n  \
s3-importer template validate orders.toml --against exports/\n  \
s3-importer template validate orders.toml --against s3://acme-exports/orders/2024-05-01.csv\n\n\
Exit status: 0 when every row passes, 5 when rows or files would be rejected, 2 for an invalid template."
    )]
    Validate {
        /// The template file (TOML).
        file: PathBuf,
        /// A local file, a local directory, or s3://BUCKET/PREFIX (every object under it).
        #[arg(long)]
        against: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Reads and parses a template file, naming the file in errors.
pub fn load(file: &PathBuf) -> Result<(String, Template)> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        crate::exit::exit(
            crate::exit::Status::Usage,
            format!("cannot read template {}: {e}", file.display()),
        )
    })?;
    let template = Template::from_toml(&source).map_err(|e| {
        crate::exit::exit(
            crate::exit::Status::Usage,
            format!("invalid template {}: {e}", file.display()),
        )
    })?;
    Ok((source, template))
}

/// What `template show` says when the template, or the version of it asked for, is not stored.
fn not_found_message(id: &str, version: Option<u32>) -> String {
    match version {
        Some(v) => format!(
            "no version {v} of template {id:?}: `s3-importer template list` shows the stored ones"
        ),
        None => format!("no template {id:?}: `s3-importer template list` shows the stored ones"),
    }
}

/// Runs `template validate`: a check of the file, and with `--against` a dry run over files (local, or S3
/// through its own SDK configuration). Needs no deployment.
pub async fn validate(aws: &AwsArgs, command: TemplateCommand) -> Result<ExitCode> {
    let TemplateCommand::Validate {
        file,
        against,
        json,
    } = command
    else {
        return Err(anyhow::anyhow!(
            "internal error: `template validate` called with another subcommand"
        ));
    };
    let (_, template) = load(&file)?;
    let Some(against) = against else {
        if json {
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"template": template.name, "valid": true, "fields": template.fields.len()})
                )?
            );
        } else {
            outln!(
                "{} is a valid template ({} fields)",
                file.display(),
                template.fields.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let results = crate::preview::validate_against(aws, template, &against).await?;
    crate::preview::print_dry_runs(&results, json)
}

/// Runs a `template` subcommand against the deployment's state table.
pub async fn run(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    command: TemplateCommand,
) -> Result<ExitCode> {
    if let TemplateCommand::Validate { .. } = command {
        return validate(aws, command).await;
    }
    let state = crate::state(sdk, &aws.state_table()?);
    let state = state.as_ref();
    match command {
        TemplateCommand::Validate { .. } => {}
        TemplateCommand::Add { file, id } => {
            let (source, template) = load(&file)?;
            let id = id.unwrap_or_else(|| template.name.clone());
            let version = state
                .put_template(&id, &source, &template, chrono::Utc::now())
                .await?;
            outln!(
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
                outln!("{}", serde_json::to_string_pretty(&list)?);
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
        TemplateCommand::Show { id, version, json } => {
            let Some(stored) = state.get_template(&id, version).await? else {
                return Err(crate::exit::exit(
                    crate::exit::Status::NotFound,
                    not_found_message(&id, version),
                ));
            };
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"id": stored.id, "version": stored.version, "created_at": stored.created_at, "source": stored.source})
                    )?
                );
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "# template {} version {} (stored {})",
                stored.id,
                stored.version,
                stored.created_at.to_rfc3339()
            );
            out!("{}", stored.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

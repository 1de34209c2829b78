//! `s3-importer`: the command line of s3-importer.

use std::process::ExitCode;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use s3_importer_core::sync::ports::StateStore;

mod aws_args;
mod connector;
mod import_file;
mod local;
mod run;
mod table;
mod template_cmd;

/// Keep your data up to date from files that land in Amazon S3.
#[derive(Debug, Parser)]
#[command(name = "s3-importer", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    aws: aws_args::AwsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import one local file with a data template: typed rows to JSONL, rejected rows to an error report.
    #[command(
        after_help = "Example:\n  s3-importer import-file --template examples/templates/orders.toml orders.csv\n\n\
Exit status: 0 when the file was imported (even with rejected rows), 1 when it failed, 2 on usage errors."
    )]
    ImportFile(import_file::Args),
    /// Manage connectors.
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
    /// Manage stored data templates.
    #[command(subcommand)]
    Template(template_cmd::TemplateCommand),
    /// The local runner: one lister pass, then drain the queue through the worker (the Lambda handlers).
    #[command(after_help = "Example:\n  s3-importer run --once")]
    Run(run::RunArgs),
    /// Resources on the local AWS emulator (setup, sample data).
    #[command(subcommand)]
    Local(local::LocalCommand),
}

/// The state store of the deployment.
pub fn state(sdk: &aws_config::SdkConfig, table: &str) -> Arc<dyn StateStore> {
    Arc::new(s3_importer_aws::state::DynamoStateStore::new(
        s3_importer_aws::config::dynamodb_client(sdk),
        table.to_owned(),
    ))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let aws = cli.aws;
    match cli.command {
        Command::ImportFile(args) => return import_file::run(args).await,
        Command::Connector(command) => {
            let sdk = aws.sdk_config().await;
            let state = state(&sdk, &aws.state_table()?);
            connector::run(
                state.as_ref(),
                aws.records_table.as_deref(),
                aws.output_bucket.as_deref(),
                command,
            )
            .await?;
        }
        Command::Template(command) => {
            let sdk = aws.sdk_config().await;
            let state = state(&sdk, &aws.state_table()?);
            template_cmd::run(state.as_ref(), command).await?;
        }
        Command::Run(args) => run::run(&aws, args).await?,
        Command::Local(command) => local::run(&aws, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("S3I_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

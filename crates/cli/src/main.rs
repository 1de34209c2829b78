//! `s3-importer`: the command line of s3-importer.

use std::process::ExitCode;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use s3_importer_core::sync::ports::StateStore;

/// `println!` for the command's output: a closed stdout ends the command quietly ([`output::write`]).
macro_rules! outln {
    () => {
        $crate::output::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), true)
    };
}

/// `print!` for the command's output: a closed stdout ends the command quietly ([`output::write`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), false)
    };
}

mod aws_args;
mod connector;
mod exit;
mod import_file;
mod local;
mod output;
mod preview;
mod remote;
mod run;
mod run_events;
mod status;
mod table;
mod template_cmd;

/// Keep your data up to date from files that land in Amazon S3.
#[derive(Debug, Parser)]
#[command(
    name = "s3-importer",
    version,
    about,
    long_about = None,
    after_help = "Example:\n  s3-importer --stack s3-importer connector list\n\n\
Exit status: 0 done, 1 the operation failed, 2 invalid usage or input, 3 not found, 4 conflict (name taken), \
5 a check found a problem (verify, reauth, resume, template validate)."
)]
struct Cli {
    #[command(flatten)]
    aws: aws_args::AwsArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `connector` variant (its create and update options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Import one local file with a data template: typed rows to JSONL, rejected rows to an error report.
    #[command(
        after_help = "Example:\n  s3-importer import-file --template examples/templates/orders.toml orders.csv\n\n\
Exit status: 0 when the file was imported (even with rejected rows), 1 when it failed, 2 on usage errors."
    )]
    ImportFile(import_file::Args),
    /// Manage connectors: create, verify, preview, status, edit, pause, sync, retry, delete.
    #[command(
        subcommand,
        after_help = "Example:\n  s3-importer connector create --help"
    )]
    Connector(connector::ConnectorCommand),
    /// Manage stored data templates.
    #[command(
        subcommand,
        after_help = "Example:\n  s3-importer template add examples/templates/orders.toml"
    )]
    Template(template_cmd::TemplateCommand),
    /// The local runner: one lister pass, then drain the queue through the worker (the Lambda handlers).
    #[command(after_help = "Example:\n  s3-importer run --once")]
    Run(run::RunArgs),
    /// Resources on the local AWS emulator (setup, sample data).
    #[command(
        subcommand,
        after_help = "Example:\n  eval \"$(s3-importer local setup --prefix mine)\""
    )]
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
    let mut aws = cli.aws;
    // import-file and `template validate` need no deployment: they run without AWS configuration (a
    // `template validate --against s3://…` loads its own).
    let command = match cli.command {
        Command::ImportFile(args) => return import_file::run(args).await,
        Command::Template(command @ template_cmd::TemplateCommand::Validate { .. }) => {
            return template_cmd::validate(&aws, command).await
        }
        other => other,
    };
    // `connector create --region` names the bucket's region, and clap hands that value to the global
    // `--region` too: the deployment's region then comes from the environment or the profile.
    let mut no_region = aws_args::NO_REGION;
    if let Command::Connector(connector::ConnectorCommand::Create(args)) = &command {
        no_region = aws_args::NO_REGION_CREATE;
        if aws.region.as_deref() == Some(args.bucket_region()) {
            aws.region = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok();
        }
    }
    let sdk = aws.sdk_config_or(no_region).await?;
    aws.resolve_stack(&sdk).await?;
    match command {
        Command::ImportFile(args) => import_file::run(args).await,
        Command::Connector(command) => connector::run(&aws, &sdk, command).await,
        Command::Template(command) => template_cmd::run(&aws, &sdk, command).await,
        Command::Run(args) => run::run(&aws, &sdk, args).await,
        Command::Local(command) => local::run(&aws, &sdk, command)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("S3I_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            eprintln!("error: {}", exit::message_of(&e));
            exit::status_of(&e)
        }
    }
}

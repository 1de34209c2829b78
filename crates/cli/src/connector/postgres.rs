//! The PostgreSQL destination in the CLI: `--destination postgres:[SCHEMA.]TABLE` with where the connection
//! comes from, `--create-table` (the table from the template), and the table check of `connector verify`.
//!
//! These run from where the CLI runs, with the operator's credentials (the secret is read with them): a
//! database in a private VPC is reached from a host inside it (a bastion, Cloud9, an SSM session).

use anyhow::Result;
use s3_importer_aws::secrets::Secrets;
use s3_importer_aws::verify::Check;
use s3_importer_core::sync::{Connector, DestinationConfig, PostgresConnection};
use s3_importer_core::template::Template;
use s3_importer_postgres::{ddl, verify, TableRef};
use s3_importer_worker::destinations::connection_settings;

use crate::exit::{exit, Status};

/// How a PostgreSQL destination connects, and whether to create its table.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct PostgresArgs {
    /// With `--destination postgres:…`: the Secrets Manager secret (name or ARN) holding the database's
    /// settings in the RDS format (host, port, username, password, dbname; optional sslmode, sslrootcert).
    #[arg(long, conflicts_with = "postgres_url_env")]
    pub postgres_secret: Option<String>,
    /// With `--destination postgres:…`: an environment variable holding a postgres:// URL, for local use (the
    /// worker reads the same variable).
    #[arg(long)]
    pub postgres_url_env: Option<String>,
    /// With `--destination postgres:…`: create the table from the template if it does not exist.
    #[arg(long)]
    pub create_table: bool,
}

/// The destination `postgres:TABLE` with the connection the arguments name.
pub fn destination(table: &str, args: &PostgresArgs) -> Result<DestinationConfig> {
    TableRef::parse(table).map_err(|e| exit(Status::Usage, e.to_string()))?;
    let connection = match (&args.postgres_secret, &args.postgres_url_env) {
        (Some(secret_id), None) => PostgresConnection::Secret {
            secret_id: secret_id.clone(),
        },
        (None, Some(var)) => PostgresConnection::Env { var: var.clone() },
        _ => {
            return Err(exit(
                Status::Usage,
                "a postgres destination needs --postgres-secret NAME_OR_ARN (or, locally, --postgres-url-env VAR)",
            ))
        }
    };
    Ok(DestinationConfig::Postgres {
        table: table.to_owned(),
        connection,
    })
}

/// `--create-table` or the check of an existing table, for a connector just created or changed: a report of
/// one check (`table`).
pub async fn prepare_table(
    sdk: &aws_config::SdkConfig,
    connector: &Connector,
    template: &Template,
    create: bool,
) -> Option<Check> {
    let DestinationConfig::Postgres { table, connection } = &connector.destination else {
        return None;
    };
    Some(
        match table_step(sdk, connection, table, template, create).await {
            Ok(check) => check,
            Err(e) => unreachable_check(&e),
        },
    )
}

/// The `table` check of `connector verify`; `None` for other destinations.
pub async fn check_table(
    sdk: &aws_config::SdkConfig,
    connector: &Connector,
    template: &Template,
) -> Option<Check> {
    prepare_table(sdk, connector, template, false).await
}

async fn table_step(
    sdk: &aws_config::SdkConfig,
    connection: &PostgresConnection,
    table: &str,
    template: &Template,
    create: bool,
) -> Result<Check, String> {
    let table = TableRef::parse(table).map_err(|e| e.to_string())?;
    let secrets = Secrets::new(s3_importer_aws::config::secretsmanager_client(sdk));
    let settings = connection_settings(connection, &secrets)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = s3_importer_postgres::connect(&settings)
        .await
        .map_err(|e| e.to_string())?;
    if create {
        ddl::create(&mut client, template, &table)
            .await
            .map_err(|e| e.to_string())?;
    }
    let report = verify(&client, template, &table)
        .await
        .map_err(|e| e.to_string())?;
    Ok(if report.is_ok() {
        Check::pass("table", report.to_string())
    } else {
        let fix = report
            .mismatches
            .iter()
            .map(|m| format!("{};", m.fix))
            .collect::<Vec<_>>()
            .join("\n");
        let problems = report
            .mismatches
            .iter()
            .map(|m| m.problem.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Check::fail(
            "table",
            "schema_mismatch",
            format!("table {table} does not fit the template: {problems}"),
            fix,
        )
    })
}

/// Prints a table check after `connector create`/`update`: what was found and, on failure, the fix.
pub fn print_check(check: &Check) {
    outln!("table: {} — {}", check.status.as_str(), check.detail);
    if let Some(fix) = &check.fix {
        outln!("to fix:\n{fix}");
    }
}

fn unreachable_check(error: &str) -> Check {
    Check::fail(
        "table",
        "database",
        format!("cannot check the table: {error}"),
        "check the connection settings, and run this from a host that reaches the database (the worker \
         Lambda needs the same: see the deployment's VPC parameters)",
    )
}

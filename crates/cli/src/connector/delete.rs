//! `connector delete`: a connector and all its state go; the source bucket and the imported rows stay.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use s3_importer_core::sync::ports::StateStore;

use super::find;
use crate::exit::{exit, Status};

/// Runs `connector delete`: asks for the name on a terminal unless `yes`; elsewhere only `--yes` deletes.
pub(super) async fn delete(state: &dyn StateStore, name: &str, yes: bool) -> Result<ExitCode> {
    let connector = find(state, name).await?;
    if !yes && !confirm(&connector.name)? {
        return Err(exit(
            Status::Usage,
            format!("not deleted: confirm by typing the name, or pass --yes (`connector delete {} --yes`)", connector.name),
        ));
    }
    let removed = state.delete_connector(&connector.id).await?;
    outln!(
        "deleted connector {} ({}): {removed} state item(s) removed; s3://{} was not touched, and \
         imported rows stay in the destination",
        connector.name,
        connector.id,
        connector.source.bucket
    );
    Ok(ExitCode::SUCCESS)
}

fn confirm(name: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    out!("Delete connector {name} and all its state? Type its name to confirm: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim() == name)
}

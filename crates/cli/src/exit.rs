//! Exit statuses, and errors that carry one.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the operation failed (AWS, network, state table) |
//! | 2 | usage: an invalid option or input, or a confirmation was needed (`--yes`) |
//! | 3 | not found: no such connector, template or file |
//! | 4 | conflict: the name is taken, or the connector changed meanwhile |
//! | 5 | a check found a problem: `connector verify` / `reauth` / `resume` failed, `template validate` rejected rows |

use std::fmt;
use std::process::ExitCode;

use s3_importer_core::policy::InvalidInput;
use s3_importer_core::sync::ports::StateError;

/// An exit status other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 1: the operation failed.
    Failed = 1,
    /// 2: invalid usage or input.
    Usage = 2,
    /// 3: something named does not exist.
    NotFound = 3,
    /// 4: a name is taken or a concurrent change won.
    Conflict = 4,
    /// 5: a check found a problem.
    CheckFailed = 5,
}

/// An error with the exit status it should end the command with.
#[derive(Debug)]
pub struct Exit {
    /// The status.
    pub status: Status,
    /// What happened and what to do.
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// An error ending with `status`.
pub fn exit(status: Status, message: impl Into<String>) -> anyhow::Error {
    Exit {
        status,
        message: message.into(),
    }
    .into()
}

/// The exit status for an error: the first [`Exit`], [`InvalidInput`] or [`StateError`] in its chain decides.
pub fn status_of(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return ExitCode::from(e.status as u8);
        }
        if cause.downcast_ref::<InvalidInput>().is_some() {
            return ExitCode::from(Status::Usage as u8);
        }
        if let Some(e) = cause.downcast_ref::<StateError>() {
            return ExitCode::from(match e {
                StateError::NameTaken { .. } | StateError::Conflict { .. } => Status::Conflict,
                StateError::NotFound { .. } => Status::NotFound,
                _ => Status::Failed,
            } as u8);
        }
    }
    ExitCode::from(Status::Failed as u8)
}

/// The message for an error: its chain of causes joined with `: `, without repeating a cause whose text the
/// message already ends with. Library errors (the SDK's, and ours, such as `SinkError`'s `{context}: {source}`)
/// often put their source's text in their own message and also return it as their source; printing the
/// chain with `{:#}` would then say every operating-system or service error twice.
pub fn message_of(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says its source in its own message, and returns it as its source too.
    #[derive(Debug)]
    struct Interpolating {
        source: std::io::Error,
    }

    impl fmt::Display for Interpolating {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "write rows.jsonl: {}", self.source)
        }
    }

    impl std::error::Error for Interpolating {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_source_already_in_the_message_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let error = anyhow::Error::new(Interpolating { source: io }).context("import orders.csv");
        assert_eq!(
            message_of(&error),
            "import orders.csv: write rows.jsonl: No space left on device"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_all_said() {
        let error = anyhow::anyhow!("connection refused")
            .context("list s3://bucket/")
            .context("sync orders");
        assert_eq!(
            message_of(&error),
            "sync orders: list s3://bucket/: connection refused"
        );
    }
}

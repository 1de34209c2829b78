//! The crate's errors, and which of them a retry can cure.

/// A PostgreSQL destination failure, with what was being done and where.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection settings cannot be used (a malformed URL or secret, an unknown `sslmode`).
    #[error("invalid PostgreSQL connection settings: {0}")]
    Settings(String),
    /// The TLS configuration could not be built (an unreadable root certificate file).
    #[error("PostgreSQL TLS setup: {0}")]
    Tls(String),
    /// Connecting failed.
    #[error("connect to PostgreSQL at {host}:{port}, database {dbname}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Database.
        dbname: String,
        /// The client's error (it never holds the password).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("{step} ({table}): {}", describe(source))]
    Query {
        /// What was being done, e.g. "merge the staged rows".
        step: &'static str,
        /// The table concerned.
        table: String,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The template cannot be a table here (a field name too long for PostgreSQL, or reserved).
    #[error("template {template:?}: {reason}")]
    Template {
        /// The template's name.
        template: String,
        /// Why.
        reason: String,
    },
    /// A row's value does not have its template type's form (see [`crate::encode`]).
    #[error("a value cannot be written to its column: {0}")]
    Value(#[from] crate::encode::ValueError),
    /// The staging table of a file imported in pieces is gone (dropped by hand, or the template changed
    /// between pieces): the rows staged by the earlier pieces are lost.
    #[error("{0}")]
    StagingLost(String),
    /// A checkpoint's state for this destination is missing or unreadable.
    #[error("checkpoint state of the PostgreSQL sink: {0}")]
    Checkpoint(String),
}

/// The server's message with its SQLSTATE and detail when there is one; the client's text otherwise.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!(
                "{}: {} (SQLSTATE {}; {detail})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            None => format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
        },
        None => error.to_string(),
    }
}

impl PgError {
    /// A failed statement.
    pub fn query(
        step: &'static str,
        table: impl Into<String>,
        source: tokio_postgres::Error,
    ) -> Self {
        Self::Query {
            step,
            table: table.into(),
            source,
        }
    }

    /// True when a retry may succeed: see [`is_transient`].
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Query { source, .. } => is_transient(source),
            Self::Settings(_)
            | Self::Tls(_)
            | Self::Template { .. }
            | Self::Value(_)
            | Self::StagingLost(_)
            | Self::Checkpoint(_) => false,
        }
    }
}

/// Whether a SQLSTATE names a condition a retry can cure: connection exceptions (class 08), transaction
/// rollbacks such as serialization failures and deadlocks (40), insufficient resources such as too many
/// connections (53), and an administrator's or crash shutdown (57P01, 57P02, 57P03).
pub fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("40")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57P04" | "57P05")
}

/// Whether retrying after this client error may succeed: by SQLSTATE when the server answered, and yes for
/// a closed connection or an I/O failure (the server went away); no for the rest (a type error, bad SQL).
pub fn is_transient(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        return is_transient_sqlstate(code.code());
    }
    if error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_transient_sqlstate;

    #[test]
    fn sqlstates_are_classified_by_class() {
        let table = [
            ("08006", true),  // connection failure
            ("08001", true),  // unable to connect
            ("40001", true),  // serialization failure
            ("40P01", true),  // deadlock
            ("53300", true),  // too many connections
            ("57P01", true),  // admin shutdown
            ("57014", false), // query cancelled: a statement timeout, not cured by retrying as is
            ("23505", false), // unique violation
            ("42P01", false), // undefined table
            ("42703", false), // undefined column
            ("22P02", false), // invalid text representation
            ("28P01", false), // wrong password
        ];
        for (code, want) in table {
            assert_eq!(is_transient_sqlstate(code), want, "SQLSTATE {code}");
        }
    }
}

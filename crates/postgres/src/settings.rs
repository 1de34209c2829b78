//! Connection settings: from a URL (local use, read from an environment variable by the caller) or from an
//! AWS Secrets Manager secret in the RDS format. The password never appears in `Debug` output, errors or logs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::PgError;

/// How TLS is used. Whenever TLS is used, the server's certificate and host name are verified (against the
/// Mozilla roots, plus `sslrootcert` when given: RDS and Aurora need Amazon's bundle): unlike libpq,
/// `prefer` and `require` never accept an unverified certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (a local server, tests).
    Disable,
    /// TLS when the server offers it, plain otherwise.
    Prefer,
    /// TLS, verified.
    Require,
    /// TLS, verified (the default).
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = PgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            // verify-ca checks less than we always do; it is accepted and verifies fully.
            "verify-ca" | "verify-full" => Ok(Self::VerifyFull),
            other => Err(PgError::Settings(format!(
                "unknown sslmode {other:?}: expected disable, prefer, require or verify-full"
            ))),
        }
    }
}

/// A password: shown as `***` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Host name or address.
    pub host: String,
    /// Port (5432 by default).
    pub port: u16,
    /// User.
    pub user: String,
    /// Password, if any.
    pub password: Option<Password>,
    /// Database.
    pub dbname: String,
    /// TLS use.
    pub sslmode: SslMode,
    /// A PEM file of root certificates to trust besides the Mozilla roots (`sslrootcert`).
    pub root_cert: Option<PathBuf>,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

/// The RDS secret format (`host`, `port`, `username`, `password`, `dbname`), plus two optional keys of our
/// own, `sslmode` and `sslrootcert` (a path, e.g. Amazon's RDS bundle in a Lambda layer); other keys ignored.
#[derive(Deserialize)]
struct RdsSecret {
    host: String,
    #[serde(default)]
    port: Option<PortValue>,
    username: String,
    password: String,
    #[serde(default)]
    dbname: Option<String>,
    #[serde(default)]
    sslmode: Option<String>,
    #[serde(default)]
    sslrootcert: Option<PathBuf>,
}

/// RDS writes the port as a number; hand-written secrets often as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortValue {
    Number(u16),
    Text(String),
}

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl ConnectionSettings {
    /// From the JSON of an RDS-format secret; TLS is `verify-full` unless the secret's `sslmode` says
    /// otherwise. Errors never quote the secret.
    pub fn from_rds_secret(json: &str) -> Result<Self, PgError> {
        let secret: RdsSecret = serde_json::from_str(json).map_err(|e| {
            PgError::Settings(format!(
                "the secret is not an RDS-format JSON object with host, port, username, password and dbname \
                 ({} at line {}, column {})",
                classify(&e),
                e.line(),
                e.column()
            ))
        })?;
        let port = match secret.port {
            None => DEFAULT_PORT,
            Some(PortValue::Number(port)) => port,
            Some(PortValue::Text(text)) => text
                .trim()
                .parse()
                .map_err(|_| PgError::Settings("the secret's port is not a port number".into()))?,
        };
        Ok(Self {
            host: secret.host,
            port,
            user: secret.username,
            password: Some(Password(secret.password)),
            dbname: secret.dbname.unwrap_or_else(|| "postgres".into()),
            sslmode: secret
                .sslmode
                .as_deref()
                .map_or(Ok(SslMode::VerifyFull), str::parse)?,
            root_cert: secret.sslrootcert,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// From a `postgres://user:password@host:port/dbname?sslmode=…&sslrootcert=…` URL (percent-encoded
    /// parts decoded). Without `sslmode`, TLS is `verify-full`.
    pub fn from_url(url: &str) -> Result<Self, PgError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(PgError::Settings(
                "expected a postgres:// or postgresql:// URL".into(),
            ));
        }
        // tokio-postgres parses the URL but knows neither verify-full nor sslrootcert: take them out first.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = SslMode::VerifyFull;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", value)) => sslmode = value.parse()?,
                Some(("sslrootcert", value)) => root_cert = Some(PathBuf::from(value)),
                _ => rest.push(pair),
            }
        }
        let stripped = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config = tokio_postgres::Config::from_str(&stripped)
            .map_err(|e| PgError::Settings(format!("malformed PostgreSQL URL: {e}")))?;
        let host = match config.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            [] => return Err(PgError::Settings("the URL names no host".into())),
            _ => {
                return Err(PgError::Settings(
                    "the URL must name exactly one TCP host".into(),
                ))
            }
        };
        let password = config
            .get_password()
            .map(|p| String::from_utf8(p.to_vec()))
            .transpose()
            .map_err(|_| PgError::Settings("the URL's password is not UTF-8".into()))?
            .map(Password);
        let user = config
            .get_user()
            .ok_or_else(|| PgError::Settings("the URL names no user".into()))?
            .to_owned();
        Ok(Self {
            host,
            port: config.get_ports().first().copied().unwrap_or(DEFAULT_PORT),
            dbname: config.get_dbname().unwrap_or(&user).to_owned(),
            user,
            password,
            sslmode,
            root_cert,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The client configuration (TLS is chosen by the caller from [`ConnectionSettings::sslmode`]).
    pub(crate) fn client_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("s3-importer")
            .connect_timeout(self.connect_timeout)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config
    }
}

/// What is wrong with a secret's JSON, without any of its text.
fn classify(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "a key is missing or has the wrong type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_every_part_decoded_and_the_password_stays_out_of_debug() -> Result<(), PgError> {
        let s = ConnectionSettings::from_url(
            "postgres://importer:p%40ss%2Fw0rd@db.example.com:6543/sales?sslmode=require&sslrootcert=/opt/rds.pem",
        )?;
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()),
            ("db.example.com", 6543, "importer", "sales")
        );
        assert_eq!(s.password.as_ref().map(Password::expose), Some("p@ss/w0rd"));
        assert_eq!(s.sslmode, SslMode::Require);
        assert_eq!(s.root_cert, Some(PathBuf::from("/opt/rds.pem")));
        let debug = format!("{s:?}");
        assert!(!debug.contains("p@ss") && debug.contains("***"), "{debug}");
        Ok(())
    }

    #[test]
    fn tls_is_verified_unless_the_url_says_otherwise() -> Result<(), PgError> {
        let cases = [
            ("postgres://u@h/d", SslMode::VerifyFull),
            ("postgres://u@h/d?sslmode=disable", SslMode::Disable),
            (
                "postgresql://u@h/d?sslmode=prefer&connect_timeout=3",
                SslMode::Prefer,
            ),
            ("postgres://u@h/d?sslmode=verify-ca", SslMode::VerifyFull),
        ];
        for (url, want) in cases {
            assert_eq!(ConnectionSettings::from_url(url)?.sslmode, want, "{url}");
        }
        Ok(())
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "mysql://u:secret@h/d",
            "postgres://u:secret@h/d?sslmode=allow-anything",
            "postgres://:secret@/d",
        ] {
            let err = ConnectionSettings::from_url(url)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| !e.contains("secret")),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn an_rds_secret_gives_verified_tls_and_accepts_a_port_as_text() -> Result<(), PgError> {
        let s = ConnectionSettings::from_rds_secret(
            r#"{"engine":"postgres","host":"x.rds.amazonaws.com","port":5432,"username":"admin","password":"hunter2","dbname":"app"}"#,
        )?;
        assert_eq!(
            (s.port, s.sslmode, s.dbname.as_str()),
            (5432, SslMode::VerifyFull, "app")
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        let s = ConnectionSettings::from_rds_secret(
            r#"{"host":"h","port":"6000","username":"u","password":"p"}"#,
        )?;
        assert_eq!((s.port, s.dbname.as_str()), (6000, "postgres"));
        let s = ConnectionSettings::from_rds_secret(
            r#"{"host":"h","username":"u","password":"p","sslmode":"disable","sslrootcert":"/opt/rds.pem"}"#,
        )?;
        assert_eq!(
            (s.sslmode, s.root_cert),
            (SslMode::Disable, Some(PathBuf::from("/opt/rds.pem")))
        );
        Ok(())
    }

    #[test]
    fn a_malformed_secret_is_refused_without_quoting_it() {
        for json in [r#"{"host":"h","username":"u"}"#, r#"{"password":"hunter2""#] {
            let err = ConnectionSettings::from_rds_secret(json)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| !e.contains("hunter2") && e.contains("RDS-format")),
                "{err:?}"
            );
        }
    }
}

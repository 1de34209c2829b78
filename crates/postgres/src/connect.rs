//! Opening a connection: plain TCP for `sslmode=disable`, otherwise TLS through rustls (ring provider) with
//! the server's certificate and host name verified against the Mozilla roots and any `sslrootcert` bundle.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::PgError;
use crate::settings::{ConnectionSettings, SslMode};

/// Connects and drives the connection on the current runtime; the connection ends when the client is
/// dropped.
pub async fn connect(settings: &ConnectionSettings) -> Result<Client, PgError> {
    let config = settings.client_config();
    let failed = |source| PgError::Connect {
        host: settings.host.clone(),
        port: settings.port,
        dbname: settings.dbname.clone(),
        source,
    };
    let client = if settings.sslmode == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
        spawn_connection(connection);
        client
    } else {
        let tls = MakeRustlsConnect::new(tls_config(settings)?);
        let (client, connection) = config.connect(tls).await.map_err(failed)?;
        spawn_connection(connection);
        client
    };
    tracing::debug!(host = %settings.host, port = settings.port, dbname = %settings.dbname, "connected to PostgreSQL");
    Ok(client)
}

fn spawn_connection<C>(connection: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            // The next statement on the client reports the failure with its context.
            tracing::debug!(error = %error, "PostgreSQL connection ended");
        }
    });
}

/// A rustls client configuration that verifies the server against the Mozilla roots plus `root_cert`.
pub fn tls_config(settings: &ConnectionSettings) -> Result<rustls::ClientConfig, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| PgError::Tls(format!("read sslrootcert {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(PgError::Tls(format!(
                "sslrootcert {} holds no certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                PgError::Tls(format!(
                    "a certificate of {} is unusable: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

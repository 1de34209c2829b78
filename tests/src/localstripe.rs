//! localstripe (PyPI `localstripe`, installed by `infra/local/venv.sh`) on a free loopback port: a stateful
//! fake Stripe API that creates products with caller-chosen ids and updates them, and creates and updates
//! customers. It has no prices nor billing meter events and ignores `Idempotency-Key` (those are tested
//! against [`crate::stripe_api`]). Started with `--from-scratch`, stopped (killed) when dropped.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Any key is accepted by localstripe; this one is a test-mode key, as the rate defaults expect.
pub const KEY: &str = "sk_test_localstripe";

/// A running localstripe.
pub struct LocalStripe {
    port: u16,
    child: Child,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `localstripe` script next to the venv's Python.
fn program() -> PathBuf {
    let python = crate::postgres::python();
    python
        .parent()
        .map(|d| d.join("localstripe"))
        .unwrap_or_else(|| PathBuf::from("localstripe"))
}

impl LocalStripe {
    /// Starts one on a free loopback port and waits until it answers (at most 30 s).
    pub async fn start() -> Result<Self> {
        let program = program();
        if !program.exists() {
            bail!(
                "{} not found: run `make venv` (infra/local/venv.sh installs localstripe)",
                program.display()
            );
        }
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free port")?
            .port();
        let child = Command::new(&program)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        let server = Self { port, child };
        let started = Instant::now();
        loop {
            if server.get("/v1/products?limit=1").await.is_ok() {
                return Ok(server);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("localstripe did not answer on port {port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, the base URL to give the client.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET path` with the test key, read independently of the client under test (HTTP/1.0 on a socket).
    pub async fn get(&self, path: &str) -> Result<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP answer")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
        }
        serde_json::from_str(body).with_context(|| format!("GET {path}: not JSON"))
    }

    /// Every object of a list endpoint (`/v1/products`, `/v1/customers`), following `has_more`.
    pub async fn list(&self, resource: &str) -> Result<Vec<Value>> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let after = all
                .last()
                .and_then(|o| o.get("id"))
                .and_then(Value::as_str)
                .map(|id| format!("&starting_after={id}"))
                .unwrap_or_default();
            let page = self
                .get(&format!("/v1/{resource}?limit=100{after}"))
                .await?;
            let data = page
                .get("data")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
            all.extend(data);
            if !more {
                return Ok(all);
            }
        }
    }
}

//! One moto server per test process.
//!
//! The handle holds nothing tied to a tokio runtime (every `#[tokio::test]` has its own runtime, and a
//! client built on a dead runtime hangs), only the URL and the child process. The process is started
//! with `std::process`, readiness is a blocking HTTP/1.0 GET on a `std::net::TcpStream`, and SDK config
//! is built fresh per call to [`Emulator::sdk_config`].
//!
//! No orphans: moto is spawned by a keeper thread that lives as long as the test binary, with
//! `PR_SET_PDEATHSIG = SIGKILL` on Linux (the kernel kills moto when that thread, and so the process,
//! dies — including on panic=abort, SIGKILL or a Ctrl-C of `cargo test`), plus an `atexit` hook that
//! kills it on a normal exit on every platform.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Names an already-running emulator to reuse (e.g. from `eval "$(infra/local/moto.sh start)"`).
pub const URL_ENV: &str = "S3I_EMULATOR_URL";
/// The Python interpreter that has moto installed (default `$REPO/.venv/bin/python`).
pub const PYTHON_ENV: &str = "S3I_MOTO_PYTHON";
/// Seconds to wait for a spawned moto to answer (default 30).
pub const START_TIMEOUT_ENV: &str = "S3I_EMULATOR_START_TIMEOUT_SECS";

/// The region every emulator resource lives in.
pub const REGION: &str = "us-east-1";
/// The account id moto answers with (`sts get-caller-identity`, queue URLs, ARNs).
pub const ACCOUNT_ID: &str = "123456789012";
/// Dummy credentials: moto accepts any.
pub const ACCESS_KEY_ID: &str = "test";
/// Dummy credentials: moto accepts any.
pub const SECRET_ACCESS_KEY: &str = "test";

const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one readiness probe may take before we call the server unhealthy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running moto server, shared by every test in the process.
#[derive(Debug)]
pub struct Emulator {
    url: String,
    /// `Some` when this process started moto (and will kill it), `None` when reusing `S3I_EMULATOR_URL`.
    pid: Option<u32>,
}

static EMULATOR: OnceLock<Result<Emulator, String>> = OnceLock::new();
/// Pid of the moto we spawned, for the `atexit` hook (0 = none).
static CHILD_PID: AtomicI32 = AtomicI32::new(0);

/// The emulator for this test process: the first call reuses `S3I_EMULATOR_URL` if it is healthy, or
/// starts moto from the project venv; later calls return the same handle.
///
/// Panics with what to do next if no emulator can be had (e.g. "run `make venv` ... first"): end-to-end
/// tests never skip silently.
pub async fn emulator() -> &'static Emulator {
    if let Some(found) = EMULATOR.get() {
        return unwrap_emulator(found);
    }
    // Starting takes a second or two of blocking waits; keep them off the test's runtime threads.
    let found = tokio::task::spawn_blocking(emulator_blocking_result)
        .await
        .expect("emulator start-up thread panicked");
    unwrap_emulator(found)
}

/// [`emulator`] for code without an async context.
pub fn emulator_blocking() -> &'static Emulator {
    unwrap_emulator(emulator_blocking_result())
}

fn emulator_blocking_result() -> &'static Result<Emulator, String> {
    EMULATOR.get_or_init(Emulator::connect_or_start)
}

fn unwrap_emulator(found: &'static Result<Emulator, String>) -> &'static Emulator {
    match found {
        Ok(emulator) => emulator,
        Err(message) => panic!("local AWS emulator unavailable: {message}"),
    }
}

impl Emulator {
    /// Base URL, e.g. `http://127.0.0.1:41873` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Pid of the moto process this test binary started, or `None` when reusing `S3I_EMULATOR_URL`.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// SDK config pointing every service at the emulator: region us-east-1, static dummy credentials.
    ///
    /// Build it (and clients from it) inside each test: clients hold connections bound to the runtime
    /// they were first used on. S3 clients need path-style addressing: use [`s3_client`](crate::s3_client).
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "s3-importer-tests",
            ))
            .endpoint_url(&self.url)
            .load()
            .await
    }

    /// The environment a child process (the CLI, a Lambda binary, a script) needs to talk to this
    /// emulator: the global `AWS_ENDPOINT_URL` (not a per-service one), dummy credentials, region, and
    /// no instance-metadata lookups. The same variables `infra/local/moto.sh env` prints.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (URL_ENV, self.url.clone()),
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    fn connect_or_start() -> Result<Emulator, String> {
        if let Some(url) = std::env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty()) {
            let url = url.trim().trim_end_matches('/').to_owned();
            match probe(&url) {
                Ok(()) => return Ok(Emulator { url, pid: None }),
                // The variable is a convenience, not a contract: start our own rather than fail, but say so.
                Err(why) => eprintln!(
                    "s3-importer-tests: {URL_ENV}={url} is not healthy ({why}); starting a private moto"
                ),
            }
        }
        start_moto()
    }
}

/// `$REPO` (the workspace root): this crate lives at `$REPO/tests`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

fn start_timeout() -> Duration {
    std::env::var(START_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_START_TIMEOUT)
}

fn start_moto() -> Result<Emulator, String> {
    let python = std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    if !python.exists() {
        return Err(format!(
            "{} not found: run `make venv` (infra/local/venv.sh) first, or set {URL_ENV} to a running \
             moto server",
            python.display()
        ));
    }

    // The keeper thread spawns moto and then waits on it for the life of the process. It must outlive
    // every test: PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, and libtest
    // runs each test on its own short-lived thread.
    let (tx, rx) = mpsc::channel::<Result<(u32, u16), String>>();
    let timeout = start_timeout();
    std::thread::Builder::new()
        .name("moto-keeper".into())
        .spawn(move || keep_moto(python, tx))
        .map_err(|e| format!("cannot spawn the moto keeper thread: {e}"))?;

    let (pid, port) = match rx.recv_timeout(timeout) {
        Ok(started) => started?,
        Err(_) => {
            kill_child();
            return Err(format!(
                "moto did not print its port within {}s",
                timeout.as_secs()
            ));
        }
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + timeout;
    loop {
        match probe(&url) {
            Ok(()) => {
                return Ok(Emulator {
                    url,
                    pid: Some(pid),
                })
            }
            Err(why) if Instant::now() >= deadline => {
                kill_child();
                return Err(format!(
                    "moto (pid {pid}) at {url} not ready within {}s: {why}",
                    timeout.as_secs()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Runs on the keeper thread: spawn, report `(pid, port)` once moto logs it, then wait forever.
fn keep_moto(python: PathBuf, tx: mpsc::Sender<Result<(u32, u16), String>>) {
    let mut command = Command::new(&python);
    command
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_parent_death_signal(&mut command);

    let mut child: Child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = tx.send(Err(format!(
                "cannot run {} -m moto.server: {e}; run `make venv` (infra/local/venv.sh) first",
                python.display()
            )));
            return;
        }
    };
    let pid = child.id();
    CHILD_PID.store(pid as i32, Ordering::SeqCst);
    register_atexit_kill();

    // Werkzeug logs "Running on http://127.0.0.1:PORT" (stderr today; watch both streams), then a line
    // per request. Both pipes are drained for the server's lifetime: a full pipe would block moto.
    let tail = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let (port_tx, port_rx) = mpsc::channel::<u16>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let port_tx = port_tx.clone();
        let tail = tail.clone();
        let _ = std::thread::Builder::new()
            .name("moto-log".into())
            .spawn(move || drain_log(stream, port_tx, tail));
    }
    drop(port_tx);

    // Either a port arrives, or both log streams close (moto exited) and recv fails.
    match port_rx.recv() {
        Ok(port) => {
            let _ = tx.send(Ok((pid, port)));
        }
        Err(_) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let log = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
            let _ = tx.send(Err(format!(
                "moto exited during start-up ({status}); its output:\n{log}"
            )));
            return;
        }
    }
    // Keep this thread (the child's "parent" for PR_SET_PDEATHSIG) alive until the process ends.
    let _ = child.wait();
    CHILD_PID.store(0, Ordering::SeqCst);
}

/// Reads moto's log, reporting the port once and remembering the first lines for error messages.
fn drain_log(
    stream: Box<dyn Read + Send>,
    port_tx: mpsc::Sender<u16>,
    tail: std::sync::Arc<Mutex<Vec<String>>>,
) {
    const MARKER: &str = "Running on http://127.0.0.1:";
    let mut port_tx = Some(port_tx);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Some(tx) = &port_tx {
            if let Ok(mut tail) = tail.lock() {
                if tail.len() < 50 {
                    tail.push(line.clone());
                }
            }
            if let Some(rest) = line.split(MARKER).nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    let _ = tx.send(port);
                    port_tx = None;
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then nobody would ever kill us.
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "test process exited during moto start-up",
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {
    // No parent-death signal outside Linux: the atexit hook covers normal exits only.
}

fn register_atexit_kill() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registers a plain extern "C" fn; libtest leaves through exit(), which runs it.
        unsafe {
            libc::atexit(kill_child_at_exit);
        }
    });
}

extern "C" fn kill_child_at_exit() {
    kill_child();
}

fn kill_child() {
    let pid = CHILD_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling a pid we spawned and have not reaped (the keeper is still waiting on it).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// One blocking `GET /moto-api/` with a short timeout: healthy iff it answers 200.
fn probe(url: &str) -> Result<(), String> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// emulator URLs are supported"))?
        .split('/')
        .next()
        .unwrap_or_default();
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /moto-api/ HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send to {authority}: {e}"))?;
    let mut status_line = String::new();
    BufReader::new(stream)
        .read_line(&mut status_line)
        .map_err(|e| format!("no answer from {authority}: {e}"))?;
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code == "200" {
        Ok(())
    } else {
        Err(format!(
            "GET {url}/moto-api/ answered {:?}",
            status_line.trim_end()
        ))
    }
}

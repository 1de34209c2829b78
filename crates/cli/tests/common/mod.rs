//! Helpers shared by the CLI's integration tests.
// Each test binary uses some of them.
#![allow(dead_code)]

use std::process::Stdio;

pub mod deployment;

/// The write end of a pipe whose read end is already closed: every write to it fails with EPIPE.
#[cfg(unix)]
pub fn closed_pipe() -> std::io::Result<Stdio> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe(2) succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Ok(Stdio::from(write))
}

/// The arguments of `connector create` for connector `name`, reading `bucket` of account `account_id` in
/// `region`, with template `template`; a test appends its own options.
pub fn create_connector<'a>(
    name: &'a str,
    account_id: &'a str,
    bucket: &'a str,
    region: &'a str,
    template: &'a str,
) -> Vec<&'a str> {
    vec![
        "connector",
        "create",
        "--name",
        name,
        "--account-id",
        account_id,
        "--bucket",
        bucket,
        "--region",
        region,
        "--template",
        template,
    ]
}

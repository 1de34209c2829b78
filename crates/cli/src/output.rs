//! The command's output on stdout. `println!` panics when stdout is closed early (`s3-importer … | head -1`);
//! [`outln!`] and [`out!`] end the process quietly instead, as a Unix tool killed by SIGPIPE would.
//!
//! SIGPIPE itself stays ignored (Rust's default): the AWS SDK's TLS connections write with `writev`, and a
//! connection the peer reset would then kill the whole process instead of failing one request.

use std::fmt;
use std::io::{ErrorKind, Write};

/// The status a shell reports for a process ended by SIGPIPE (128 + 13).
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `args` (and a newline when `newline`) to stdout. A closed stdout ends the process with
/// [`BROKEN_PIPE_STATUS`] and no message; another write error ends it with status 1, naming it on stderr.
pub fn write(args: fmt::Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let mut result = stdout.write_fmt(args);
    if newline {
        result = result.and_then(|()| stdout.write_all(b"\n"));
    }
    if let Err(e) = result {
        drop(stdout);
        if e.kind() == ErrorKind::BrokenPipe {
            tracing::debug!("stdout closed: stopping");
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

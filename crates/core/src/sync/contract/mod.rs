//! Contract suites, one per port: the checks every adapter of a port must pass, run against the in-memory
//! adapter (`crates/core/tests/contract_*.rs`, no emulator) and against the AWS adapter on the emulator
//! (`tests/tests/contract_*.rs`), so the fast tests and production agree.
//!
//! | port | suite | what an adapter provides | macro |
//! |---|---|---|---|
//! | the state capabilities | [`state`] | the store | [`state_store_contract_tests!`](crate::state_store_contract_tests) |
//! | `ObjectSource` | [`source`] | a [`source::SourceFixture`] | [`object_source_contract_tests!`](crate::object_source_contract_tests) |
//! | `FileQueue` | [`queue`] | a [`queue::QueueFixture`] | [`file_queue_contract_tests!`](crate::file_queue_contract_tests) |
//! | `Destination` | [`destination`] | a [`destination::DestinationFixture`] | [`destination_contract_tests!`](crate::destination_contract_tests) |
//!
//! Compiled with the `contract-tests` feature (test-only). Each check is a public async fn taking the
//! fixture and returning `Err` with what differed. Each suite lists its checks once, in its macro; that list
//! generates both the suite's runner table (`CHECKS`, `run_check`, `run_checks`) and, in an adapter's test
//! file, one `#[tokio::test]` per check. A new adapter is one macro call away from the whole suite:
//!
//! ```ignore
//! s3_importer_core::object_source_contract_tests!(async {
//!     Ok::<_, String>(std::sync::Arc::new(MySourceFixture::new().await?))
//! });
//! ```
//!
//! Checks use fresh, unique names (ids, buckets, queues), so they can run in parallel and many times against
//! one backend; they never assume it is empty.

pub mod destination;
pub mod fixtures;
pub mod queue;
pub mod source;
pub mod state;

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;

/// What a check returns: `Err` says what differed.
pub type CheckResult = Result<(), String>;

/// A name no other check, test process or earlier run uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{prefix}-{:x}-{nanos:x}-{n}", std::process::id())
}

/// Joins the failures of several checks into one report; `Ok` when there were none.
pub fn report(failures: Vec<String>) -> CheckResult {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Adds what was being done to an adapter's error.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: unexpected error: {e}"))
    }
}

pub(crate) fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: T,
    want: T,
) -> CheckResult {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}:\n  expected {want:?}\n  got      {got:?}"))
    }
}

pub(crate) fn expect(what: &str, ok: bool) -> CheckResult {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

/// Generates a suite's runner table or an adapter's tests from the suite's one list of checks (used by the
/// suites' own macros; not called directly).
///
/// The list is made of groups: `CONST on|off [attributes] { check, ... }`.
/// - `runner Fixture; groups`: in the suite's module, `CHECKS` (every check, in order), one `CONST` per
///   group with its checks, `run_check(name, fixture)` and `run_checks(fixture, names)`.
/// - `tests [path::to::suite] fixture_future; groups`: one `#[tokio::test]` per check of each group that
///   is `on`, with the group's attributes (`#[ignore = "why"]`); `off` groups generate nothing.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_suite {
    (runner $fixture:ty; $( $group:ident $switch:ident [$($attr:tt)*] { $($check:ident),* $(,)? } )*) => {
        /// Every check of this suite, by name, in the order [`run_checks`] runs them when given this list.
        pub const CHECKS: &[&str] = &[$($(stringify!($check),)*)*];
        $(
            #[doc = concat!("The checks of the group `", stringify!($group), "` (a subset of [`CHECKS`]).")]
            pub const $group: &[&str] = &[$(stringify!($check),)*];
        )*

        /// Runs one check by name.
        pub async fn run_check(name: &str, fixture: $fixture) -> $crate::sync::contract::CheckResult {
            match name {
                $($( stringify!($check) => $check(fixture).await, )*)*
                other => Err(format!("no check named {other:?}")),
            }
        }

        /// Runs the named checks one after the other on one fixture (even after a failure) and reports all
        /// failures.
        pub async fn run_checks(fixture: $fixture, names: &[&str]) -> $crate::sync::contract::CheckResult {
            let mut failures = Vec::new();
            for name in names {
                if let Err(why) = run_check(name, fixture.clone()).await {
                    failures.push(format!("{name}: {why}"));
                }
            }
            $crate::sync::contract::report(failures)
        }
    };
    (tests $suite:tt $fixture:expr;) => {};
    (tests $suite:tt $fixture:expr; $group:ident $switch:ident $attrs:tt { $($check:ident),* $(,)? } $($rest:tt)*) => {
        $crate::__contract_suite!(@group $switch $suite $fixture; $attrs; $($check),*);
        $crate::__contract_suite!(tests $suite $fixture; $($rest)*);
    };
    (@group on $suite:tt $fixture:expr; $attrs:tt; $($check:ident),*) => {
        $( $crate::__contract_suite!(@test $suite $fixture; $attrs; $check); )*
    };
    (@group off $($rest:tt)*) => {};
    (@test [$($suite:tt)*] $fixture:expr; [$($attr:tt)*]; $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $check() -> Result<(), String> {
            let fixture = $fixture.await?;
            $($suite)*::$check(fixture).await
        }
    };
}

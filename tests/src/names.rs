//! Resource names unique per test, so tests run in parallel and against a shared emulator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// S3's bucket-name limit is the tightest of bucket (63), SQS queue (80) and DynamoDB table (255).
const MAX_LEN: usize = 63;
/// Leaves room for a `-dlq` suffix (see `create_queue_with_dlq`).
const MAX_PREFIX_LEN: usize = 30;

/// `prefix-<pid>-<counter>-<time>`: lowercase `[a-z0-9-]`, starts and ends with an alphanumeric, at most
/// 59 characters, so it is a valid S3 bucket, SQS queue and DynamoDB table name (and leaves room for a
/// `-dlq` suffix). Unique within a process (counter) and across processes and reruns against a shared
/// emulator (pid and clock).
///
/// The prefix is lowercased, other characters become `-`, and it is cut to 30 characters.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();

    let mut clean: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(MAX_PREFIX_LEN)
        .collect();
    let trimmed = clean.trim_matches('-').len();
    if trimmed == 0 {
        clean = "t".to_owned();
    } else {
        clean = clean.trim_matches('-').to_owned();
    }

    let name = format!(
        "{clean}-{}-{n}-{}",
        base36(u128::from(std::process::id())),
        // 8 base-36 digits of the clock: ~2.8e12 ns ≈ 47 min before repeating, plus pid and counter.
        base36(nanos % 36u128.pow(8)),
    );
    debug_assert!(name.len() <= MAX_LEN - 4, "{name}");
    name
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".to_owned();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("base36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_bucket_name(name: &str) -> bool {
        (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
    }

    #[test]
    fn unique_names_are_valid_bucket_queue_and_table_names() {
        for prefix in [
            "ledger",
            "Mixed_Case.Prefix",
            "",
            "---",
            "a-very-long-prefix-that-goes-on-and-on-and-on-and-on-and-on",
            "ünïcode",
        ] {
            let name = unique_name(prefix);
            assert!(valid_bucket_name(&name), "prefix {prefix:?} gave {name:?}");
            assert!(
                valid_bucket_name(&format!("{name}-dlq")),
                "prefix {prefix:?} gave {name:?}"
            );
        }
    }

    #[test]
    fn unique_names_differ_between_calls() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(a.starts_with("x-"), "{a}");
    }
}

//! The pure decisions of discovery: which listed objects are candidates, which are skipped and why, and how
//! the watermark moves. Table-driven tests below; the lister applies them.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::model::{ObjectMeta, SkipReason};
use crate::format::{detect_format, FileFormat, Format};

/// Discovery settings (their defaults are in the README's configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSettings {
    /// First sync: import what was modified within this long before now (default 90 days).
    pub lookback: Duration,
    /// Later syncs: reconsider objects this much older than the watermark (default 15 minutes). Covers
    /// multipart uploads, whose LastModified is the upload's *start*, and second-resolution ties.
    pub overlap: Duration,
    /// Larger objects are skipped (default 1 GiB).
    pub max_file_size: u64,
    /// A `claimed` entry older than this was left by a lister that died between claim and send; the next
    /// pass sends it (default 5 minutes).
    pub resend_claimed_after: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            lookback: Duration::days(90),
            overlap: Duration::minutes(15),
            max_file_size: 1 << 30,
            resend_claimed_after: Duration::minutes(5),
        }
    }
}

/// Why a listed object is not even considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// A `folder/` marker object.
    FolderMarker,
    /// Modified before the window starts.
    OutsideWindow,
}

/// What discovery does with one listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not considered at all; nothing recorded.
    Ignore(Ignored),
    /// Recorded in the ledger as skipped, with the reason (visible in status).
    Skip(SkipReason),
    /// Claimed and sent to the workers.
    Import(FileFormat),
}

/// The oldest LastModified considered: `watermark - overlap` once a sync has sent something, else
/// `now - lookback`.
pub fn window_start(
    watermark: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    settings: &SyncSettings,
) -> DateTime<Utc> {
    match watermark {
        Some(w) => w - settings.overlap,
        None => now - settings.lookback,
    }
}

/// Storage classes whose objects cannot be read until restored. (GLACIER_IR is instant retrieval and reads
/// like STANDARD.)
pub fn is_archive_class(storage_class: &str) -> bool {
    matches!(storage_class, "GLACIER" | "DEEP_ARCHIVE")
}

/// Decides what to do with one listed object.
pub fn decide(
    object: &ObjectMeta,
    window_start: DateTime<Utc>,
    settings: &SyncSettings,
    template_format: Option<Format>,
) -> Decision {
    if object.key.ends_with('/') {
        return Decision::Ignore(Ignored::FolderMarker);
    }
    if object.last_modified < window_start {
        return Decision::Ignore(Ignored::OutsideWindow);
    }
    if let Some(class) = object.storage_class.as_deref() {
        if is_archive_class(class) && !object.restored {
            return Decision::Skip(SkipReason::Archived {
                storage_class: class.to_owned(),
            });
        }
    }
    if object.size > settings.max_file_size {
        return Decision::Skip(SkipReason::TooLarge {
            size: object.size,
            limit: settings.max_file_size,
        });
    }
    match detect_format(&object.key, template_format, None) {
        Some(format) => Decision::Import(format),
        None => Decision::Skip(SkipReason::UnsupportedFormat),
    }
}

/// The watermark after a run: the newest LastModified among the objects the run considered, never moving
/// back. A run that could not claim or send everything it should have keeps the old watermark, so the next
/// run looks at the same window again (the ledger prevents double imports).
pub fn next_watermark(
    old: Option<DateTime<Utc>>,
    newest_considered: Option<DateTime<Utc>>,
    run_complete: bool,
) -> Option<DateTime<Utc>> {
    if !run_complete {
        return old;
    }
    match (old, newest_considered) {
        (Some(o), Some(n)) => Some(o.max(n)),
        (o, n) => o.or(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Compression;

    fn at(minutes_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::minutes(minutes_ago)
    }

    fn object(
        key: &str,
        size: u64,
        last_modified: DateTime<Utc>,
        class: Option<&str>,
        restored: bool,
    ) -> ObjectMeta {
        ObjectMeta {
            key: key.to_owned(),
            etag: "\"e\"".to_owned(),
            size,
            last_modified,
            storage_class: class.map(str::to_owned),
            restored,
            version_id: None,
        }
    }

    #[test]
    fn window_starts_at_lookback_then_at_watermark_minus_overlap() {
        let now = Utc::now();
        let s = SyncSettings::default();
        assert_eq!(window_start(None, now, &s), now - Duration::days(90));
        let w = now - Duration::hours(1);
        assert_eq!(window_start(Some(w), now, &s), w - Duration::minutes(15));
    }

    #[test]
    fn decision_table() {
        let now = Utc::now();
        let s = SyncSettings {
            max_file_size: 1000,
            ..SyncSettings::default()
        };
        let start = at(60, now);
        let csv = Decision::Import(FileFormat {
            format: Format::Csv,
            compression: Compression::None,
        });
        let cases: Vec<(ObjectMeta, Option<Format>, Decision)> = vec![
            (
                object("a.csv", 10, at(10, now), None, false),
                None,
                csv.clone(),
            ),
            (object("a.csv", 10, start, None, false), None, csv.clone()),
            (
                object("a.csv", 10, at(61, now), None, false),
                None,
                Decision::Ignore(Ignored::OutsideWindow),
            ),
            (
                object("dir/", 0, at(1, now), None, false),
                None,
                Decision::Ignore(Ignored::FolderMarker),
            ),
            (
                object("a.csv", 1001, at(1, now), None, false),
                None,
                Decision::Skip(SkipReason::TooLarge {
                    size: 1001,
                    limit: 1000,
                }),
            ),
            (
                object("a.csv", 1000, at(1, now), None, false),
                None,
                csv.clone(),
            ),
            (
                object("a.txt", 10, at(1, now), None, false),
                None,
                Decision::Skip(SkipReason::UnsupportedFormat),
            ),
            (
                object("a.txt", 10, at(1, now), None, false),
                Some(Format::Csv),
                csv.clone(),
            ),
            (
                object("a.csv", 10, at(1, now), Some("GLACIER"), false),
                None,
                Decision::Skip(SkipReason::Archived {
                    storage_class: "GLACIER".into(),
                }),
            ),
            (
                object("a.csv", 10, at(1, now), Some("DEEP_ARCHIVE"), false),
                None,
                Decision::Skip(SkipReason::Archived {
                    storage_class: "DEEP_ARCHIVE".into(),
                }),
            ),
            (
                object("a.csv", 10, at(1, now), Some("GLACIER"), true),
                None,
                csv.clone(),
            ),
            (
                object("a.csv", 10, at(1, now), Some("GLACIER_IR"), false),
                None,
                csv.clone(),
            ),
            (
                object("a.csv", 10, at(1, now), Some("STANDARD_IA"), false),
                None,
                csv.clone(),
            ),
        ];
        for (obj, template_format, want) in cases {
            let got = decide(&obj, start, &s, template_format);
            assert_eq!(
                got, want,
                "object={obj:?} template_format={template_format:?}"
            );
        }
    }

    #[test]
    fn watermark_is_monotonic_and_held_on_incomplete_runs() {
        let now = Utc::now();
        let old = Some(at(30, now));
        let newer = Some(at(10, now));
        let older = Some(at(50, now));
        assert_eq!(next_watermark(None, None, true), None);
        assert_eq!(next_watermark(None, newer, true), newer);
        assert_eq!(next_watermark(old, newer, true), newer);
        assert_eq!(next_watermark(old, older, true), old, "never moves back");
        assert_eq!(next_watermark(old, None, true), old);
        assert_eq!(
            next_watermark(old, newer, false),
            old,
            "incomplete run keeps the old watermark"
        );
    }
}

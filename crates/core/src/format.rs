//! File formats and how one is chosen for a file.

use serde::{Deserialize, Serialize};

/// A record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values (RFC 4180) with a header row.
    Csv,
    /// Tab-separated values with a header row (same quoting rules as CSV).
    Tsv,
    /// One JSON document: a top-level array of objects, streamed element by element.
    Json,
    /// JSON Lines / NDJSON: one object per line, blank lines skipped.
    Jsonl,
}

impl Format {
    /// The name used in templates, messages and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" => Ok(Self::Tsv),
            "json" => Ok(Self::Json),
            "jsonl" | "ndjson" | "jsonlines" => Ok(Self::Jsonl),
            other => Err(format!(
                "unknown format {other:?}: expected csv, tsv, json or jsonl"
            )),
        }
    }
}

/// How the bytes of a file are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain bytes.
    #[default]
    None,
    /// gzip (RFC 1952), possibly several members concatenated.
    Gzip,
}

/// The format and compression of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileFormat {
    /// Record format.
    pub format: Format,
    /// Compression.
    pub compression: Compression,
}

/// Chooses the format of a file.
///
/// * The template's format wins when it declares one (a connector whose files are named `*.txt`
///   still imports them as CSV); otherwise the extension decides: `.csv .tsv .json .jsonl .ndjson`,
///   case-insensitive.
/// * Compression comes from a trailing `.gz` (or `.gzip`), or from `Content-Encoding: gzip`.
///
/// Returns `None` when no format can be told: the lister records such a file as skipped ("unsupported").
pub fn detect_format(
    key: &str,
    template_format: Option<Format>,
    content_encoding: Option<&str>,
) -> Option<FileFormat> {
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let (stem, gz_ext) = match name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".gzip"))
    {
        Some(stem) => (stem, true),
        None => (name.as_str(), false),
    };
    let gz_encoding = content_encoding
        .map(|e| {
            e.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("gzip"))
        })
        .unwrap_or(false);
    let compression = if gz_ext || gz_encoding {
        Compression::Gzip
    } else {
        Compression::None
    };
    let by_extension = match stem.rsplit_once('.') {
        Some((_, "csv")) => Some(Format::Csv),
        Some((_, "tsv")) => Some(Format::Tsv),
        Some((_, "json")) => Some(Format::Json),
        Some((_, "jsonl" | "ndjson")) => Some(Format::Jsonl),
        _ => None,
    };
    let format = template_format.or(by_extension)?;
    Some(FileFormat {
        format,
        compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection_table() {
        use Compression::{Gzip, None as Plain};
        use Format::*;
        type Case<'a> = (
            &'a str,
            Option<Format>,
            Option<&'a str>,
            Option<(Format, Compression)>,
        );
        let cases: &[Case] = &[
            ("a.csv", None, None, Some((Csv, Plain))),
            ("dir/A.CSV", None, None, Some((Csv, Plain))),
            ("a.tsv", None, None, Some((Tsv, Plain))),
            ("a.json", None, None, Some((Json, Plain))),
            ("a.jsonl", None, None, Some((Jsonl, Plain))),
            ("a.ndjson", None, None, Some((Jsonl, Plain))),
            ("a.csv.gz", None, None, Some((Csv, Gzip))),
            ("a.jsonl.GZ", None, None, Some((Jsonl, Gzip))),
            ("a.json.gzip", None, None, Some((Json, Gzip))),
            ("a.csv", None, Some("gzip"), Some((Csv, Gzip))),
            ("a.csv", None, Some("identity"), Some((Csv, Plain))),
            ("a.txt", None, None, None),
            ("a.gz", None, None, None),
            ("noext", None, None, None),
            ("csv", None, None, None),
            ("dir.csv/file", None, None, None),
            ("a.txt", Some(Csv), None, Some((Csv, Plain))),
            ("a.json", Some(Jsonl), None, Some((Jsonl, Plain))),
            ("a.txt.gz", Some(Tsv), None, Some((Tsv, Gzip))),
            ("key with spaces.csv", None, None, Some((Csv, Plain))),
            ("ünï/çødé.jsonl", None, None, Some((Jsonl, Plain))),
        ];
        for (key, template, encoding, want) in cases {
            let got = detect_format(key, *template, *encoding);
            let want = want.map(|(format, compression)| FileFormat {
                format,
                compression,
            });
            assert_eq!(
                got, want,
                "key={key:?} template={template:?} encoding={encoding:?}"
            );
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in [Format::Csv, Format::Tsv, Format::Json, Format::Jsonl] {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert_eq!("NDJSON".parse::<Format>(), Ok(Format::Jsonl));
        assert!("xml".parse::<Format>().is_err());
    }
}

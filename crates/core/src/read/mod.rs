//! Streaming record readers.
//!
//! Every reader works on a [`std::io::BufRead`] of *decoded* bytes (see [`decode`]) and never holds more than
//! one record (bounded by [`Limits::max_record_bytes`]) in memory. Async sources (S3 bodies) are bridged with
//! `tokio_util::io::SyncIoBridge` on a blocking thread by the [`crate::pipeline`].
//!
//! # Row errors and file errors
//! A *row error* ([`RecordBody::Invalid`]) means the reader found the end of the bad record and the file
//! continues: an oversize record (skipped without being buffered), too many columns, a JSON Lines line that is
//! not valid JSON, a JSON element nested too deep. A *file error* ([`ReadError`]) means the reader cannot find
//! where the next record starts, or the bytes cannot be trusted: I/O and gzip errors, the decompressed-bytes cap,
//! an invalid header, a JSON document that is not an array or is truncated.

pub mod decode;
pub mod delimited;
pub mod json_array;
pub mod jsonl;

use std::io::BufRead;

use crate::bytes::TextFlags;
use crate::{Format, Limits, Position, RowError};

/// The fields of one delimited record, borrowed from the reader's buffer (no allocation per record).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    data: &'a [u8],
    ends: &'a [usize],
    /// Bytes between one field's end and the next field's start: 0 (back to back) or 1 (a delimiter).
    gap: usize,
    /// What the fields' text holds, when the reader found it on its way (see
    /// [`Fields::with_text_flags`]).
    flags: Option<TextFlags>,
}

impl<'a> Fields<'a> {
    /// Fields stored back to back in `data`; field `i` ends at `ends[i]` (exclusive) and starts where
    /// field `i - 1` ends. `data` may go on past the last field (see [`Fields::get_with_tail`]).
    pub fn new(data: &'a [u8], ends: &'a [usize]) -> Self {
        Self {
            data,
            ends,
            gap: 0,
            flags: None,
        }
    }

    /// Fields as they stand in a record's own bytes, one delimiter between each and the next: field `i` ends
    /// at `ends[i]` (exclusive) and starts one byte after field `i - 1` ends. A record without quotes is its
    /// fields' text as is, so the reader hands out its input instead of copying each field out of it.
    pub fn separated(data: &'a [u8], ends: &'a [usize]) -> Self {
        Self {
            gap: 1,
            ..Self::new(data, ends)
        }
    }

    /// The same fields, with what their text holds (bytes a JSON string must escape, bytes above ASCII) as
    /// the reader found it while splitting the record, so the validator need not scan the text again. The
    /// flags describe the fields only, never the delimiters between [`Fields::separated`] fields.
    pub(crate) fn with_text_flags(self, flags: Option<TextFlags>) -> Self {
        Self { flags, ..self }
    }

    /// What the text holds, when the reader told (see [`Fields::with_text_flags`]).
    pub(crate) fn text_flags(&self) -> Option<TextFlags> {
        self.flags
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the record has no field at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The bytes from the first field's start to the last field's end: every field's unescaped bytes, with
    /// the delimiter between each two when the fields are [`Fields::separated`].
    pub fn text(&self) -> &'a [u8] {
        let end = self.ends.last().copied().unwrap_or(0);
        self.data.get(..end).unwrap_or_default()
    }

    /// Where field `i` starts, given that it exists.
    #[inline(always)]
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] + self.gap
        }
    }

    /// The unescaped bytes of field `i`.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        self.data.get(self.start(i)..end)
    }

    /// The unescaped bytes of field `i`, and every byte of the buffer from its start on (the field, the
    /// fields after it, and whatever spare room the reader's buffer has past them): a copy of a short field
    /// can then move a fixed-size block instead of choosing its moves by the field's length.
    #[inline(always)]
    pub fn get_with_tail(&self, i: usize) -> Option<(&'a [u8], &'a [u8])> {
        let end = *self.ends.get(i)?;
        let start = self.start(i);
        let tail = self.data.get(start..)?;
        Some((tail.get(..end.checked_sub(start)?)?, tail))
    }

    /// Whether every field of valid UTF-8 [`Fields::text`] starts and ends on a character boundary, which
    /// makes each field valid UTF-8 on its own.
    pub(crate) fn on_char_boundaries(&self) -> bool {
        let text = self.text();
        let boundary = |i: usize| text.get(i).is_none_or(|&b| !(0x80..0xC0).contains(&b));
        // The byte at a field's end starts whatever follows it (the next field, or its delimiter); a
        // separated field starts one byte further.
        self.ends
            .iter()
            .all(|&end| boundary(end) && (self.gap == 0 || boundary(end + self.gap)))
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (data, ends, gap) = (self.data, self.ends, self.gap);
        ends.iter().enumerate().map(move |(i, &end)| {
            let start = if i == 0 { 0 } else { ends[i - 1] + gap };
            data.get(start..end).unwrap_or_default()
        })
    }
}

/// What a reader found at one position.
#[derive(Debug)]
pub enum RecordBody<'a> {
    /// A CSV/TSV record.
    Fields(Fields<'a>),
    /// The text of one JSON value (a JSON array element or a JSON Lines line), syntax not yet checked
    /// beyond bracket balance.
    Json(&'a [u8]),
    /// A record the reader had to reject; the file goes on after it.
    Invalid(RowError),
}

/// One record and where it starts.
#[derive(Debug)]
pub struct Record<'a> {
    /// Position of the record's first byte.
    pub position: Position,
    /// The record.
    pub body: RecordBody<'a>,
}

/// Where a reader starts: the top of the file, or a checkpoint left by an earlier piece of work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartAt {
    /// Position of the next record to read. `byte` is where the input given to the reader starts in the
    /// decoded file (the input is already positioned there); `record` and `line` continue numbering.
    /// `Position::default()` means the top of the file.
    pub position: Position,
    /// The CSV/TSV header read by the earlier piece (delimited formats resumed mid-file do not see it again).
    pub header: Option<Vec<String>>,
}

impl StartAt {
    /// True when reading starts at the top of the file.
    pub fn is_start(&self) -> bool {
        self.position.byte == 0 && self.position.record == 0
    }
}

/// Options for delimited formats (from the template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelimitedOptions {
    /// Field delimiter: `,` for CSV, tab for TSV unless the template says otherwise.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
    /// Whether the first record is a header row.
    pub has_header: bool,
}

impl DelimitedOptions {
    /// Defaults for a format: comma for CSV, tab for TSV, `"` quotes, a header row.
    pub fn for_format(format: Format) -> Self {
        Self {
            delimiter: if format == Format::Tsv { b'\t' } else { b',' },
            quote: b'"',
            has_header: true,
        }
    }
}

/// A failure that stops reading the file. Each names where it happened.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the underlying bytes failed.
    #[error("read failed at byte {byte}: {source}")]
    Io {
        /// Decoded-stream offset reached.
        byte: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream is corrupt or truncated.
    #[error("invalid gzip data after {decoded_bytes} decoded bytes: {source}")]
    Gzip {
        /// Decoded bytes produced before the error.
        decoded_bytes: u64,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The file expands past `max_decompressed_bytes` (a gzip bomb, or a limit set too low).
    #[error("file expands past the limit of {limit} decompressed bytes")]
    DecompressedTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The CSV/TSV header row cannot be used.
    #[error("invalid header at line {line}: {message}")]
    Header {
        /// Line of the header.
        line: u64,
        /// Why.
        message: String,
    },
    /// The JSON document's structure is broken where records cannot be told apart (not an array,
    /// garbage between elements, truncated).
    #[error("invalid JSON document at line {line}, byte {byte}: {message}")]
    JsonStructure {
        /// Line.
        line: u64,
        /// Decoded-stream byte offset.
        byte: u64,
        /// Why.
        message: String,
    },
}

/// A streaming reader of records.
pub trait RecordReader: Send {
    /// The header row of a delimited file (read when the reader was opened, or given by [`StartAt`]).
    fn header(&self) -> Option<Fields<'_>>;

    /// The next record, `Ok(None)` at the end of the file.
    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError>;

    /// Position of the next record: the decoded-stream byte offset just past the last record returned,
    /// and the record/line numbers it will have. This is what a checkpoint stores.
    fn next_position(&self) -> Position;
}

/// A reader of any format, as a concrete type: a loop over records written generically (see
/// [`OpenReader::run`]) is compiled once per format, so the per-record calls inline instead of going through a
/// `dyn RecordReader`.
pub enum OpenReader {
    /// CSV or TSV.
    Delimited(Box<delimited::DelimitedReader>),
    /// A JSON array of objects.
    JsonArray(Box<json_array::JsonArrayReader>),
    /// JSON Lines.
    Jsonl(Box<jsonl::JsonLinesReader>),
}

/// A loop over the records of a reader, run by [`OpenReader::run`] with the reader's concrete type.
pub trait ReaderTask {
    /// What the loop returns.
    type Output;
    /// Runs the loop.
    fn run<R: RecordReader>(self, reader: &mut R) -> Self::Output;
}

impl OpenReader {
    /// Opens the reader for `format` over decoded bytes.
    ///
    /// Delimited readers read the header row here (unless `start` provides it), so a bad header is reported
    /// before any row.
    pub fn open(
        input: Box<dyn BufRead + Send>,
        format: Format,
        options: DelimitedOptions,
        limits: &Limits,
        start: &StartAt,
    ) -> Result<Self, ReadError> {
        Ok(match format {
            Format::Csv | Format::Tsv => Self::Delimited(Box::new(
                delimited::DelimitedReader::new(input, options, limits, start)?,
            )),
            Format::Json => Self::JsonArray(Box::new(json_array::JsonArrayReader::new(
                input, limits, start,
            )?)),
            Format::Jsonl => {
                Self::Jsonl(Box::new(jsonl::JsonLinesReader::new(input, limits, start)?))
            }
        })
    }

    /// The header row of a delimited file (see [`RecordReader::header`]).
    pub fn header(&self) -> Option<Fields<'_>> {
        match self {
            Self::Delimited(r) => r.header(),
            Self::JsonArray(r) => r.header(),
            Self::Jsonl(r) => r.header(),
        }
    }

    /// Runs `task` over this reader, compiled for its concrete type.
    pub fn run<T: ReaderTask>(&mut self, task: T) -> T::Output {
        match self {
            Self::Delimited(r) => task.run(r.as_mut()),
            Self::JsonArray(r) => task.run(r.as_mut()),
            Self::Jsonl(r) => task.run(r.as_mut()),
        }
    }

    /// The reader behind a `dyn RecordReader`.
    pub fn into_dyn(self) -> Box<dyn RecordReader> {
        match self {
            Self::Delimited(r) => r,
            Self::JsonArray(r) => r,
            Self::Jsonl(r) => r,
        }
    }
}

/// Opens the reader for `format` over decoded bytes, behind a `dyn RecordReader` (see [`OpenReader::open`]).
pub fn open_reader(
    input: Box<dyn BufRead + Send>,
    format: Format,
    options: DelimitedOptions,
    limits: &Limits,
    start: &StartAt,
) -> Result<Box<dyn RecordReader>, ReadError> {
    OpenReader::open(input, format, options, limits, start).map(OpenReader::into_dyn)
}

#[cfg(test)]
mod tests {
    use super::Fields;

    #[test]
    fn separated_fields_skip_the_delimiter_between_them_and_keep_empty_ones() {
        // `a,,bc,` and then bytes that are not the record's.
        let data = b"a,,bc,####";
        let ends = [1, 2, 5, 6];
        let fields = Fields::separated(data, &ends);
        let got: Vec<&[u8]> = fields.iter().collect();
        assert_eq!(got, [&b"a"[..], b"", b"bc", b""]);
        for (i, want) in got.iter().enumerate() {
            assert_eq!(fields.get(i), Some(*want));
            let (cell, tail) = fields.get_with_tail(i).expect("field");
            assert_eq!(cell, *want);
            assert!(tail.starts_with(cell) && tail.ends_with(b"####"));
        }
        assert_eq!(fields.get(4), None);
        assert_eq!(fields.text(), b"a,,bc,");
        // Back to back, the same ends make other fields.
        let back_to_back: Vec<&[u8]> = Fields::new(data, &ends).iter().collect();
        assert_eq!(back_to_back, [&b"a"[..], b",", b",bc", b","]);
    }
}

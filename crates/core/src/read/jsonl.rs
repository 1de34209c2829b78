//! JSON Lines / NDJSON: one JSON value per line.
//!
//! * Lines end with `\n` or `\r\n`; the last line may lack one. A UTF-8 BOM at the top of the file is skipped
//!   (byte offsets still count it).
//! * Blank and whitespace-only lines are skipped but counted in line numbers.
//! * Each other line is yielded as [`RecordBody::Json`] (without its line terminator), valid JSON or not: the
//!   validator reports invalid JSON as a row error.
//! * A line longer than `max_record_bytes` is skipped without being buffered and yields
//!   [`RecordBody::Invalid`] (`record_too_large`); a line whose brackets nest deeper than `max_json_depth`
//!   (found with a quick scan that skips strings) yields `json_too_deep`.
//!
//! Lines found whole in the input buffer are yielded from it without copying.

use std::io::BufRead;

use super::decode::{is_json_space, Input};
use super::json_array::push_bounded;
use super::{Fields, ReadError, Record, RecordBody, RecordReader, StartAt};
use crate::{ErrorCode, Limits, Position, RowError};

/// Where the bytes of the line just read are.
enum Line {
    /// `input.buffer(start, end)`.
    InInput { start: usize, end: usize },
    /// `carry`.
    InCarry,
    /// Too long: skipped (`blank`: nothing but whitespace, so not a record at all).
    TooLong { blank: bool },
    /// No more lines.
    Eof,
}

/// Streaming JSON Lines reader. See the [module documentation](self).
pub struct JsonLinesReader {
    input: Input,
    /// Bytes of a line that spans input chunks.
    carry: Vec<u8>,
    /// Number of the next line.
    line: u64,
    /// Number of the next record.
    record: u64,
    max_record_bytes: usize,
    max_json_depth: usize,
    done: bool,
}

impl JsonLinesReader {
    /// Creates a reader over decoded bytes. When `start.position.byte > 0`, `input` must be positioned at that
    /// byte (a checkpoint from [`RecordReader::next_position`]: the start of a line).
    pub fn new(
        input: Box<dyn BufRead + Send>,
        limits: &Limits,
        start: &StartAt,
    ) -> Result<Self, ReadError> {
        let mut reader = Self {
            input: Input::new(input, start.position.byte),
            carry: Vec::new(),
            line: start.position.line.max(1),
            record: start.position.record.max(1),
            max_record_bytes: limits.max_record_bytes,
            max_json_depth: limits.max_json_depth,
            done: false,
        };
        if start.position.byte == 0 {
            reader.input.strip_bom()?;
        }
        Ok(reader)
    }

    /// Reads one line (consuming its terminator).
    #[inline]
    fn read_line(&mut self) -> Result<Line, ReadError> {
        self.carry.clear();
        let max = self.max_record_bytes;
        let mut too_long = false;
        let mut len = 0usize;
        // Every byte of the line so far is whitespace (a blank line is skipped however long it is).
        let mut blank = true;
        let spaces = |bytes: &[u8]| bytes.iter().all(|&b| is_json_space(b));
        loop {
            if !self.input.fill()? {
                return Ok(match (len, too_long) {
                    (0, _) => Line::Eof,
                    (_, true) => Line::TooLong { blank },
                    _ => {
                        strip_cr(&mut self.carry);
                        if self.carry.len() > max {
                            Line::TooLong { blank }
                        } else {
                            Line::InCarry
                        }
                    }
                });
            }
            let avail = self.input.available();
            match memchr::memchr(b'\n', avail) {
                Some(i) => {
                    if too_long {
                        let blank = blank && spaces(&avail[..i]);
                        self.input.consume(i + 1);
                        return Ok(Line::TooLong { blank });
                    }
                    if len == 0 {
                        let start = self.input.buffer_pos();
                        let content = trim_cr(&avail[..i]).len();
                        if content > max {
                            let blank = spaces(&avail[..content]);
                            self.input.consume(i + 1);
                            return Ok(Line::TooLong { blank });
                        }
                        self.input.consume(i + 1);
                        return Ok(Line::InInput {
                            start,
                            end: start + content,
                        });
                    }
                    let blank = blank && spaces(&avail[..i]);
                    if len + i > max.saturating_add(1) {
                        // Too long even without a `\r`: do not copy it.
                        self.input.consume(i + 1);
                        return Ok(Line::TooLong { blank });
                    }
                    push_bounded(&mut self.carry, &avail[..i], max.saturating_add(1));
                    self.input.consume(i + 1);
                    strip_cr(&mut self.carry);
                    if self.carry.len() > max {
                        return Ok(Line::TooLong { blank });
                    }
                    return Ok(Line::InCarry);
                }
                None => {
                    let n = avail.len();
                    // Stops at the first byte that is not whitespace: the first byte of most lines.
                    blank = blank && spaces(avail);
                    // +1: a `\r` of `\r\n` may be the last byte buffered.
                    if !too_long && len + n > max.saturating_add(1) {
                        too_long = true;
                        self.carry = Vec::new();
                    }
                    if !too_long {
                        push_bounded(&mut self.carry, avail, max.saturating_add(1));
                    }
                    len += n;
                    self.input.consume(n);
                }
            }
        }
    }

    /// Capacity of the buffers this reader holds (for tests that check memory stays bounded).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.carry.capacity() + self.input.capacity()
    }
}

#[inline]
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[inline]
fn strip_cr(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}

/// True when `line` nests arrays/objects deeper than `max` (brackets inside strings do not count).
pub(crate) fn exceeds_depth(line: &[u8], max: usize) -> bool {
    // Nesting never exceeds the number of opening brackets (counting those inside strings too): one SIMD count
    // settles the usual flat record without walking it byte by byte.
    if memchr::memchr2_iter(b'{', b'[', line)
        .take(max.saturating_add(1))
        .count()
        <= max
    {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                // Jump to the closing quote, skipping escaped characters.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &line[i.min(line.len())..]) {
                        Some(j) if line[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                        None => return false,
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

impl RecordReader for JsonLinesReader {
    fn header(&self) -> Option<Fields<'_>> {
        None
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let (position, line) = loop {
            let position = Position {
                record: self.record,
                line: self.line,
                byte: self.input.offset(),
            };
            let line = match self.read_line() {
                Ok(line) => line,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let bytes = match line {
                Line::Eof => {
                    self.done = true;
                    return Ok(None);
                }
                Line::TooLong { blank } => {
                    self.line += 1;
                    if blank {
                        continue;
                    }
                    break (position, line);
                }
                Line::InInput { start, end } => self.input.buffer(start, end),
                Line::InCarry => &self.carry,
            };
            self.line += 1;
            if !bytes.iter().all(|&b| is_json_space(b)) {
                break (position, line);
            }
        };
        self.record += 1;
        let bytes = match line {
            Line::InInput { start, end } => self.input.buffer(start, end),
            Line::InCarry => &self.carry,
            Line::TooLong { .. } | Line::Eof => {
                let message = format!(
                    "line is longer than {} bytes; skipped",
                    self.max_record_bytes
                );
                let error = RowError::record(ErrorCode::RecordTooLarge, message);
                return Ok(Some(Record {
                    position,
                    body: RecordBody::Invalid(error),
                }));
            }
        };
        let body = if exceeds_depth(bytes, self.max_json_depth) {
            let message = format!("value nested deeper than {} levels", self.max_json_depth);
            RecordBody::Invalid(RowError::record(ErrorCode::JsonTooDeep, message))
        } else {
            RecordBody::Json(bytes)
        };
        Ok(Some(Record { position, body }))
    }

    fn next_position(&self) -> Position {
        Position {
            record: self.record,
            line: self.line,
            byte: self.input.offset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::decode::test_support::synthetic;
    use crate::read::decode::DECODED_BUFFER_BYTES;

    #[test]
    fn huge_line_is_skipped_without_buffering() -> Result<(), ReadError> {
        let input = synthetic(b"{\"a\":1}\n", b' ', 300_000_000, b"x\r\n{\"b\":2}\n");
        let mut r = JsonLinesReader::new(input, &Limits::default(), &StartAt::default())?;
        let mut got = Vec::new();
        while let Some(record) = r.next_record()? {
            got.push(match record.body {
                RecordBody::Json(bytes) => Ok(bytes.to_vec()),
                RecordBody::Invalid(e) => Err((record.position, e.code)),
                RecordBody::Fields(_) => Err((record.position, ErrorCode::InvalidType)),
            });
        }
        let too_large = Position {
            record: 2,
            line: 2,
            byte: 8,
        };
        assert_eq!(
            got,
            vec![
                Ok(b"{\"a\":1}".to_vec()),
                Err((too_large, ErrorCode::RecordTooLarge)),
                Ok(b"{\"b\":2}".to_vec())
            ]
        );
        let bound = Limits::DEFAULT_MAX_RECORD_BYTES + 1 + DECODED_BUFFER_BYTES;
        assert!(
            r.buffer_capacity() <= bound,
            "{} > {bound}",
            r.buffer_capacity()
        );
        Ok(())
    }

    #[test]
    fn depth_scan_skips_strings_and_escapes() {
        let cases: &[(&str, usize, bool)] = &[
            ("[[1]]", 2, false),
            ("[[[1]]]", 2, true),
            (r#"{"a":"[[[[\"[[["}"#, 1, false),
            (r#"{"a":"\\"}[[["#, 2, true),
            (r#""unterminated [[[["#, 0, false),
            ("]]]][[", 1, true),
        ];
        for (line, max, want) in cases {
            assert_eq!(
                exceeds_depth(line.as_bytes(), *max),
                *want,
                "{line} with max {max}"
            );
        }
    }
}

//! A JSON document holding one top-level array, streamed element by element.
//!
//! The document is: an optional UTF-8 BOM and whitespace, `[`, elements separated by `,`, `]`, trailing
//! whitespace. A byte scanner finds where each element starts and ends (it follows strings, escapes and
//! bracket depth — a counter, no stack, so any nesting costs constant memory) and yields the element's bytes
//! as [`RecordBody::Json`]; parsing them is the validator's job. Scalars are yielded too (the validator
//! rejects non-objects), and so are elements whose brackets are balanced but mismatched (`{]`): the validator
//! reports them as invalid JSON.
//!
//! Row errors (the file continues): an element larger than `max_record_bytes`, or nested deeper than
//! `max_json_depth`, is scanned to its end without being kept and yields [`RecordBody::Invalid`].
//!
//! File errors ([`ReadError::JsonStructure`]): the top level is not an array, something other than `,` or `]`
//! follows an element, an element is missing (`[,` or `[1,]`), content follows the closing `]`, or the input
//! ends before it. An empty (or whitespace-only) file is an empty document: zero records, no error.
//!
//! Line numbers count `\n` bytes.

use std::io::BufRead;

use super::decode::{count_newlines, is_json_space, Input};
use super::{Fields, ReadError, Record, RecordBody, RecordReader, StartAt};
use crate::{ErrorCode, Limits, Position, RowError};

/// Where the scanner is in the document's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After `[`: an element or `]`.
    First,
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing `]`, or an empty document, or an error: nothing more.
    Done,
}

/// Byte classes used by the element scanner outside strings.
const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const QUOTE: u8 = 3;

static STRUCTURAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t[b'"' as usize] = QUOTE;
    t
};

/// Bytes that end a scalar element (a number, `true`, garbage...).
#[inline]
fn ends_scalar(b: u8) -> bool {
    is_json_space(b) || matches!(b, b',' | b']' | b'}' | b'[' | b'{' | b'"' | b':')
}

/// Streaming reader of a JSON array document. See the [module documentation](self).
pub struct JsonArrayReader {
    input: Input,
    state: State,
    /// Current line (at the input offset).
    line: u64,
    /// Bytes of the current element.
    buf: Vec<u8>,
    max_record_bytes: usize,
    max_json_depth: usize,
    /// Number of the next element.
    record: u64,
    /// Where the next element's position counting resumes (just past the last element returned).
    next: Position,
}

/// Scanner state inside one element.
#[derive(Default)]
struct ElementScan {
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Only for scalars: no brackets to balance.
    scalar: bool,
    /// Bytes of the element seen so far.
    len: usize,
    /// Why it is being discarded, if it is.
    rejected: Option<ErrorCode>,
}

impl JsonArrayReader {
    /// Creates a reader over decoded bytes and reads up to the opening `[`.
    ///
    /// When `start.position.byte > 0`, `input` must be positioned at that byte (a checkpoint from
    /// [`RecordReader::next_position`]: right after an element, or right after `[` before the first one).
    pub fn new(
        input: Box<dyn BufRead + Send>,
        limits: &Limits,
        start: &StartAt,
    ) -> Result<Self, ReadError> {
        let line = start.position.line.max(1);
        let record = start.position.record.max(1);
        let mut reader = Self {
            input: Input::new(input, start.position.byte),
            state: State::First,
            line,
            buf: Vec::new(),
            max_record_bytes: limits.max_record_bytes,
            max_json_depth: limits.max_json_depth,
            record,
            next: Position {
                record,
                line,
                byte: start.position.byte,
            },
        };
        if start.position.byte > 0 {
            // Resumed inside the array: after `[` if no element was read yet, else after an element.
            reader.state = if record > 1 {
                State::AfterElement
            } else {
                State::First
            };
            return Ok(reader);
        }
        reader.input.strip_bom()?;
        match reader.skip_whitespace()? {
            None => {
                // Empty document: no records. The checkpoint stays at the top of the file.
                reader.state = State::Done;
                return Ok(reader);
            }
            Some(b'[') => reader.input.consume(1),
            Some(_) => {
                reader.state = State::Done;
                return Err(
                    reader.structure_error("expected `[`: the document must be a JSON array")
                );
            }
        }
        reader.next = Position {
            record,
            line: reader.line,
            byte: reader.input.offset(),
        };
        Ok(reader)
    }

    fn structure_error(&self, message: &str) -> ReadError {
        ReadError::JsonStructure {
            line: self.line,
            byte: self.input.offset(),
            message: message.to_string(),
        }
    }

    /// Skips whitespace; returns the next byte (not consumed), `None` at the end of the input.
    fn skip_whitespace(&mut self) -> Result<Option<u8>, ReadError> {
        while self.input.fill()? {
            let avail = self.input.available();
            match avail.iter().position(|&b| !is_json_space(b)) {
                Some(i) => {
                    self.line += count_newlines(&avail[..i]);
                    let next = avail[i];
                    self.input.consume(i);
                    return Ok(Some(next));
                }
                None => {
                    self.line += count_newlines(avail);
                    let n = avail.len();
                    self.input.consume(n);
                }
            }
        }
        Ok(None)
    }

    /// Moves past the separators to the next element's first byte; `false` after the closing `]`.
    fn seek_element(&mut self) -> Result<bool, ReadError> {
        const TRUNCATED: &str = "the document ends before the array's closing `]`";
        if self.state == State::Done {
            return Ok(false);
        }
        let next = self.skip_whitespace()?;
        match (self.state, next) {
            (State::Done, _) => Ok(false),
            (_, None) => Err(self.structure_error(TRUNCATED)),
            (_, Some(b']')) => {
                self.input.consume(1);
                self.state = State::Done;
                match self.skip_whitespace()? {
                    Some(_) => {
                        Err(self
                            .structure_error("unexpected content after the array's closing `]`"))
                    }
                    None => Ok(false),
                }
            }
            (State::AfterElement, Some(b',')) => {
                self.input.consume(1);
                match self.skip_whitespace()? {
                    Some(b']' | b',') => Err(self.structure_error("expected an element after `,`")),
                    None => Err(self.structure_error(TRUNCATED)),
                    Some(_) => Ok(true),
                }
            }
            (State::AfterElement, Some(_)) => {
                Err(self.structure_error("expected `,` or `]` after an array element"))
            }
            (State::First, Some(b',')) => {
                Err(self.structure_error("expected an element before `,`"))
            }
            (State::First, Some(_)) => Ok(true),
        }
    }

    /// Scans one element starting at the current byte. Its bytes are in `buf` unless it was rejected.
    fn scan_element(&mut self) -> Result<Option<ErrorCode>, ReadError> {
        self.buf.clear();
        let mut scan = ElementScan::default();
        if let Some(&first) = self.input.available().first() {
            scan.scalar = STRUCTURAL[first as usize] == 0;
        }
        loop {
            if !self.input.fill()? {
                if scan.scalar && !scan.in_string {
                    // A scalar at the very end: `]` is missing, reported by `seek_element` next time.
                    return Ok(scan.rejected);
                }
                return Err(self.structure_error("the document ends inside an array element"));
            }
            let avail = self.input.available();
            let (used, complete) = scan_chunk(&mut scan, avail, self.max_json_depth);
            let span = &avail[..used];
            self.line += count_newlines(span);
            if scan.rejected.is_none() {
                if scan.len + used > self.max_record_bytes {
                    scan.rejected = Some(ErrorCode::RecordTooLarge);
                    self.buf.clear();
                } else {
                    push_bounded(&mut self.buf, span, self.max_record_bytes);
                }
            } else {
                self.buf.clear();
            }
            scan.len += used;
            self.input.consume(used);
            if complete {
                return Ok(scan.rejected);
            }
        }
    }

    /// Capacity of the buffers this reader holds (for tests that check memory stays bounded).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity() + self.input.capacity()
    }
}

/// Appends `span` to `buf`, which is known to stay within `max` bytes: grows by doubling, but never allocates
/// past `max`.
pub(crate) fn push_bounded(buf: &mut Vec<u8>, span: &[u8], max: usize) {
    let needed = buf.len() + span.len();
    if needed > buf.capacity() {
        let target = (buf.capacity() * 2).max(needed).min(max.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(span);
}

/// Scans `chunk` from the element's current state. Returns how many bytes belong to the element and whether
/// it ended within them.
fn scan_chunk(scan: &mut ElementScan, chunk: &[u8], max_depth: usize) -> (usize, bool) {
    if scan.scalar {
        return match chunk.iter().position(|&b| ends_scalar(b)) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
    }
    let mut i = 0;
    while i < chunk.len() {
        if scan.in_string {
            if scan.escaped {
                scan.escaped = false;
                i += 1;
                continue;
            }
            match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                Some(j) => {
                    i += j;
                    if chunk[i] == b'\\' {
                        scan.escaped = true;
                    } else {
                        scan.in_string = false;
                        if scan.depth == 0 {
                            // A string element ends with its closing quote.
                            return (i + 1, true);
                        }
                    }
                    i += 1;
                }
                None => return (chunk.len(), false),
            }
            continue;
        }
        match STRUCTURAL[chunk[i] as usize] {
            OPEN => {
                scan.depth += 1;
                if scan.depth > max_depth && scan.rejected.is_none() {
                    scan.rejected = Some(ErrorCode::JsonTooDeep);
                }
            }
            CLOSE => {
                // `depth` is at least 1 here: an element starting with a closing bracket is refused before.
                scan.depth = scan.depth.saturating_sub(1);
                if scan.depth == 0 {
                    return (i + 1, true);
                }
            }
            QUOTE => scan.in_string = true,
            _ => {}
        }
        i += 1;
    }
    (chunk.len(), false)
}

impl RecordReader for JsonArrayReader {
    fn header(&self) -> Option<Fields<'_>> {
        None
    }

    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        let found = self.seek_element().and_then(|more| {
            if !more {
                return Ok(None);
            }
            if self
                .input
                .available()
                .first()
                .is_some_and(|&b| matches!(b, b'}' | b']'))
            {
                return Err(self
                    .structure_error("unexpected closing bracket where an element should start"));
            }
            let position = Position {
                record: self.record,
                line: self.line,
                byte: self.input.offset(),
            };
            Ok(Some((position, self.scan_element()?)))
        });
        let (position, rejected) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.state = State::Done;
                return Err(e);
            }
        };
        self.state = State::AfterElement;
        self.record += 1;
        self.next = Position {
            record: self.record,
            line: self.line,
            byte: self.input.offset(),
        };
        let body = match rejected {
            None => RecordBody::Json(&self.buf),
            Some(ErrorCode::JsonTooDeep) => RecordBody::Invalid(RowError::record(
                ErrorCode::JsonTooDeep,
                format!(
                    "element nested deeper than {} levels; skipped",
                    self.max_json_depth
                ),
            )),
            Some(code) => RecordBody::Invalid(RowError::record(
                code,
                format!(
                    "element is larger than {} bytes; skipped",
                    self.max_record_bytes
                ),
            )),
        };
        Ok(Some(Record { position, body }))
    }

    fn next_position(&self) -> Position {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::decode::test_support::synthetic;
    use crate::read::decode::DECODED_BUFFER_BYTES;

    fn codes(reader: &mut JsonArrayReader) -> Result<Vec<Result<Vec<u8>, ErrorCode>>, ReadError> {
        let mut out = Vec::new();
        while let Some(record) = reader.next_record()? {
            out.push(match record.body {
                RecordBody::Json(bytes) => Ok(bytes.to_vec()),
                RecordBody::Invalid(e) => Err(e.code),
                RecordBody::Fields(_) => Err(ErrorCode::InvalidType),
            });
        }
        Ok(out)
    }

    /// The reader's buffer stayed within one record's limit plus the decoded buffer.
    fn assert_buffer_bounded(r: &JsonArrayReader) {
        let bound = Limits::DEFAULT_MAX_RECORD_BYTES + DECODED_BUFFER_BYTES;
        assert!(
            r.buffer_capacity() <= bound,
            "{} > {bound}",
            r.buffer_capacity()
        );
    }

    #[test]
    fn huge_string_element_is_skipped_without_buffering() -> Result<(), ReadError> {
        let input = synthetic(b"[\"", b'a', 300_000_000, b"\", {\"ok\": 1}]");
        let mut r = JsonArrayReader::new(input, &Limits::default(), &StartAt::default())?;
        let got = codes(&mut r)?;
        assert_eq!(
            got,
            vec![Err(ErrorCode::RecordTooLarge), Ok(b"{\"ok\": 1}".to_vec())]
        );
        assert_buffer_bounded(&r);
        Ok(())
    }

    #[test]
    fn millions_deep_nesting_takes_constant_memory() -> Result<(), ReadError> {
        let depth = 3_000_000;
        let suffix = [&b"]".repeat(depth)[..], b",2]"].concat();
        let input = synthetic(b"[", b'[', depth as u64, &suffix);
        let mut r = JsonArrayReader::new(input, &Limits::default(), &StartAt::default())?;
        let got = codes(&mut r)?;
        // Too deep is found first (at depth 65); the scan then goes on to the element's end, counting only.
        assert_eq!(got, vec![Err(ErrorCode::JsonTooDeep), Ok(b"2".to_vec())]);
        assert_buffer_bounded(&r);
        Ok(())
    }
}

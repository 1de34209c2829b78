//! CSV and TSV (RFC 4180), read with `csv-core` directly.
//!
//! * Quoted fields, `""` inside quotes, line breaks inside quotes, and `\r\n`, `\n` or `\r` record terminators.
//! * A UTF-8 byte order mark at the top of the file is skipped; byte offsets still count it.
//! * Empty lines between records are skipped (as `csv-core` does) but counted in line numbers. Line numbers count
//!   `\n` bytes (a lone `\r` ends a record without starting a new line number).
//! * The header row (when `has_header`) is read when the reader is created; its fields are trimmed, must be valid
//!   UTF-8 and number at most `max_columns`, else [`ReadError::Header`]. A file with no bytes (or only a BOM,
//!   or only line breaks) has an empty header and no rows.
//! * A record longer than `max_record_bytes` (counted in the file, without its line terminator) or with more than
//!   `max_columns` fields is a row error ([`RecordBody::Invalid`]): the rest of it is parsed into a scratch
//!   buffer and dropped, so memory stays bounded whatever the input.
//! * A record with a different number of fields than the header is yielded as is: the validator reports it.
//! * A quoted field with text after its closing quote (`"a"b`, `"a" ,`) rejects its record
//!   ([`ErrorCode::TextAfterQuote`]; `csv-core` would glue the text on); in the header it is a
//!   [`ReadError::Header`]. So does a quoted field still open at the end of the file
//!   ([`ErrorCode::UnterminatedQuote`]).
//!
//! The output buffer and the field-ends buffer are reused from record to record: no allocation per record once
//! they have grown to the largest record seen.
//!
//! # Fast paths
//! Most records lie whole inside the input window. Those are parsed by `parse_in_window`, which follows the
//! same state machine as `csv-core` (quoting on, `""` escapes, CRLF terminator mode) without a table lookup per
//! byte:
//! * A record with no quote whose line break is within its first 128 bytes (most records of most files) is
//!   classified in one SIMD/SWAR pass into bitmasks of delimiters, line breaks, quotes, bytes to escape in
//!   JSON and bytes above ASCII (`parse_unquoted`). Its fields are read off the delimiter bits and stay where
//!   they are in the input buffer ([`Fields::separated`]: nothing is copied), and the validator is told what
//!   their text holds, so it does not scan it again.
//! * Any other record goes field by field: field ends come from a bitmask per 64-byte block (`EndCursor`), a
//!   quoted field's closing quote and the line feeds before it from the same 16-byte loads. Its fields are
//!   copied (quotes removed, `""` made one) with one or two 16-byte moves each.
//!
//! Anything the fast paths do not handle — a record cut
//! by the end of the window or of the file, longer than the limit or wider than `max_columns`, a closing
//! quote followed by data (`"a"b`) — makes them return `None` before anything is consumed, and `csv-core`
//! parses that record from its first byte. `csv-core` keeps no state between records (its state at a record
//! boundary only differs in how it treats a following line terminator, which `skip_terminators` consumes
//! before either parser sees it), so they take turns record by record; only its line counter is kept up to
//! date by hand. A test reads random records with the fast paths and with `csv-core` alone, and compares.

use std::io::BufRead;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use super::decode::Input;
use super::{DelimitedOptions, Fields, ReadError, Record, RecordBody, RecordReader, StartAt};
use crate::bytes::{find_byte_counting_lines, Classifier, EndCursor, FieldEnd, TextFlags};
use crate::{ErrorCode, Limits, Position, RowError};

/// Initial size of the field-bytes buffer (it grows to the largest record, at most `max_record_bytes + 1`).
const INITIAL_OUTPUT: usize = 4 * 1024;
/// Initial size of the field-ends buffer (it grows to the widest record, at most `max_columns`).
const INITIAL_ENDS: usize = 64;

/// What parsing one record found.
enum Parsed {
    /// Fields are in `buf` / `ends[..nends]`, back to back; `flags` tells what their text holds, when known.
    Fields {
        nends: usize,
        flags: Option<TextFlags>,
    },
    /// Fields are the record's own bytes in the input's buffer from index `start`, one delimiter between
    /// each two (see [`Fields::separated`]); `ends[..nends]` count from `start`.
    InInput {
        start: usize,
        nends: usize,
        flags: TextFlags,
    },
    /// The record was skipped for this reason.
    Rejected(ErrorCode),
    /// No more records.
    End,
}

/// Streaming CSV/TSV reader. See the [module documentation](self).
pub struct DelimitedReader {
    input: Input,
    core: Reader,
    /// Unescaped bytes of the current record's fields.
    buf: Vec<u8>,
    /// Field end offsets of the current record.
    ends: Vec<usize>,
    header: Option<(Vec<u8>, Vec<usize>)>,
    max_record_bytes: usize,
    max_columns: usize,
    /// Number of the next record.
    record: u64,
    /// `csv-core` has been called (its own BOM stripping is defused on the first call; we do it ourselves).
    core_started: bool,
    /// Reading stopped (end of input or an error).
    done: bool,
    /// The delimiter and quote the fast path reads with; `None` when they are unusual enough (a line break,
    /// or the same byte) that only `csv-core` decides.
    fast: Option<Syntax>,
    /// The delimiter and quote, for [`QuoteScan`] on records `csv-core` parses.
    delimiter: u8,
    quote: u8,
}

/// Where a record's raw bytes leave `csv-core` (quoting on, `""` escapes, no escape character): followed over
/// the bytes it consumes, so a record that ends at the end of the file inside a quoted field is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteScan {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the end of the field, or the first half of `""`.
    QuoteInQuoted,
}

impl QuoteScan {
    /// The state after `bytes`; sets `*text_after_quote` when a closing quote is followed by anything but a
    /// delimiter or a line break (csv-core appends that text to the value).
    fn feed(mut self, bytes: &[u8], delimiter: u8, quote: u8, text_after_quote: &mut bool) -> Self {
        for &b in bytes {
            self = match self {
                Self::FieldStart if b == quote => Self::Quoted,
                Self::Quoted if b == quote => Self::QuoteInQuoted,
                Self::Quoted => Self::Quoted,
                Self::QuoteInQuoted if b == quote => Self::Quoted,
                _ if b == delimiter || b == b'\n' || b == b'\r' => Self::FieldStart,
                Self::QuoteInQuoted => {
                    *text_after_quote = true;
                    Self::Unquoted
                }
                Self::FieldStart | Self::Unquoted => Self::Unquoted,
            };
        }
        self
    }
}

/// The bytes the fast path treats specially.
#[derive(Debug, Clone, Copy)]
struct Syntax {
    delimiter: u8,
    quote: u8,
    field_end: FieldEnd,
    classifier: Classifier,
}

impl Syntax {
    fn new(options: &DelimitedOptions) -> Option<Self> {
        let (d, q) = (options.delimiter, options.quote);
        let line_break = |b: u8| b == b'\n' || b == b'\r';
        if d == q || line_break(d) || line_break(q) {
            return None;
        }
        Some(Self {
            delimiter: d,
            quote: q,
            field_end: FieldEnd::new(d),
            classifier: Classifier::new(d, q),
        })
    }
}

/// A record the fast path parsed: fields in `buf` / `ends[..nends]`, or, when `separated`, in the window
/// itself (see [`Fields::separated`]).
struct InWindow {
    separated: bool,
    nends: usize,
    /// Bytes of the record, its terminator included.
    consumed: usize,
    /// `\n` bytes among them.
    newlines: u64,
    /// What the fields' text holds, when the parse found out on its way.
    flags: Option<TextFlags>,
}

/// Appends `bytes` to `buf` at `*out`, growing `buf` (up to `cap` bytes) if needed.
#[inline(always)]
fn put(buf: &mut Vec<u8>, out: &mut usize, bytes: &[u8], cap: usize) -> Option<()> {
    let end = *out + bytes.len();
    if end > buf.len() {
        grow_output(buf, end, cap)?;
    }
    buf.get_mut(*out..end)?.copy_from_slice(bytes);
    *out = end;
    Some(())
}

/// Appends `window[start..end]` to `buf` at `*out`. A short field (most are) is copied as a fixed 32-byte block
/// when both buffers have room for that, which compiles to two 16-byte moves instead of a `memcpy` call; the
/// bytes past the field land beyond the output written so far and are overwritten by the next field or ignored.
#[inline(always)]
fn put_field(
    buf: &mut Vec<u8>,
    out: &mut usize,
    window: &[u8],
    start: usize,
    end: usize,
    cap: usize,
) -> Option<()> {
    const BLOCK: usize = 32;
    let n = end.checked_sub(start)?;
    if n <= BLOCK {
        if let (Some(dst), Some(src)) = (
            buf.get_mut(*out..*out + BLOCK),
            window.get(start..start + BLOCK),
        ) {
            dst.copy_from_slice(src);
            *out += n;
            return Some(());
        }
    }
    put(buf, out, window.get(start..end)?, cap)
}

#[cold]
#[inline(never)]
fn grow_output(buf: &mut Vec<u8>, need: usize, cap: usize) -> Option<()> {
    if need > cap {
        return None;
    }
    let size = (buf.len() * 2).max(INITIAL_OUTPUT).min(cap).max(need);
    // Exact: the buffer must stay within the record limit.
    buf.reserve_exact(size - buf.len());
    buf.resize(size, 0);
    Some(())
}

#[cold]
#[inline(never)]
fn grow_ends(ends: &mut Vec<usize>, max_columns: usize) -> Option<()> {
    if ends.len() >= max_columns {
        return None;
    }
    let size = (ends.len() * 2).max(1).min(max_columns);
    ends.reserve_exact(size - ends.len());
    ends.resize(size, 0);
    Some(())
}

/// Bytes [`parse_unquoted`] classifies at once.
const SPAN: usize = 128;

/// The common record, parsed without a decision per field: no quote before its line break, and the line break
/// within the first [`SPAN`] bytes of `window`. Those bytes are classified in one pass (delimiters, line breaks,
/// quotes); the first line break ends the record and every delimiter before it ends a field, so the fields
/// are read off the delimiter bits, as many every time for a file whose records have the same width (the loop
/// is then predicted exactly). The fields stay in `window` (`ends` are offsets in it, see
/// [`Fields::separated`]). `None` (nothing consumed) for any other record, which the general loop parses.
#[inline(always)]
fn parse_unquoted(
    window: &[u8],
    syntax: Syntax,
    ends: &mut Vec<usize>,
    max_columns: usize,
) -> Option<InWindow> {
    let head = window.first_chunk::<SPAN>()?;
    let (low, high) = head.split_at(64);
    let a = syntax.classifier.classify(low.first_chunk::<64>()?);
    let b = syntax.classifier.classify(high.first_chunk::<64>()?);
    let join = |x: u64, y: u64| u128::from(x) | (u128::from(y) << 64);
    let line_breaks = join(a.line_breaks, b.line_breaks);
    if line_breaks == 0 {
        return None;
    }
    let end = line_breaks.trailing_zeros() as usize;
    let before = (1u128 << end) - 1;
    if join(a.quotes, b.quotes) & before != 0 {
        return None;
    }
    let mut delimiters = join(a.delimiters, b.delimiters) & before;
    let fields = delimiters.count_ones() as usize + 1;
    while ends.len() < fields {
        grow_ends(ends, max_columns)?;
    }
    // The fields stay where they are: each ends at a delimiter, and the last at the line break.
    let mut nends = 0usize;
    while delimiters != 0 {
        *ends.get_mut(nends)? = delimiters.trailing_zeros() as usize;
        nends += 1;
        delimiters &= delimiters - 1;
    }
    *ends.get_mut(nends)? = end;
    // The record's bytes before its line break are its fields' text and the delimiters between them (no
    // quote, so nothing was unescaped); a delimiter that is a control byte (a tab) is not text.
    let escapes = join(a.escapes, b.escapes) & !join(a.delimiters, b.delimiters);
    let flags = TextFlags {
        escape: escapes & before != 0,
        non_ascii: join(a.non_ascii, b.non_ascii) & before != 0,
    };
    Some(InWindow {
        separated: true,
        nends: nends + 1,
        consumed: end + 1,
        newlines: u64::from(window[end] == b'\n'),
        flags: Some(flags),
    })
}

/// Parses the record at the start of `window` (which holds at most `max_record_bytes + 1` bytes, so a record
/// that fits the limit has its terminator inside it) into `buf`/`ends`, exactly as `csv-core` would. `None`
/// when the record is not whole in `window`, has more than `max_columns` fields, or takes a rare turn
/// (`"a"b`): `csv-core` then parses it. The first byte is not a line terminator (those were skipped).
#[inline]
fn parse_in_window(
    window: &[u8],
    syntax: Syntax,
    buf: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    max_columns: usize,
) -> Option<InWindow> {
    if let Some(found) = parse_unquoted(window, syntax, ends, max_columns) {
        return Some(found);
    }
    let cap = window.len();
    let (mut out, mut nends, mut newlines) = (0usize, 0usize, 0u64);
    let mut i = 0;
    let mut cursor = EndCursor::new(window, syntax.field_end);
    loop {
        // Start of a field at `i`; find the byte that ends it (a delimiter or a line terminator).
        let end = if *window.get(i)? == syntax.quote {
            let mut from = i + 1;
            loop {
                let (close, lines) = find_byte_counting_lines(window, from, syntax.quote)?;
                newlines += lines;
                put_field(buf, &mut out, window, from, close, cap)?;
                let next = *window.get(close + 1)?;
                if next == syntax.quote {
                    // `""`: one literal quote, the field goes on.
                    put(buf, &mut out, &[next], cap)?;
                    from = close + 2;
                } else if next == syntax.delimiter || next == b'\n' || next == b'\r' {
                    break close + 1;
                } else {
                    // Data after the closing quote: csv-core's business.
                    return None;
                }
            }
        } else {
            // Unquoted: a quote here is data, only the delimiter and line breaks end the field.
            let end = cursor.find(i)?;
            put_field(buf, &mut out, window, i, end, cap)?;
            end
        };
        if nends == ends.len() {
            grow_ends(ends, max_columns)?;
        }
        *ends.get_mut(nends)? = out;
        nends += 1;
        let terminator = *window.get(end)?;
        if terminator == syntax.delimiter {
            i = end + 1;
            continue;
        }
        newlines += u64::from(terminator == b'\n');
        return Some(InWindow {
            separated: false,
            nends,
            consumed: end + 1,
            newlines,
            flags: None,
        });
    }
}

impl DelimitedReader {
    /// Creates a reader over decoded bytes and, unless `start` carries it, reads the header row.
    ///
    /// When `start.position.byte > 0`, `input` must be positioned at that byte of the decoded file (a
    /// checkpoint from [`RecordReader::next_position`]); with `has_header`, `start.header` must then be given.
    pub fn new(
        input: Box<dyn BufRead + Send>,
        options: DelimitedOptions,
        limits: &Limits,
        start: &StartAt,
    ) -> Result<Self, ReadError> {
        let core = ReaderBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.quote)
            .double_quote(true)
            .quoting(true)
            .terminator(Terminator::CRLF)
            .build();
        let mut reader = Self {
            input: Input::new(input, start.position.byte),
            core,
            buf: vec![0; INITIAL_OUTPUT.min(limits.max_record_bytes.saturating_add(1))],
            ends: vec![0; INITIAL_ENDS.min(limits.max_columns.max(1))],
            header: None,
            max_record_bytes: limits.max_record_bytes,
            max_columns: limits.max_columns.max(1),
            record: start.position.record.max(1),
            core_started: false,
            done: false,
            fast: Syntax::new(&options),
            delimiter: options.delimiter,
            quote: options.quote,
        };
        reader.core.set_line(start.position.line.max(1));
        if start.position.byte == 0 {
            reader.input.strip_bom()?;
        }
        if !options.has_header {
            return Ok(reader);
        }
        if let Some(names) = &start.header {
            let mut data = Vec::new();
            let mut ends = Vec::with_capacity(names.len());
            for name in names {
                data.extend_from_slice(name.trim().as_bytes());
                ends.push(data.len());
            }
            reader.header = Some((data, ends));
            return Ok(reader);
        }
        if start.position.byte > 0 {
            return Err(ReadError::Header {
                line: reader.core.line(),
                message: "resuming in the middle of a file needs the header read before"
                    .to_string(),
            });
        }
        reader.read_header()?;
        Ok(reader)
    }

    fn read_header(&mut self) -> Result<(), ReadError> {
        let (line, _, parsed) = self.parse_record()?;
        let header_error = |message: String| ReadError::Header { line, message };
        let fields =
            match parsed {
                Parsed::End => {
                    self.header = Some((Vec::new(), Vec::new()));
                    return Ok(());
                }
                Parsed::Rejected(ErrorCode::TooManyColumns) => {
                    return Err(header_error(format!(
                        "more than {} columns",
                        self.max_columns
                    )))
                }
                Parsed::Rejected(ErrorCode::TextAfterQuote) => {
                    return Err(header_error(
                        "a quoted column name has text after its closing quote".to_owned(),
                    ))
                }
                Parsed::Rejected(ErrorCode::UnterminatedQuote) => return Err(header_error(
                    "a quoted column name is never closed: the whole file was read as the header"
                        .to_owned(),
                )),
                Parsed::Rejected(_) => {
                    return Err(header_error(format!(
                        "header row larger than {} bytes",
                        self.max_record_bytes
                    )))
                }
                Parsed::Fields { nends, .. } => self.output_fields(nends),
                Parsed::InInput { start, nends, .. } => self.input_fields(start, nends),
            };
        let mut data = Vec::with_capacity(fields.text().len());
        let mut ends = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            let name = simdutf8::basic::from_utf8(field)
                .map_err(|_| header_error(format!("column {} is not valid UTF-8", i + 1)))?;
            data.extend_from_slice(name.trim().as_bytes());
            ends.push(data.len());
        }
        self.header = Some((data, ends));
        Ok(())
    }

    /// The fields of a record parsed into `buf`: the whole buffer, not only the record's bytes, because the
    /// validator copies short fields as fixed-size blocks (see [`Fields::get_with_tail`]).
    #[inline(always)]
    fn output_fields(&self, nends: usize) -> Fields<'_> {
        Fields::new(&self.buf, &self.ends[..nends])
    }

    /// The fields of a record left in the input's buffer from `start` (see [`Parsed::InInput`]), with the rest
    /// of the buffer behind them for the same reason as in [`DelimitedReader::output_fields`].
    #[inline(always)]
    fn input_fields(&self, start: usize, nends: usize) -> Fields<'_> {
        Fields::separated(self.input.buffer_from(start), &self.ends[..nends])
    }

    /// Skips the line terminators between records (what `csv-core` would skip as empty lines), counting lines,
    /// so the next record's first byte is the next available one.
    #[inline]
    fn skip_terminators(&mut self) -> Result<(), ReadError> {
        loop {
            if !self.input.fill()? {
                return Ok(());
            }
            let avail = self.input.available();
            let n = avail
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            if n == 0 {
                return Ok(());
            }
            let newlines = avail[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            self.core.set_line(self.core.line() + newlines);
            let whole = n == avail.len();
            self.input.consume(n);
            if !whole {
                return Ok(());
            }
        }
    }

    /// Parses the next record into `buf`/`ends`. Returns the line and byte it starts at and what was found.
    #[inline]
    fn parse_record(&mut self) -> Result<(u64, u64, Parsed), ReadError> {
        self.skip_terminators()?;
        let line = self.core.line();
        let byte = self.input.offset();
        let max = self.max_record_bytes;
        if let Some(syntax) = self.fast {
            let avail = self.input.available();
            let window = &avail[..avail.len().min(max.saturating_add(1))];
            if let Some(found) = parse_in_window(
                window,
                syntax,
                &mut self.buf,
                &mut self.ends,
                self.max_columns,
            ) {
                let start = self.input.buffer_pos();
                self.input.consume(found.consumed);
                self.core.set_line(line + found.newlines);
                let (nends, flags) = (found.nends, found.flags);
                let parsed = match flags {
                    Some(flags) if found.separated => Parsed::InInput {
                        start,
                        nends,
                        flags,
                    },
                    _ => Parsed::Fields { nends, flags },
                };
                return Ok((line, byte, parsed));
            }
        }
        let (mut len, mut nends, mut raw) = (0usize, 0usize, 0usize);
        let mut scan = QuoteScan::FieldStart;
        let mut text_after_quote = false;
        loop {
            if raw > max {
                self.discard_record()?;
                return Ok((line, byte, Parsed::Rejected(ErrorCode::RecordTooLarge)));
            }
            self.input.fill()?;
            let avail = self.input.available();
            // Never hand csv-core more than the limit allows (+1 for the terminator byte that ends the record):
            // the output buffer can then never grow past `max_record_bytes + 1`.
            let mut room = max - raw + 1;
            if !self.core_started {
                // csv-core strips a BOM on its first call; we already did (only at the top of the file), so
                // make its first call too short for that.
                self.core_started = true;
                room = 1;
            }
            let chunk = &avail[..avail.len().min(room)];
            let (res, nin, nout, nend) =
                self.core
                    .read_record(chunk, &mut self.buf[len..], &mut self.ends[nends..]);
            let terminated = !chunk.is_empty();
            scan = scan.feed(
                &chunk[..nin],
                self.delimiter,
                self.quote,
                &mut text_after_quote,
            );
            self.input.consume(nin);
            raw += nin;
            len += nout;
            nends += nend;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    // Output never exceeds the input given (at most `max + 1` bytes), so this stays bounded.
                    let size = (self.buf.len() * 2)
                        .max(INITIAL_OUTPUT)
                        .min(max.saturating_add(1))
                        .max(len + 1);
                    // Exact: the buffer must stay within the record limit.
                    self.buf.reserve_exact(size - self.buf.len());
                    self.buf.resize(size, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= self.max_columns {
                        self.discard_record()?;
                        return Ok((line, byte, Parsed::Rejected(ErrorCode::TooManyColumns)));
                    }
                    let size = (self.ends.len() * 2).min(self.max_columns);
                    self.ends.reserve_exact(size - self.ends.len());
                    self.ends.resize(size, 0);
                }
                ReadRecordResult::Record => {
                    // The byte that ended the record (when input remained) is its terminator, not its data.
                    let record_bytes = if terminated { raw - 1 } else { raw };
                    if record_bytes > max {
                        return Ok((line, byte, Parsed::Rejected(ErrorCode::RecordTooLarge)));
                    }
                    if !terminated && scan == QuoteScan::Quoted {
                        return Ok((line, byte, Parsed::Rejected(ErrorCode::UnterminatedQuote)));
                    }
                    if text_after_quote {
                        return Ok((line, byte, Parsed::Rejected(ErrorCode::TextAfterQuote)));
                    }
                    let flags = None;
                    return Ok((line, byte, Parsed::Fields { nends, flags }));
                }
                ReadRecordResult::End => return Ok((line, byte, Parsed::End)),
            }
        }
    }

    /// Feeds the rest of the current record to csv-core with the output going to the (already allocated)
    /// buffers, overwritten chunk after chunk: linear time, no memory growth.
    fn discard_record(&mut self) -> Result<(), ReadError> {
        loop {
            self.input.fill()?;
            let chunk = self.input.available();
            let (res, nin, _, _) = self.core.read_record(chunk, &mut self.buf, &mut self.ends);
            self.input.consume(nin);
            match res {
                ReadRecordResult::Record | ReadRecordResult::End => return Ok(()),
                ReadRecordResult::InputEmpty
                | ReadRecordResult::OutputFull
                | ReadRecordResult::OutputEndsFull => {}
            }
        }
    }

    fn rejection_message(&self, code: ErrorCode) -> String {
        match code {
            ErrorCode::TooManyColumns => {
                format!("record has more than {} fields; skipped", self.max_columns)
            }
            ErrorCode::TextAfterQuote => "a quoted field has text after its closing quote (`\"a\"b`): quote the \
                 whole value and double the quotes inside it (`\"a\"\"b\"`); skipped"
                .to_owned(),
            ErrorCode::UnterminatedQuote => {
                "a quoted field opened in this record is never closed: the rest of the file was read as \
                 its value; skipped"
                    .to_owned()
            }
            _ => format!(
                "record is larger than {} bytes; skipped",
                self.max_record_bytes
            ),
        }
    }

    /// Capacity of the buffers this reader holds (for tests that check memory stays bounded).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
            + self.ends.capacity() * std::mem::size_of::<usize>()
            + self.input.capacity()
    }
}

impl RecordReader for DelimitedReader {
    fn header(&self) -> Option<Fields<'_>> {
        self.header
            .as_ref()
            .map(|(data, ends)| Fields::new(data, ends))
    }

    #[inline]
    fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let (line, byte, parsed) = match self.parse_record() {
            Ok(found) => found,
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        let position = Position {
            record: self.record,
            line,
            byte,
        };
        if matches!(parsed, Parsed::End) {
            self.done = true;
            return Ok(None);
        }
        self.record += 1;
        let body = match parsed {
            Parsed::End => return Ok(None),
            Parsed::Rejected(code) => {
                RecordBody::Invalid(RowError::record(code, self.rejection_message(code)))
            }
            Parsed::Fields { nends, flags, .. } => {
                RecordBody::Fields(self.output_fields(nends).with_text_flags(flags))
            }
            Parsed::InInput {
                start,
                nends,
                flags,
            } => RecordBody::Fields(self.input_fields(start, nends).with_text_flags(Some(flags))),
        };
        Ok(Some(Record { position, body }))
    }

    fn next_position(&self) -> Position {
        Position {
            record: self.record,
            line: self.core.line(),
            byte: self.input.offset(),
        }
    }
}

#[cfg(test)]
mod tests;

//! Typed validation: binds a [`Template`] to one file and turns each record into a typed JSON object.
//!
//! The CSV path is the hot path of an import. Everything that can be decided once per file is decided in
//! [`Validator::new`] (which column feeds which field, the JSON bytes of every output key, enum spellings), so
//! validating a row allocates nothing in the steady state: cells are parsed by hand and written straight into
//! the batch ([`Validator::validate_into`]), in room the batch keeps initialised, with the write position in a
//! register (see `json_out`). Allocation happens only on the error path (messages) and, for JSON records, for
//! keys or strings that contain escapes.
//!
//! What a row costs is mostly branches the CPU cannot predict, because they follow the data: the length of a
//! cell, which enum value or boolean a row holds, whether a timestamp has an offset. Short keys and cells are
//! therefore copied as fixed-size blocks, booleans are matched without early exits, a short enum list is
//! searched with one probe of a collision-free hash, integers of up to eight digits are parsed in one word, a
//! timestamp's date and time in three, and UTC and same-day timestamps share one path.
//!
//! Error messages never contain a cell's value: rows may hold personal data, and messages end up in logs and
//! reports. They say what was expected instead.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::bytes::{self, load_short, needs_attention, plain_prefix, splat, ESCAPE, HI};
use crate::json_out::{self, Out};
use crate::read::{Fields, RecordBody};
use crate::sink::RowBatch;
use crate::template::{normalize_column, FieldType, Template, UnknownColumns};
use crate::{ErrorCode, Format, Position, RowError};

/// A file that cannot be validated against the template at all (decided from its header, before any row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateMismatch {
    /// The header has no column for a required field.
    #[error("the header has no column `{column}` for the required field `{field}`")]
    MissingColumn {
        /// The template field.
        field: String,
        /// The column it reads from.
        column: String,
    },
    /// The header has columns the template does not declare, and `unknown_columns = "reject"`.
    #[error(
        "the header has {} column(s) the template does not declare (unknown_columns = \"reject\"): {}",
        .columns.len(), quote_list(.columns)
    )]
    UnknownColumns {
        /// The unknown columns, as written in the header (trimmed).
        columns: Vec<String>,
    },
    /// Two header columns are the same column once trimmed and lowercased, and the column is used.
    #[error("column `{column}` appears twice in the header (columns {first} and {second}, counting from 1)")]
    DuplicateColumn {
        /// The column, as written the second time (trimmed).
        column: String,
        /// 1-based position of the first occurrence.
        first: usize,
        /// 1-based position of the second occurrence.
        second: usize,
    },
    /// With `unknown_columns = "keep"`, an unknown column has the same name as a template field's output key.
    #[error("the kept unknown column `{column}` has the same name as a template field")]
    KeptColumnCollides {
        /// The column.
        column: String,
    },
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One field, compiled for a file.
#[derive(Debug)]
struct Plan {
    /// `,"name":` — the output key with a leading comma (skipped for the first key written).
    key: Box<[u8]>,
    /// The key padded with zeros, when it has at most [`WINDOW`] bytes: written with one fixed-size copy.
    key_block: Option<[u8; WINDOW + 1]>,
    /// `,"name":null`.
    null: Box<[u8]>,
    /// The source column, for error reports.
    column: Box<str>,
    /// CSV: index of the column in the record; `None` when the header lacks it (an optional field).
    source: Option<usize>,
    required: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    String {
        min: Option<u32>,
        max: Option<u32>,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Boolean,
    Date {
        format: Option<Box<str>>,
    },
    Timestamp {
        format: Option<Box<str>>,
    },
    Enum {
        values: Box<[EnumValue]>,
        case_insensitive: bool,
        /// The values' words by hash, when there are few enough of them.
        index: Option<WordIndex>,
    },
    Json,
}

/// The packed words of an enum's short ASCII values (see [`EnumValue::word`]) in a table indexed by a
/// multiplicative hash, its multiplier chosen when the template is compiled so that no two words share a
/// slot: a text's word is then found, or found missing, with one multiplication and one compare, whatever the
/// number of values. Comparing with every value in turn made a chain of dependent selections per row.
#[derive(Debug)]
struct WordIndex {
    multiplier: u64,
    /// 64 minus the log2 of the table size.
    shift: u32,
    /// A word and the index of its value; word 0 is an empty slot (no packed word is 0: its length byte is
    /// not).
    slots: Box<[(u64, usize)]>,
}

impl WordIndex {
    /// Words indexed at most; an enum with more is searched value by value.
    const MAX_WORDS: usize = 16;
    /// Log2 of the table size: 64 slots for at most 16 words, so that a multiplier without collisions is
    /// found within a few tries.
    const BITS: u32 = 6;

    /// `None` when more than [`WordIndex::MAX_WORDS`] values have a word (or, in theory, when no multiplier
    /// tried separates them).
    fn new(values: &[EnumValue]) -> Option<Self> {
        let mut words: Vec<(u64, usize)> = Vec::new();
        for (i, v) in values.iter().enumerate() {
            // The first value of a word is the one found (the template parser rejects duplicates anyway).
            if let Some(w) = v.word.filter(|w| !words.iter().any(|&(x, _)| x == *w)) {
                words.push((w, i));
            }
        }
        if words.len() > Self::MAX_WORDS {
            return None;
        }
        let shift = 64 - Self::BITS;
        // Candidate multipliers from a fixed sequence (splitmix64), so a template always compiles the same.
        let mut state = 0u64;
        for _ in 0..10_000 {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let multiplier = (z ^ (z >> 31)) | 1;
            let mut slots = vec![(0u64, 0usize); 1 << Self::BITS].into_boxed_slice();
            let separated = words.iter().all(|&(w, i)| {
                match slots.get_mut((w.wrapping_mul(multiplier) >> shift) as usize) {
                    Some(slot) if slot.0 == 0 => {
                        *slot = (w, i);
                        true
                    }
                    _ => false,
                }
            });
            if separated {
                return Some(Self {
                    multiplier,
                    shift,
                    slots,
                });
            }
        }
        None
    }

    /// The index of the value whose word is `w` (not 0).
    #[inline(always)]
    fn find(&self, w: u64) -> Option<usize> {
        let slot = self
            .slots
            .get((w.wrapping_mul(self.multiplier) >> self.shift) as usize)?;
        (slot.0 == w).then_some(slot.1)
    }
}

#[derive(Debug)]
struct EnumValue {
    text: Box<str>,
    /// Short ASCII values (up to 8 bytes) packed into a word, lowercased when matching ignores case: a
    /// match is then one compare.
    word: Option<u64>,
    /// The declared spelling as a JSON string literal.
    json: Box<[u8]>,
}

/// How CSV records map to fields.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Records must have exactly `width` fields (the header's).
    Header { width: usize },
    /// No header: field `i` is column `i`; extra columns are unknown columns.
    Positional,
    /// JSON records.
    Json,
}

/// Why one value is rejected.
struct Fail {
    code: ErrorCode,
    message: Cow<'static, str>,
}

impl Fail {
    fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A template bound to one file: validates its records one by one.
#[derive(Debug)]
pub struct Validator {
    plan: Vec<Plan>,
    shape: Shape,
    unknown: UnknownColumns,
    empty_as_null: bool,
    /// CSV with a header and `unknown_columns = "keep"`: (column index, `,"name":`).
    kept_columns: Vec<(usize, Box<[u8]>)>,
    /// Header-less CSV with `keep`: `,"column_N":` keys, grown on demand.
    positional_keys: Vec<Box<[u8]>>,
    /// JSON: declared source column → field index (exact-match fast path).
    exact: HashMap<Box<str>, usize>,
    /// JSON: normalised source column → field index.
    normalized: HashMap<String, usize>,
    norm_buf: String,
    /// JSON: entry index feeding each field for the current record (`usize::MAX`: none).
    slots: Vec<usize>,
    /// JSON: entries kept under `unknown_columns = "keep"`.
    kept_entries: Vec<usize>,
    /// JSON: the reusable list of an object's entries, empty between records (see [`recycle`]).
    spare: Vec<(Cow<'static, str>, &'static RawValue)>,
    /// Room for a row besides what grows with the record (see [`Validator::room_hint`]): every key, and
    /// room for a value and a write window per field.
    fixed_room: usize,
}

const NO_ENTRY: usize = usize::MAX;

/// What writing one record's row found.
enum Wrote {
    /// The row, this many bytes long.
    Row(usize),
    /// The record is rejected; the reasons are in the error list.
    Rejected,
    /// The row did not fit the room given.
    NoRoom,
}

impl Validator {
    /// Binds a template to one file. `header` is Some for delimited files with a header row.
    ///
    /// Delimited files without a header map the template's fields to columns by position.
    pub fn new(
        template: &Template,
        format: Format,
        header: Option<Fields<'_>>,
    ) -> Result<Validator, TemplateMismatch> {
        let delimited = matches!(format, Format::Csv | Format::Tsv);
        let mut plan: Vec<Plan> = template
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| Plan {
                key: json_key(&f.name),
                key_block: padded(&json_key(&f.name)),
                null: [&json_key(&f.name)[..], b"null"]
                    .concat()
                    .into_boxed_slice(),
                column: f.source_column().trim().into(),
                source: if delimited { Some(i) } else { None },
                required: f.required,
                kind: compile_kind(&f.field_type),
            })
            .collect();
        let mut v = Validator {
            plan: Vec::new(),
            shape: if delimited {
                Shape::Positional
            } else {
                Shape::Json
            },
            unknown: template.unknown_columns,
            empty_as_null: template.csv.empty_as_null,
            kept_columns: Vec::new(),
            positional_keys: Vec::new(),
            exact: HashMap::new(),
            normalized: HashMap::new(),
            norm_buf: String::new(),
            slots: vec![NO_ENTRY; plan.len()],
            kept_entries: Vec::new(),
            spare: Vec::new(),
            fixed_room: 0,
        };
        let by_column: HashMap<String, usize> = template
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (normalize_column(f.source_column()), i))
            .collect();
        match (delimited, header) {
            (true, Some(header)) => {
                v.shape = Shape::Header {
                    width: header.len(),
                };
                v.bind_header(template, &mut plan, &by_column, header)?;
            }
            (true, None) => {}
            (false, _) => {
                for (i, f) in template.fields.iter().enumerate() {
                    v.exact.insert(f.source_column().into(), i);
                }
                v.normalized = by_column;
            }
        }
        v.fixed_room = 128
            + plan.iter().map(|p| p.null.len() + 64).sum::<usize>()
            + v.kept_columns
                .iter()
                .map(|(_, key)| key.len() + 64)
                .sum::<usize>();
        v.plan = plan;
        Ok(v)
    }

    fn bind_header(
        &mut self,
        template: &Template,
        plan: &mut [Plan],
        by_column: &HashMap<String, usize>,
        header: Fields<'_>,
    ) -> Result<(), TemplateMismatch> {
        for p in plan.iter_mut() {
            p.source = None;
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut unknown = Vec::new();
        for (i, cell) in header.iter().enumerate() {
            let text = String::from_utf8_lossy(cell);
            // The reader strips a byte order mark; a header that still starts with one must not hide a column.
            let trimmed = text.trim_start_matches('\u{feff}').trim();
            let norm = normalize_column(trimmed);
            let field = by_column.get(&norm).copied();
            let blank = trimmed.is_empty();
            if let Some(first) = seen.insert(norm, i) {
                if field.is_some() || (self.unknown == UnknownColumns::Keep && !blank) {
                    return Err(TemplateMismatch::DuplicateColumn {
                        column: trimmed.to_owned(),
                        first: first + 1,
                        second: i + 1,
                    });
                }
                continue;
            }
            match field {
                Some(f) => plan[f].source = Some(i),
                // Blank header cells (a trailing delimiter) are not columns anyone declared or wants kept.
                None if blank => {}
                None => match self.unknown {
                    UnknownColumns::Ignore => {}
                    UnknownColumns::Reject => unknown.push(trimmed.to_owned()),
                    UnknownColumns::Keep => {
                        if template.fields.iter().any(|f| f.name == trimmed) {
                            return Err(TemplateMismatch::KeptColumnCollides {
                                column: trimmed.to_owned(),
                            });
                        }
                        self.kept_columns.push((i, json_key(trimmed)));
                    }
                },
            }
        }
        if !unknown.is_empty() {
            return Err(TemplateMismatch::UnknownColumns { columns: unknown });
        }
        if header.is_empty() {
            // No header row at all: the file is empty (or only line breaks), so it has no rows either. Zero
            // rows imported, as for an empty JSON or JSON Lines file, not a missing-column failure.
            return Ok(());
        }
        for (p, f) in plan.iter().zip(&template.fields) {
            if p.source.is_none() && f.required {
                return Err(TemplateMismatch::MissingColumn {
                    field: f.name.clone(),
                    column: f.source_column().trim().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Validates one record. On success appends exactly one JSON object (no trailing newline) to `out` and
    /// returns true. On failure leaves `out` as it was, pushes every reason into `errors` (all field errors of
    /// the row, not only the first) and returns false. `RecordBody::Invalid(e)` → push e, return false.
    pub fn validate(
        &mut self,
        body: &RecordBody<'_>,
        out: &mut Vec<u8>,
        errors: &mut Vec<RowError>,
    ) -> bool {
        let start = out.len();
        let mut room = self.room_hint(body);
        loop {
            out.resize(start + room, 0);
            match self.write_record(body, out.get_mut(start..).unwrap_or_default(), errors) {
                Wrote::Row(n) => {
                    out.truncate(start + n);
                    return true;
                }
                Wrote::Rejected => {
                    out.truncate(start);
                    return false;
                }
                Wrote::NoRoom => room = room.saturating_mul(2),
            }
        }
    }

    /// Validates one record as [`Validator::validate`] does, appending an accepted row to `rows` (at
    /// `position`). The row is written straight into the batch's initialised buffer, so nothing is zeroed or
    /// resized per row.
    pub fn validate_into(
        &mut self,
        body: &RecordBody<'_>,
        rows: &mut RowBatch,
        position: Position,
        errors: &mut Vec<RowError>,
    ) -> bool {
        let mut room = self.room_hint(body);
        loop {
            match self.write_record(body, rows.room(room), errors) {
                Wrote::Row(n) => {
                    rows.commit_next(n, position);
                    return true;
                }
                Wrote::Rejected => return false,
                Wrote::NoRoom => room = room.saturating_mul(2),
            }
        }
    }

    /// Room that fits a record's row in all but unusual cases (many escapes, long decimals): a row that
    /// does not fit is written again with twice the room.
    #[inline]
    fn room_hint(&self, body: &RecordBody<'_>) -> usize {
        match body {
            RecordBody::Fields(fields) => {
                2 * fields.text().len() + self.fixed_room + 48 * fields.len()
            }
            RecordBody::Json(bytes) => 2 * bytes.len() + self.fixed_room,
            RecordBody::Invalid(_) => 0,
        }
    }

    /// Writes one record's row at the start of `buf`.
    #[inline]
    fn write_record(
        &mut self,
        body: &RecordBody<'_>,
        buf: &mut [u8],
        errors: &mut Vec<RowError>,
    ) -> Wrote {
        let before = errors.len();
        let mut out = Out::new(buf);
        match body {
            RecordBody::Invalid(e) => {
                errors.push(e.clone());
                return Wrote::Rejected;
            }
            RecordBody::Fields(fields) => self.validate_fields(fields, &mut out, errors),
            RecordBody::Json(bytes) => self.validate_json(bytes, &mut out, errors),
        }
        if out.is_full() {
            // The reasons found are found again with more room.
            errors.truncate(before);
            Wrote::NoRoom
        } else if errors.len() > before {
            Wrote::Rejected
        } else {
            Wrote::Row(out.len())
        }
    }

    fn validate_fields(
        &mut self,
        fields: &Fields<'_>,
        out: &mut Out<'_>,
        errors: &mut Vec<RowError>,
    ) {
        let n = fields.len();
        let declared = self.plan.len();
        match self.shape {
            Shape::Header { width } if n != width => {
                errors.push(RowError::record(
                    ErrorCode::FieldCountMismatch,
                    format!("the record has {n} fields, the header has {width}"),
                ));
                return;
            }
            Shape::Positional if n < declared => {
                errors.push(RowError::record(
                    ErrorCode::FieldCountMismatch,
                    format!("the record has {n} fields, the template declares {declared}"),
                ));
                return;
            }
            Shape::Positional if n > declared && self.unknown == UnknownColumns::Reject => {
                errors.push(RowError::record(
                    ErrorCode::UnknownColumn,
                    format!(
                        "the record has {n} fields, the template declares {declared} (unknown_columns = \"reject\")"
                    ),
                ));
                return;
            }
            _ => {}
        }
        out.push(b'{');
        let mut sep = false;
        let empty_as_null = self.empty_as_null;
        let text = plain_text(fields);
        for p in &self.plan {
            let Some((cell, tail)) = p.source.and_then(|i| fields.get_with_tail(i)) else {
                // Absent from the header: optional (a required one fails the file at bind time). Omitted.
                continue;
            };
            write_csv_cell(p, cell, tail, text, empty_as_null, out, &mut sep, errors);
        }
        if !self.kept_columns.is_empty() {
            for (i, key) in &self.kept_columns {
                let cell = fields.get(*i).unwrap_or_default();
                write_kept_cell(key, cell, empty_as_null, out, &mut sep, errors);
            }
        } else if matches!(self.shape, Shape::Positional) && self.unknown == UnknownColumns::Keep {
            for i in declared..n {
                while self.positional_keys.len() <= i - declared {
                    let number = declared + self.positional_keys.len() + 1;
                    self.positional_keys
                        .push(json_key(&format!("column_{number}")));
                }
                let cell = fields.get(i).unwrap_or_default();
                write_kept_cell(
                    &self.positional_keys[i - declared],
                    cell,
                    empty_as_null,
                    out,
                    &mut sep,
                    errors,
                );
            }
        }
        out.push(b'}');
    }

    // Its own function, as the CSV path is: inlined into one, each would make the other's code worse.
    #[inline(never)]
    fn validate_json(&mut self, bytes: &[u8], out: &mut Out<'_>, errors: &mut Vec<RowError>) {
        let mut entries = recycle(std::mem::take(&mut self.spare));
        match parse_object(bytes, &mut entries) {
            Ok(()) => self.write_json_record(&entries, out, errors),
            Err(e) => errors.push(e),
        }
        self.spare = recycle(entries);
    }

    fn write_json_record(
        &mut self,
        entries: &[(Cow<'_, str>, &RawValue)],
        out: &mut Out<'_>,
        errors: &mut Vec<RowError>,
    ) {
        self.slots.fill(NO_ENTRY);
        self.kept_entries.clear();
        let mut guess = 0;
        for (idx, (key, _)) in entries.iter().enumerate() {
            let field = self.lookup(key, guess);
            match field {
                Some(f) => {
                    guess = f + 1;
                    if self.slots[f] != NO_ENTRY {
                        errors.push(RowError::column(
                            key.trim(),
                            ErrorCode::DuplicateColumn,
                            format!(
                                "the object has two keys for the column `{}` (keys match trimmed and ignoring case)",
                                self.plan[f].column
                            ),
                        ));
                    } else {
                        self.slots[f] = idx;
                    }
                }
                None => match self.unknown {
                    UnknownColumns::Ignore => {}
                    UnknownColumns::Reject => errors.push(RowError::column(
                        key.trim(),
                        ErrorCode::UnknownColumn,
                        "the template does not declare this key (unknown_columns = \"reject\")",
                    )),
                    UnknownColumns::Keep => self.kept_entries.push(idx),
                },
            }
        }
        out.push(b'{');
        let mut sep = false;
        for (p, &slot) in self.plan.iter().zip(&self.slots) {
            if slot == NO_ENTRY {
                if p.required {
                    errors.push(RowError::column(
                        &*p.column,
                        ErrorCode::MissingField,
                        "the required key is missing",
                    ));
                }
                continue;
            }
            write_json_value(p, entries[slot].1.get(), out, &mut sep, errors);
        }
        for (n, &idx) in self.kept_entries.iter().enumerate() {
            let key = entries[idx].0.trim();
            let collides = self
                .plan
                .iter()
                .any(|p| field_name(&p.key) == key.as_bytes())
                || self.kept_entries[..n]
                    .iter()
                    .any(|&other| normalize_column(&entries[other].0) == normalize_column(key));
            if collides {
                errors.push(RowError::column(
                    key,
                    ErrorCode::DuplicateColumn,
                    "the kept key has the name of a template field or of another kept key",
                ));
                continue;
            }
            put_sep(out, &mut sep);
            write_json_string(out, key.as_bytes()).ok();
            out.push(b':');
            write_compact_json(out, entries[idx].1.get().as_bytes());
        }
        out.push(b'}');
    }

    /// The field fed by JSON key `key`: the field after the previous match first (objects usually list keys
    /// in template order), then an exact match, then the trimmed, lowercased match.
    fn lookup(&mut self, key: &str, guess: usize) -> Option<usize> {
        if let Some(p) = self.plan.get(guess) {
            if &*p.column == key {
                return Some(guess);
            }
        }
        if let Some(&f) = self.exact.get(key) {
            return Some(f);
        }
        self.norm_buf.clear();
        let trimmed = key.trim();
        if trimmed.is_ascii() {
            self.norm_buf
                .extend(trimmed.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            self.norm_buf
                .extend(trimmed.chars().flat_map(char::to_lowercase));
        }
        self.normalized.get(self.norm_buf.as_str()).copied()
    }
}

/// The JSON key bytes `,"name":`.
fn json_key(name: &str) -> Box<[u8]> {
    let (key, _) = json_out::to_vec(name.len() + 64, |out| {
        out.push(b',');
        // A `str` is valid UTF-8, so escaping cannot fail.
        let _ = write_json_string(out, name.as_bytes());
        out.push(b':');
    });
    key.into_boxed_slice()
}

/// `text` as a JSON string literal (a `str` is valid UTF-8, so escaping cannot fail).
fn json_string_literal(text: &str) -> Vec<u8> {
    json_out::to_vec(text.len() + 64, |out| {
        write_json_string(out, text.as_bytes())
    })
    .0
}

/// The quoted name inside a `,"name":` key (escaped form; equal to the name when it needs no escaping).
fn field_name(key: &[u8]) -> &[u8] {
    key.get(2..key.len().saturating_sub(2)).unwrap_or_default()
}

fn compile_kind(t: &FieldType) -> Kind {
    match t {
        FieldType::String {
            min_length,
            max_length,
        } => Kind::String {
            min: *min_length,
            max: *max_length,
        },
        FieldType::Integer { min, max } => Kind::Integer {
            min: min.unwrap_or(i64::MIN),
            max: max.unwrap_or(i64::MAX),
        },
        FieldType::Decimal { precision, scale } => Kind::Decimal {
            precision: *precision,
            scale: *scale,
        },
        FieldType::Boolean => Kind::Boolean,
        FieldType::Date { format } => Kind::Date {
            format: format.as_deref().map(Into::into),
        },
        FieldType::Timestamp { format } => Kind::Timestamp {
            format: format.as_deref().map(Into::into),
        },
        FieldType::Enum {
            values,
            case_insensitive,
        } => {
            let values: Box<[EnumValue]> = values
                .iter()
                .map(|v| {
                    let json = json_string_literal(v);
                    let word = short_word(v.as_bytes()).map(|w| {
                        if *case_insensitive {
                            ascii_lower(w)
                        } else {
                            w
                        }
                    });
                    EnumValue {
                        text: v.as_str().into(),
                        word,
                        json: json.into_boxed_slice(),
                    }
                })
                .collect();
            Kind::Enum {
                index: WordIndex::new(&values),
                values,
                case_insensitive: *case_insensitive,
            }
        }
        FieldType::Json => Kind::Json,
    }
}

#[inline]
fn put_sep(out: &mut Out<'_>, sep: &mut bool) {
    if *sep {
        out.push(b',');
    }
    *sep = true;
}

/// `key` followed by zeros, when it fits.
fn padded(key: &[u8]) -> Option<[u8; WINDOW + 1]> {
    let mut block = [0u8; WINDOW + 1];
    block.get_mut(..key.len())?.copy_from_slice(key);
    Some(block).filter(|_| key.len() <= WINDOW)
}

/// Writes a field's key, as [`put_key`] does, with one fixed-size copy when the key is short.
#[inline(always)]
fn put_plan_key(out: &mut Out<'_>, p: &Plan, sep: &mut bool) {
    let skip = usize::from(!*sep);
    *sep = true;
    match &p.key_block {
        Some(block) => stage(out, |w| {
            if let Some(src) = block.get(skip..skip + WINDOW) {
                w.copy_from_slice(src);
            }
            p.key.len() - skip
        }),
        None => put_bytes(out, p.key.get(skip..).unwrap_or_default()),
    }
}

#[inline(always)]
fn put_key(out: &mut Out<'_>, key: &[u8], sep: &mut bool) {
    if *sep {
        put_bytes(out, key);
    } else {
        put_bytes(out, key.get(1..).unwrap_or_default());
        *sep = true;
    }
}

/// Appends `s`. Slices of up to 32 bytes (most keys and cells) are copied with at most two overlapping
/// fixed-size moves straight into the vector: a few register moves instead of a call to `memcpy`, whose call
/// overhead dominated the cost of the short copies a row is made of.
#[inline(always)]
fn put_bytes(out: &mut Out<'_>, s: &[u8]) {
    if s.len() > 32 {
        out.extend_from_slice(s);
        return;
    }
    stage(out, |w| {
        copy_small(w, s);
        s.len()
    });
}

/// Bytes a staged write may use.
const WINDOW: usize = 32;

/// Lets `write` fill the next [`WINDOW`] bytes in place and keeps the first `n` it returns (see
/// [`Out::stage`]). Writing in place (rather than assembling on the stack and copying) avoids reading back
/// freshly written bytes with wider loads, which stalls store-to-load forwarding.
#[inline(always)]
fn stage(out: &mut Out<'_>, write: impl FnOnce(&mut [u8; WINDOW]) -> usize) {
    out.stage::<WINDOW>(write);
}

/// Copies `s` (at most 32 bytes, at most `dst.len()`) to the start of `dst` with at most two overlapping
/// fixed-size copies.
#[inline(always)]
fn copy_small(dst: &mut [u8], s: &[u8]) {
    let n = s.len();
    if n >= 16 {
        dst[..16].copy_from_slice(&s[..16]);
        dst[n - 16..n].copy_from_slice(&s[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&s[..8]);
        dst[n - 8..n].copy_from_slice(&s[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&s[..4]);
        dst[n - 4..n].copy_from_slice(&s[n - 4..]);
    } else if n >= 2 {
        dst[..2].copy_from_slice(&s[..2]);
        dst[n - 2..n].copy_from_slice(&s[n - 2..]);
    } else if n == 1 {
        dst[0] = s[0];
    }
}

#[inline]
fn null_value(
    p: &Plan,
    what: &'static str,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    if p.required {
        errors.push(RowError::column(&*p.column, ErrorCode::NullValue, what));
    } else {
        put_key(out, &p.null, sep);
    }
}

/// What one scan of a whole delimited record found (see [`plain_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainText {
    /// Some field may need escaping or may not be valid UTF-8: each string field is checked on its own.
    Unknown,
    /// Every field is valid UTF-8 with nothing to escape; `ascii` when every byte is ASCII.
    Plain { ascii: bool },
}

/// Scans a delimited record's text once for what JSON strings must escape and for non-ASCII bytes, so that
/// string fields of a plain record (most of them) are copied as is.
#[inline]
fn plain_text(fields: &Fields<'_>) -> PlainText {
    let text = fields.text();
    let flags = fields
        .text_flags()
        .unwrap_or_else(|| bytes::text_flags(text));
    if flags.escape {
        return PlainText::Unknown;
    }
    if !flags.non_ascii {
        return PlainText::Plain { ascii: true };
    }
    // Valid as a whole, and no field starts or ends in the middle of a character: then every field is valid
    // on its own.
    let valid = simdutf8::basic::from_utf8(text).is_ok() && fields.on_char_boundaries();
    if valid {
        PlainText::Plain { ascii: false }
    } else {
        PlainText::Unknown
    }
}

#[inline]
#[allow(clippy::too_many_arguments)]
fn write_csv_cell(
    p: &Plan,
    cell: &[u8],
    tail: &[u8],
    text: PlainText,
    empty_as_null: bool,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    const EMPTY: &str = "the required field is empty (an empty cell is null)";
    let result = match &p.kind {
        Kind::String { min, max } => {
            if cell.is_empty() && empty_as_null {
                return null_value(p, EMPTY, out, sep, errors);
            }
            put_plan_key(out, p, sep);
            match text {
                PlainText::Plain { ascii } => {
                    write_plain_cell(out, cell, tail);
                    check_length_of(cell, ascii, *min, *max)
                }
                PlainText::Unknown => write_string(out, cell, *min, *max),
            }
        }
        Kind::Json => {
            let text = cell.trim_ascii();
            if text.is_empty() {
                return null_value(p, EMPTY, out, sep, errors);
            }
            // The same nesting limit as a JSON record: deeper text would be written out for every reader of
            // the output to choke on.
            let max_depth = crate::Limits::DEFAULT_MAX_JSON_DEPTH;
            if crate::read::jsonl::exceeds_depth(text, max_depth) {
                push_fail(
                    errors,
                    p,
                    Fail::new(
                        ErrorCode::JsonTooDeep,
                        format!("JSON text nested deeper than {max_depth} levels"),
                    ),
                );
                return;
            }
            match serde_json::from_slice::<&RawValue>(text) {
                Ok(raw) if raw.get() == "null" => {
                    return null_value(p, "the required field is JSON null", out, sep, errors);
                }
                Ok(raw) => write_json_text(out, p, sep, raw.get().as_bytes()),
                Err(e) => Err(Fail::new(
                    ErrorCode::InvalidJsonValue,
                    format!("expected JSON text: {e}"),
                )),
            }
        }
        kind => {
            let text = cell.trim_ascii();
            if text.is_empty() {
                return null_value(p, EMPTY, out, sep, errors);
            }
            put_plan_key(out, p, sep);
            write_typed(kind, text, out)
        }
    };
    if let Err(fail) = result {
        push_fail(errors, p, utf8_first(fail, cell));
    }
}

/// A cell that is not UTF-8 is reported as such (`invalid_utf8`, as a JSON record's would be), not as
/// whatever its type made of the bytes (`invalid_integer`). Only on the error path.
#[cold]
fn utf8_first(fail: Fail, cell: &[u8]) -> Fail {
    if fail.code != ErrorCode::InvalidUtf8 && std::str::from_utf8(cell).is_err() {
        Fail::new(ErrorCode::InvalidUtf8, "the text is not valid UTF-8")
    } else {
        fail
    }
}

#[cold]
#[inline(never)]
fn push_fail(errors: &mut Vec<RowError>, p: &Plan, fail: Fail) {
    errors.push(RowError::column(&*p.column, fail.code, fail.message));
}

fn write_kept_cell(
    key: &[u8],
    cell: &[u8],
    empty_as_null: bool,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    put_key(out, key, sep);
    if cell.is_empty() && empty_as_null {
        out.extend_from_slice(b"null");
    } else if write_json_string(out, cell).is_err() {
        let name = String::from_utf8_lossy(field_name(key)).into_owned();
        errors.push(RowError::column(
            name,
            ErrorCode::InvalidUtf8,
            "the text is not valid UTF-8",
        ));
    }
}

fn json_kind(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

fn write_json_value(
    p: &Plan,
    raw: &str,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    let bytes = raw.as_bytes();
    let first = bytes.first().copied().unwrap_or(b'n');
    if first == b'n' {
        return null_value(p, "the required field is null", out, sep, errors);
    }
    let result = match &p.kind {
        Kind::Json => write_json_text(out, p, sep, bytes),
        Kind::String { min, max } => match first {
            b'"' => {
                put_plan_key(out, p, sep);
                write_raw_json_string(out, raw, *min, *max)
            }
            b'-' | b'0'..=b'9' => {
                // A number for a string field keeps its exact text (ids exported as numbers).
                put_plan_key(out, p, sep);
                write_string(out, bytes, *min, *max)
            }
            other => Err(Fail::new(
                ErrorCode::InvalidType,
                format!(
                    "expected a JSON string or number, found {}",
                    json_kind(other)
                ),
            )),
        },
        kind => match first {
            b'{' | b'[' => Err(Fail::new(
                ErrorCode::InvalidType,
                format!(
                    "expected a JSON string, number or boolean, found {}",
                    json_kind(first)
                ),
            )),
            b'"' => match decode_json_string(raw) {
                Some(text) => {
                    put_plan_key(out, p, sep);
                    write_typed(kind, text.as_bytes().trim_ascii(), out)
                }
                None => Err(Fail::new(
                    ErrorCode::InvalidUtf8,
                    "the string has an invalid escape",
                )),
            },
            _ => {
                put_plan_key(out, p, sep);
                write_typed(kind, bytes, out)
            }
        },
    };
    if let Err(fail) = result {
        push_fail(errors, p, fail);
    }
}

/// The contents of a JSON string literal (borrowed when it has no escape).
fn decode_json_string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// Copies a JSON string literal (already valid JSON) after checking its escapes and length.
fn write_raw_json_string(
    out: &mut Out<'_>,
    raw: &str,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), Fail> {
    let Some(text) = decode_json_string(raw) else {
        return Err(Fail::new(
            ErrorCode::InvalidUtf8,
            "the string has an invalid escape (a lone surrogate)",
        ));
    };
    check_length(&text, min, max)?;
    out.extend_from_slice(raw.as_bytes());
    Ok(())
}

fn check_length(text: &str, min: Option<u32>, max: Option<u32>) -> Result<(), Fail> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    check_count(text.chars().count(), min, max)
}

fn check_count(n: usize, min: Option<u32>, max: Option<u32>) -> Result<(), Fail> {
    let too_short = min.is_some_and(|m| n < m as usize);
    let too_long = max.is_some_and(|m| n > m as usize);
    if !(too_short || too_long) {
        return Ok(());
    }
    let message = match (min, max) {
        (Some(a), Some(b)) => format!("expected between {a} and {b} characters"),
        (Some(a), None) => format!("expected at least {a} characters"),
        (None, _) => format!("expected at most {} characters", max.unwrap_or_default()),
    };
    Err(Fail::new(ErrorCode::ConstraintViolated, message))
}

#[inline]
fn write_string(
    out: &mut Out<'_>,
    cell: &[u8],
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), Fail> {
    let Ok(ascii) = write_json_string(out, cell) else {
        return Err(Fail::new(
            ErrorCode::InvalidUtf8,
            "the text is not valid UTF-8",
        ));
    };
    check_length_of(cell, ascii, min, max)
}

/// Checks the length in characters of valid UTF-8 `cell` (`ascii` when it is all ASCII).
#[inline(always)]
fn check_length_of(
    cell: &[u8],
    ascii: bool,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), Fail> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    // Characters are the bytes that start one (all of them in ASCII text).
    let n = if ascii {
        cell.len()
    } else {
        cell.iter().filter(|&&b| (b as i8) >= -0x40).count()
    };
    check_count(n, min, max)
}

/// Writes valid UTF-8 `cell` that needs no escaping as a JSON string literal; `tail` is `cell` and whatever
/// readable bytes follow it (see [`Fields::get_with_tail`]). A short cell with a long enough tail is copied as
/// one fixed-size block, the same moves whatever its length.
#[inline(always)]
fn write_plain_cell(out: &mut Out<'_>, cell: &[u8], tail: &[u8]) {
    let n = cell.len();
    match tail.first_chunk::<WINDOW>() {
        Some(block) if n <= WINDOW => out.stage::<{ WINDOW + 2 }>(|w| {
            w[0] = b'"';
            w[1..=WINDOW].copy_from_slice(block);
            w[n + 1] = b'"';
            n + 2
        }),
        _ => write_plain_string(out, cell),
    }
}

/// Writes valid UTF-8 `s` that needs no escaping as a JSON string literal.
#[inline(always)]
fn write_plain_string(out: &mut Out<'_>, s: &[u8]) {
    if s.len() <= WINDOW - 2 {
        stage(out, |b| {
            b[0] = b'"';
            copy_small(&mut b[1..], s);
            b[s.len() + 1] = b'"';
            s.len() + 2
        });
    } else {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    }
}

/// Writes a value of a non-string, non-json type from its (trimmed) text. Each type is its own function, kept
/// out of line: a small function saves only the registers it uses, where one function for every type paid for
/// the largest on every value.
#[inline]
fn write_typed(kind: &Kind, text: &[u8], out: &mut Out<'_>) -> Result<(), Fail> {
    match kind {
        Kind::Integer { min, max } => write_integer(out, text, *min, *max),
        Kind::Decimal { precision, scale } => write_decimal(out, text, *precision, *scale),
        Kind::Boolean => write_boolean(out, text),
        Kind::Date { format } => write_date(out, text, format.as_deref()),
        Kind::Timestamp { format } => write_timestamp(out, text, format.as_deref()),
        Kind::Enum {
            values,
            case_insensitive,
            index,
        } => write_enum(out, text, values, index.as_ref(), *case_insensitive),
        // Handled by the callers (strings keep their whitespace; JSON is parsed, not matched).
        Kind::String { .. } | Kind::Json => Ok(()),
    }
}

/// Writes an integer in canonical form.
#[inline(never)]
fn write_integer(out: &mut Out<'_>, text: &[u8], min: i64, max: i64) -> Result<(), Fail> {
    let Some(v) = parse_i64(text) else {
        return Err(Fail::new(
            ErrorCode::InvalidInteger,
            "expected an integer between -9223372036854775808 and 9223372036854775807",
        ));
    };
    if v < min || v > max {
        return Err(Fail::new(
            ErrorCode::ConstraintViolated,
            format!("expected an integer between {min} and {max}"),
        ));
    }
    // Usually the text is already the canonical form (no `+`, no leading zero, no `-0`) and is copied.
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if matches!(digits.first(), Some(b'1'..=b'9')) || text == b"0" {
        put_bytes(out, text);
    } else {
        put_bytes(out, itoa::Buffer::new().format(v).as_bytes());
    }
    Ok(())
}

/// Writes `true` or `false` from any accepted spelling.
#[inline(never)]
fn write_boolean(out: &mut Out<'_>, text: &[u8]) -> Result<(), Fail> {
    const WORDS: [[u8; 8]; 2] = [*b"false\0\0\0", *b"true\0\0\0\0"];
    match parse_bool(text) {
        Some(value) => {
            // One copy for either word (the choice is data, not a branch).
            let i = usize::from(value);
            out.stage::<8>(|w| {
                *w = WORDS[i];
                5 - i
            });
            Ok(())
        }
        None => Err(Fail::new(
            ErrorCode::InvalidBoolean,
            "expected true, false, t, f, yes, no, y, n, 1 or 0 (any case)",
        )),
    }
}

/// Writes the declared spelling of the enum value `text` matches.
#[inline(never)]
fn write_enum(
    out: &mut Out<'_>,
    text: &[u8],
    values: &[EnumValue],
    index: Option<&WordIndex>,
    case_insensitive: bool,
) -> Result<(), Fail> {
    let found = match short_word(text) {
        Some(w) => {
            let w = if case_insensitive { ascii_lower(w) } else { w };
            let by_word = match index {
                Some(index) => index.find(w).and_then(|i| values.get(i)),
                None => values.iter().find(|v| v.word == Some(w)),
            };
            by_word.or_else(|| {
                // A non-ASCII value may still equal a short text ignoring case (`ǅ` and `ǆ`).
                values.iter().find(|v| {
                    v.word.is_none() && case_insensitive && eq_ignore_case(v.text.as_bytes(), text)
                })
            })
        }
        None if case_insensitive => values
            .iter()
            .find(|v| eq_ignore_case(v.text.as_bytes(), text)),
        None => values.iter().find(|v| v.text.as_bytes() == text),
    };
    match found {
        Some(v) => {
            put_bytes(out, &v.json);
            Ok(())
        }
        None => Err(Fail::new(
            ErrorCode::InvalidEnum,
            enum_message(values, case_insensitive),
        )),
    }
}

fn enum_message(values: &[EnumValue], case_insensitive: bool) -> String {
    const SHOWN: usize = 20;
    let mut m = String::from("expected one of ");
    for (i, v) in values.iter().take(SHOWN).enumerate() {
        if i > 0 {
            m.push_str(", ");
        }
        m.push('`');
        m.push_str(&v.text);
        m.push('`');
    }
    if values.len() > SHOWN {
        m.push_str(&format!(" and {} more", values.len() - SHOWN));
    }
    if case_insensitive {
        m.push_str(" (any case)");
    }
    m
}

/// An ASCII text of 1 to 7 bytes packed into a word, its length in the top byte (so `a` and `a\0` differ).
fn short_word(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 7 || !text.is_ascii() {
        return None;
    }
    Some(load_short(text) | ((text.len() as u64) << 56))
}

/// Lowercases the ASCII letters of a packed word.
fn ascii_lower(w: u64) -> u64 {
    let b = w.to_le_bytes();
    let mut out = [0u8; 8];
    for (o, c) in out.iter_mut().zip(b) {
        *o = c.to_ascii_lowercase();
    }
    // The length byte (at most 7) is not a letter and stays as is.
    u64::from_le_bytes(out)
}

fn eq_ignore_case(declared: &[u8], text: &[u8]) -> bool {
    if declared.is_ascii() && text.is_ascii() {
        return declared.eq_ignore_ascii_case(text);
    }
    match (std::str::from_utf8(declared), std::str::from_utf8(text)) {
        (Ok(a), Ok(b)) => a
            .chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase)),
        _ => false,
    }
}

/// The value of 1 to 8 ASCII digits, `None` when any byte is not a digit. SWAR: the digits are packed into a
/// word with `0` in front up to eight, checked and combined in three steps of pairwise multiply-adds.
#[inline(always)]
fn parse_8_digits(digits: &[u8]) -> Option<u32> {
    const ZEROS: u64 = splat(b'0');
    let n = digits.len();
    if n == 0 || n > 8 {
        return None;
    }
    // The first digit is the lowest byte; shifting moves the digits to the top and leaves room for `0`s.
    let pad = 8 * (8 - n as u32);
    let w = (load_short(digits) << pad) | ZEROS.checked_shr(64 - pad).unwrap_or(0);
    // Every byte is 0x30..=0x39: high nibble 3, and adding 6 keeps it at 3.
    let high = w & splat(0xF0);
    let carry = w.wrapping_add(splat(6)) & splat(0xF0);
    if high != ZEROS || carry != ZEROS {
        return None;
    }
    let v = w - ZEROS;
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    let v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF;
    u32::try_from(v).ok()
}

/// An `i64` from an optional sign and ASCII digits (leading zeros allowed).
#[inline]
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 8 {
        // Most integers: all digits at once, without a loop whose length (and exit branch) follows the data.
        let v = i64::from(parse_8_digits(digits)?);
        return Some(if negative { -v } else { v });
    }
    if digits.len() <= 18 {
        // Below 10^18: cannot overflow, no checked arithmetic needed.
        let mut v: i64 = 0;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + i64::from(d);
        }
        return Some(if negative { -v } else { v });
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

fn parse_bool(text: &[u8]) -> Option<bool> {
    // One word compare instead of ten slice compares: the text, ASCII-lowercased, packed into a u64.
    const fn word(s: &[u8]) -> u64 {
        let mut w = 0u64;
        let mut i = 0;
        while i < s.len() {
            w |= (s[i] as u64) << (8 * i);
            i += 1;
        }
        w
    }
    if text.is_empty() || text.len() > 5 {
        return None;
    }
    let raw = load_short(text);
    // Setting bit 5 of every byte maps only the letters A-Z onto a-z (and letters onto themselves).
    let w = raw | (splat(0x20) & (u64::MAX >> (64 - 8 * text.len())));
    const T: [u64; 4] = [word(b"true"), word(b"t"), word(b"yes"), word(b"y")];
    const F: [u64; 4] = [word(b"false"), word(b"f"), word(b"no"), word(b"n")];
    // Compared whole, without early exits: true and false are as good as random from row to row.
    let any = |words: [u64; 4], w: u64| words.iter().fold(false, |hit, &x| hit | (x == w));
    let is_true = any(T, w) | (raw == word(b"1"));
    let is_false = any(F, w) | (raw == word(b"0"));
    (is_true | is_false).then_some(is_true)
}

/// Writes an exact decimal as a JSON string: no `+`, no leading zeros, `0` before a bare point, no sign on
/// zero, and exactly `scale` fraction digits when the template declares a scale.
#[inline(never)]
fn write_decimal(
    out: &mut Out<'_>,
    text: &[u8],
    precision: Option<u32>,
    scale: Option<u32>,
) -> Result<(), Fail> {
    if is_canonical_decimal(text, precision, scale) {
        write_plain_string(out, text);
        return Ok(());
    }
    write_decimal_general(out, text, precision, scale)
}

/// True when `text` is already written the way [`write_decimal_general`] would write it, within the limits:
/// unsigned digits without a leading zero (a lone `0` aside), and a point followed by exactly `scale` digits
/// (any number of digits, at least one, without a scale). Most amounts are; they are copied as is.
#[inline(always)]
fn is_canonical_decimal(text: &[u8], precision: Option<u32>, scale: Option<u32>) -> bool {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => match (text.get(..dot), text.get(dot + 1..)) {
            (Some(int), Some(frac)) if !frac.is_empty() => (int, frac),
            _ => return false,
        },
        None => (text, &text[text.len()..]),
    };
    let Some(&first) = int.first() else {
        return false;
    };
    if (first == b'0' && int.len() > 1) || !digits(int) || !digits(frac) {
        return false;
    }
    match scale {
        Some(s) => {
            frac.len() == s as usize
                && precision.is_none_or(|p| int.len() <= p.saturating_sub(s) as usize)
        }
        None => precision.is_none_or(|p| int.len() + frac.len() <= p as usize),
    }
}

/// [`write_decimal`] for any accepted spelling: signs, leading zeros, missing or extra fraction digits.
fn write_decimal_general(
    out: &mut Out<'_>,
    text: &[u8],
    precision: Option<u32>,
    scale: Option<u32>,
) -> Result<(), Fail> {
    let (negative, rest) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // One pass: digits and at most one point.
    let mut dot = usize::MAX;
    let mut bad = false;
    for (i, &b) in rest.iter().enumerate() {
        if b == b'.' && dot == usize::MAX {
            dot = i;
        } else if !b.is_ascii_digit() {
            bad = true;
            break;
        }
    }
    if bad || rest.is_empty() || rest == b"." {
        let message = if is_exponent_notation(rest) {
            "expected a decimal number in plain digits: exponent notation (1e3) is not accepted"
        } else {
            "expected a decimal number: digits with an optional sign and at most one decimal point"
        };
        return Err(Fail::new(ErrorCode::InvalidDecimal, message));
    }
    let (int, mut frac) = if dot == usize::MAX {
        (rest, &rest[rest.len()..])
    } else {
        (&rest[..dot], &rest[dot + 1..])
    };
    let int = &int[int.iter().take_while(|&&b| b == b'0').count()..];
    if let Some(s) = scale {
        let s = s as usize;
        if frac.len() > s {
            // Digits past the scale may only be zeros: dropping them keeps the value exact.
            if frac[s..].iter().any(|&b| b != b'0') {
                return Err(Fail::new(
                    ErrorCode::ConstraintViolated,
                    decimal_message(precision, scale),
                ));
            }
            frac = &frac[..s];
        }
        if let Some(p) = precision {
            if int.len() > (p as usize).saturating_sub(s) {
                return Err(Fail::new(
                    ErrorCode::ConstraintViolated,
                    decimal_message(precision, scale),
                ));
            }
        }
    } else if let Some(p) = precision {
        if int.len() + frac.len() > p as usize {
            return Err(Fail::new(
                ErrorCode::ConstraintViolated,
                decimal_message(precision, scale),
            ));
        }
    }
    let zero = int.is_empty() && frac.iter().all(|&b| b == b'0');
    let frac_len = scale.map_or(frac.len(), |s| s as usize);
    let sign = usize::from(negative && !zero);
    let int_len = int.len().max(1);
    let total = 2 + sign + int_len + if frac_len > 0 { 1 + frac_len } else { 0 };
    if total <= 32 && int.len() <= 16 && frac.len() <= 16 {
        // The usual short amount: written in place, no call to memcpy.
        stage(out, |b| {
            b[..total].fill(b'0');
            b[0] = b'"';
            if sign == 1 {
                b[1] = b'-';
            }
            let mut n = 1 + sign;
            copy_small(&mut b[n..], int);
            n += int_len;
            if frac_len > 0 {
                b[n] = b'.';
                copy_small(&mut b[n + 1..], frac);
                n += 1 + frac_len;
            }
            b[n] = b'"';
            n + 1
        });
        return Ok(());
    }
    out.push(b'"');
    if sign == 1 {
        out.push(b'-');
    }
    if int.is_empty() {
        out.push(b'0');
    } else {
        out.extend_from_slice(int);
    }
    if frac_len > 0 {
        out.push(b'.');
        out.extend_from_slice(frac);
        out.fill(b'0', frac_len - frac.len());
    }
    out.push(b'"');
    Ok(())
}

fn decimal_message(precision: Option<u32>, scale: Option<u32>) -> String {
    match (precision, scale) {
        (Some(p), Some(s)) => format!(
            "expected at most {} digits before the decimal point and {s} after it (precision {p}, scale {s})",
            p - s.min(p)
        ),
        (Some(p), None) => format!("expected at most {p} digits (precision {p})"),
        (None, Some(s)) => format!("expected at most {s} digits after the decimal point (scale {s})"),
        (None, None) => String::new(),
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    // A table and plain `&`/`|` rather than a `match` and `&&`: months are as good as random from row to row,
    // and a branch per month would be mispredicted most of the time.
    const DAYS: [u8; 13] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    // Divisible by 4 and not by 100, or by 400. A year that is not a multiple of 25 is no multiple of 100: it
    // is a leap year when divisible by 4. A multiple of 25 is a multiple of 400 exactly when it is divisible
    // by 16 (400 = 16 * 25). So one remainder (by 25) picks the power of two to test.
    let low_bits = if year % 25 == 0 { 15 } else { 3 };
    let leap = year & low_bits == 0;
    let days = DAYS.get(month as usize).copied().unwrap_or(0);
    u32::from(days) + u32::from(leap & (month == 2))
}

#[inline]
fn digits2(a: u8, b: u8) -> Option<u32> {
    let (x, y) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    (x <= 9 && y <= 9).then_some(u32::from(x) * 10 + u32::from(y))
}

/// `YYYY-MM-DD`, a real calendar day.
#[inline(always)]
fn parse_ymd(t: &[u8]) -> Option<(u32, u32, u32)> {
    if t.len() < 10 || t[4] != b'-' || t[7] != b'-' {
        return None;
    }
    let year = digits2(t[0], t[1])? * 100 + digits2(t[2], t[3])?;
    let month = digits2(t[5], t[6])?;
    let day = digits2(t[8], t[9])?;
    ((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
        .then_some((year, month, day))
}

fn date_message(format: Option<&str>) -> String {
    match format {
        Some(f) => format!("expected a date in the format `{f}`"),
        None => "expected a date as YYYY-MM-DD".into(),
    }
}

#[inline(never)]
fn write_date(out: &mut Out<'_>, text: &[u8], format: Option<&str>) -> Result<(), Fail> {
    let fail = || Fail::new(ErrorCode::InvalidDate, date_message(format));
    let (y, m, d) = match format {
        None if text.len() == 10 => parse_ymd(text).ok_or_else(fail)?,
        None => return Err(fail()),
        Some(f) => {
            use chrono::Datelike;
            let s = std::str::from_utf8(text).map_err(|_| fail())?;
            let date = chrono::NaiveDate::parse_from_str(s, f).map_err(|_| fail())?;
            let year = u32::try_from(date.year())
                .ok()
                .filter(|y| *y <= 9999 && year_written_whole(text, *y))
                .ok_or_else(fail)?;
            (year, date.month(), date.day())
        }
    };
    stage(out, |b| {
        b[0] = b'"';
        stage_date(b, 1, y, m, d);
        b[11] = b'"';
        12
    });
    Ok(())
}

/// Writes `YYYY-MM-DD` at `b[at..at + 10]`.
#[inline(always)]
fn stage_date(b: &mut [u8], at: usize, y: u32, m: u32, d: u32) {
    stage_2(b, at, y / 100);
    stage_2(b, at + 2, y % 100);
    b[at + 4] = b'-';
    stage_2(b, at + 5, m);
    b[at + 7] = b'-';
    stage_2(b, at + 8, d);
}

/// Writes `v` (below 100) as two digits at `b[at..at + 2]`.
#[inline(always)]
fn stage_2(b: &mut [u8], at: usize, v: u32) {
    // A table read instead of a division and a remainder by ten, which the CPU computes as a chain of
    // multiplications: dates and times are written as such pairs.
    static TWO_DIGITS: [[u8; 2]; 100] = {
        let mut t = [[0u8; 2]; 100];
        let mut i = 0;
        while i < 100 {
            t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
            i += 1;
        }
        t
    };
    let pair = TWO_DIGITS.get(v as usize).copied().unwrap_or(*b"00");
    b[at..at + 2].copy_from_slice(&pair);
}

const TIMESTAMP_MESSAGE: &str =
    "expected an RFC 3339 timestamp (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00) \
     or YYYY-MM-DD HH:MM:SS[.fff] in UTC";

/// A timestamp split into parts; `frac` is the 1-9 sub-second digits as written.
struct Parsed<'a> {
    date: (u32, u32, u32),
    time: (u32, u32, u32),
    frac: &'a [u8],
    /// Offset east of UTC in minutes.
    offset: i64,
}

/// `YYYY-MM-DD?HH:MM:SS`, the separator `?` aside (the caller's): the year, month, day, hour, minute and
/// second of a real calendar day and time of day, `None` unless every digit is one and the punctuation is
/// where it belongs.
///
/// Three overlapping 8-byte words, each checked and turned into two-digit numbers at once (the bytes as
/// digit values, times ten plus the next byte), instead of 14 digits one by one: every row of a timestamp
/// column goes through here.
#[inline(always)]
fn parse_date_time(t: &[u8; 19]) -> Option<[u32; 6]> {
    const ZEROS: u64 = splat(b'0');
    // `YYYY-MM-` (byte `k` of a word is bits `8k..8k + 8`), `DD?HH:MM`, `HH:MM:SS`.
    const DIGITS: [u64; 3] = [
        0x00FF_FF00_FFFF_FFFF,
        0xFFFF_00FF_FF00_FFFF,
        0xFFFF_0000_0000_0000,
    ];
    const PUNCT: [u64; 3] = [
        0xFF00_00FF_0000_0000,
        0x0000_FF00_0000_0000,
        0x0000_FF00_0000_0000,
    ];
    const WANT: [u64; 3] = [
        0x2D00_002D_0000_0000,
        0x0000_3A00_0000_0000,
        0x0000_3A00_0000_0000,
    ];
    let mut ok = true;
    let mut pairs = [0u64; 3];
    for (k, at) in [0, 8, 11].into_iter().enumerate() {
        let w = u64::from_le_bytes(*t[at..].first_chunk::<8>()?);
        // A digit byte is 0x30..=0x39: XOR with 0x30 leaves 0..=9, which adding 0x76 keeps below 0x80.
        let x = (w ^ ZEROS) & DIGITS[k];
        ok &= (x | x.wrapping_add(splat(0x76))) & HI & DIGITS[k] == 0;
        ok &= w & PUNCT[k] == WANT[k];
        // Byte `j`: digit `j` times ten plus digit `j + 1` (at most 99, no carry between bytes).
        pairs[k] = x.wrapping_mul(10).wrapping_add(x >> 8);
    }
    let byte = |w: u64, j: u32| ((w >> (8 * j)) & 0xFF) as u32;
    let year = byte(pairs[0], 0) * 100 + byte(pairs[0], 2);
    let (month, day) = (byte(pairs[0], 5), byte(pairs[1], 0));
    let (h, mi, s) = (byte(pairs[1], 3), byte(pairs[1], 6), byte(pairs[2], 6));
    // Plain `&`: one branch for the whole check, whatever the values.
    ok &= (month.wrapping_sub(1) < 12)
        & (day.wrapping_sub(1) < days_in_month(year, month))
        & (h < 24)
        & (mi < 60)
        & (s < 60);
    ok.then_some([year, month, day, h, mi, s])
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.f{1,9}][Z|±HH:MM|±HHMM]`; no offset means UTC.
fn parse_timestamp(t: &[u8]) -> Option<Parsed<'_>> {
    let head = t.first_chunk::<19>()?;
    if !matches!(head[10], b'T' | b't' | b' ') {
        return None;
    }
    let [y, mo, d, h, mi, s] = parse_date_time(head)?;
    let date = (y, mo, d);
    let mut rest = &t[19..];
    let mut frac: &[u8] = &[];
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        frac = &r[..n];
        rest = &r[n..];
    }
    let offset = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), a, b, b':', c, d] | [sign @ (b'+' | b'-'), a, b, c, d] => {
            let (oh, om) = (digits2(*a, *b)?, digits2(*c, *d)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = i64::from(oh * 60 + om);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    Some(Parsed {
        date,
        time: (h, mi, s),
        frac,
        offset,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[inline(never)]
fn write_timestamp(out: &mut Out<'_>, text: &[u8], format: Option<&str>) -> Result<(), Fail> {
    if let Some(f) = format {
        return write_timestamp_with_format(out, text, f);
    }
    let fail = || Fail::new(ErrorCode::InvalidTimestamp, TIMESTAMP_MESSAGE);
    // The canonical form (`YYYY-MM-DDTHH:MM:SSZ`, what most systems write) is its own output: checked, then
    // copied as it is.
    if let (Some(head), Some(b'Z')) = (text.first_chunk::<19>(), text.get(19)) {
        if text.len() == 20 && head[10] == b'T' {
            parse_date_time(head).ok_or_else(fail)?;
            stage(out, |b| {
                b[0] = b'"';
                b[1..20].copy_from_slice(head);
                b[20] = b'Z';
                b[21] = b'"';
                22
            });
            return Ok(());
        }
    }
    let p = parse_timestamp(text).ok_or_else(fail)?;
    // Minutes into the day, in UTC.
    let minutes = i64::from(p.time.0 * 60 + p.time.1) - p.offset;
    if (0..24 * 60).contains(&minutes) {
        // UTC already, or an offset that moves the time within the same day (the usual cases, taken alike so
        // that which one a row holds is not a branch): the date and the seconds (offsets are whole minutes)
        // are copied as written, the hour and the minute are written from `minutes`.
        let minutes = minutes as u32;
        write_same_day(out, text, (minutes / 60, minutes % 60), p.frac);
        return Ok(());
    }
    write_shifted(out, &p).ok_or_else(fail)
}

/// Writes `"` + `text[..19]` (a valid `YYYY-MM-DD?HH:MM:SS`) with `T` as the separator, the hour and minute
/// written from `(h, mi)`, then `.frac`, `Z` and `"`.
#[inline]
fn write_same_day(out: &mut Out<'_>, text: &[u8], (h, mi): (u32, u32), frac: &[u8]) {
    stage(out, |b| {
        b[0] = b'"';
        copy_small(&mut b[1..], &text[..19]);
        b[11] = b'T';
        stage_2(b, 12, h);
        stage_2(b, 15, mi);
        let mut n = 20;
        if !frac.is_empty() {
            let frac = &frac[..frac.len().min(9)];
            b[20] = b'.';
            copy_small(&mut b[21..30], frac);
            n = 21 + frac.len();
        }
        b[n] = b'Z';
        b[n + 1] = b'"';
        n + 2
    });
}

/// Writes a timestamp converted to UTC through the calendar (any offset, across days, months and years).
/// `None` when the UTC year is outside 0000-9999.
fn write_shifted(out: &mut Out<'_>, p: &Parsed<'_>) -> Option<()> {
    let (y, mo, d) = p.date;
    let secs = days_from_civil(i64::from(y), i64::from(mo), i64::from(d)) * 86_400
        + i64::from(p.time.0 * 3600 + p.time.1 * 60 + p.time.2)
        - p.offset * 60;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400) as u32;
    let y = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
    push_timestamp(
        out,
        (y, mo, d),
        (tod / 3600, tod / 60 % 60, tod % 60),
        p.frac,
    );
    Some(())
}

/// Writes `"YYYY-MM-DDTHH:MM:SS[.fff]Z"` (`frac`: up to 9 digits).
#[inline]
fn push_timestamp(
    out: &mut Out<'_>,
    (y, mo, d): (u32, u32, u32),
    (h, mi, s): (u32, u32, u32),
    frac: &[u8],
) {
    stage(out, |b| {
        b[0] = b'"';
        stage_date(b, 1, y, mo, d);
        b[11] = b'T';
        stage_2(b, 12, h);
        b[14] = b':';
        stage_2(b, 15, mi);
        b[17] = b':';
        stage_2(b, 18, s);
        let mut n = 20;
        if !frac.is_empty() {
            let frac = &frac[..frac.len().min(9)];
            b[20] = b'.';
            copy_small(&mut b[21..30], frac);
            n = 21 + frac.len();
        }
        b[n] = b'Z';
        b[n + 1] = b'"';
        n + 2
    });
}

fn write_timestamp_with_format(out: &mut Out<'_>, text: &[u8], format: &str) -> Result<(), Fail> {
    use chrono::{Datelike, Timelike};
    let fail = || {
        Fail::new(
            ErrorCode::InvalidTimestamp,
            format!("expected a timestamp in the format `{format}`"),
        )
    };
    let s = std::str::from_utf8(text).map_err(|_| fail())?;
    // chrono reads any number of fraction digits and keeps nine: more would be cut without notice.
    if has_long_fraction(text) {
        return Err(fail());
    }
    let (local, utc) = match chrono::DateTime::parse_from_str(s, format) {
        Ok(t) => (t.naive_local(), t.naive_utc()),
        Err(_) => {
            let t = chrono::NaiveDateTime::parse_from_str(s, format).map_err(|_| fail())?;
            (t, t)
        }
    };
    // A leap second (`:60`) is kept by chrono as a nanosecond count past one second, which JSON cannot
    // say; the default forms reject it too.
    if utc.nanosecond() >= 1_000_000_000 || !year_written_whole(text, local.year().unsigned_abs()) {
        return Err(fail());
    }
    let y = u32::try_from(utc.year())
        .ok()
        .filter(|y| *y <= 9999)
        .ok_or_else(fail)?;
    let nanos = utc.nanosecond();
    let mut digits = [0u8; 9];
    let mut n = nanos;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let keep = if nanos == 0 {
        0
    } else {
        9 - digits.iter().rev().take_while(|&&b| b == b'0').count()
    };
    push_timestamp(
        out,
        (y, utc.month(), utc.day()),
        (utc.hour(), utc.minute(), utc.second()),
        &digits[..keep],
    );
    Ok(())
}

/// Whether unsigned `text` is a number in exponent notation (`1e3`, `1.5E-2`, `.5e+7`), as opposed to any
/// text with an `e` in it (`yes`, `none`).
fn is_exponent_notation(text: &[u8]) -> bool {
    let Some(e) = text.iter().position(|&b| b == b'e' || b == b'E') else {
        return false;
    };
    let (mantissa, exponent) = (&text[..e], &text[e + 1..]);
    let exponent = exponent
        .strip_prefix(b"+")
        .or_else(|| exponent.strip_prefix(b"-"))
        .unwrap_or(exponent);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mantissa_ok = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let (int, frac) = (&mantissa[..dot], &mantissa[dot + 1..]);
            (digits(int) || int.is_empty())
                && (digits(frac) || frac.is_empty())
                && mantissa.len() > 1
        }
        None => digits(mantissa),
    };
    mantissa_ok && digits(exponent)
}

/// Whether `year`, read by chrono's `%Y` (which takes one digit or more), was written with four digits: a
/// year below 1000 must appear zero-padded (`0024`), else `24` was a two-digit year read as the year 24.
fn year_written_whole(text: &[u8], year: u32) -> bool {
    if year >= 1000 {
        return true;
    }
    let padded = format!("{year:04}");
    text.windows(4).any(|w| w == padded.as_bytes())
}

/// Whether `text` has a `.` or `,` followed by ten digits or more (a fraction finer than nanoseconds).
fn has_long_fraction(text: &[u8]) -> bool {
    text.split(|&b| b == b'.' || b == b',')
        .skip(1)
        .any(|after| after.iter().take_while(|b| b.is_ascii_digit()).count() > 9)
}

/// Writes `s` as a JSON string literal and tells whether it was all ASCII. Fails (having written a partial
/// literal) when `s` is not UTF-8.
///
/// The common case — short, plain ASCII — is one scan eight bytes at a time and one staged copy. Otherwise runs
/// of plain bytes are copied in bulk between escapes, and the first non-ASCII byte triggers one UTF-8 check of
/// the rest of the cell.
#[inline]
fn write_json_string(out: &mut Out<'_>, s: &[u8]) -> Result<bool, ()> {
    let plain = plain_prefix(s);
    let mut i = plain;
    let mut utf8_ok = false;
    if s.get(plain).is_some_and(|&b| b >= 0x80) {
        // Everything before `plain` is ASCII: checking from here checks the whole cell. Then look for the
        // bytes that still need escaping.
        simdutf8::basic::from_utf8(&s[plain..]).map_err(|_| ())?;
        utf8_ok = true;
        while let Some(&b) = s.get(i) {
            if b < 0x80 && ESCAPE[b as usize] != 0 {
                break;
            }
            i += 1;
        }
    }
    if i == s.len() && s.len() <= 30 {
        stage(out, |b| {
            b[0] = b'"';
            copy_small(&mut b[1..], s);
            b[s.len() + 1] = b'"';
            s.len() + 2
        });
        return Ok(!utf8_ok);
    }
    out.push(b'"');
    let mut start = 0;
    while i < s.len() {
        while let Some(chunk) = s.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if needs_attention(u64::from_le_bytes(w), utf8_ok) {
                break;
            }
            i += 8;
        }
        let Some(&b) = s.get(i) else { break };
        if b >= 0x80 {
            if !utf8_ok {
                // Everything before `i` is ASCII: checking from here checks the whole cell.
                simdutf8::basic::from_utf8(&s[i..]).map_err(|_| ())?;
                utf8_ok = true;
            }
            i += 1;
            continue;
        }
        let e = ESCAPE[b as usize];
        if e == 0 {
            i += 1;
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        if e == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
    Ok(!utf8_ok)
}

/// Writes the key and the (valid) JSON text of a `json` field, compacted; fails on a lone surrogate escape
/// (`"\ud800"`), which a `string` field rejects too and strict JSON readers of the output would choke on.
fn write_json_text(out: &mut Out<'_>, p: &Plan, sep: &mut bool, json: &[u8]) -> Result<(), Fail> {
    if has_lone_surrogate(json) {
        return Err(Fail::new(
            ErrorCode::InvalidUtf8,
            "the JSON text has an invalid escape (a lone surrogate)",
        ));
    }
    put_plan_key(out, p, sep);
    write_compact_json(out, json);
    Ok(())
}

/// Whether valid JSON text has a `\uXXXX` escape of a surrogate that is not half of a high-low pair. Escapes
/// are taken two bytes at a time, so `\\u` (a backslash, then `u`) is not one.
fn has_lone_surrogate(json: &[u8]) -> bool {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let Some(mut i) = memchr::memchr(b'\\', json) else {
        return false;
    };
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        if json.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        match hex(i + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (json.get(i + 6..i + 8) == Some(b"\\u")).then(|| hex(i + 8));
                if !matches!(low.flatten(), Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i += 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => i += 6,
        }
    }
    false
}

/// Copies valid JSON text without insignificant whitespace, so an embedded value never breaks a JSON Lines row.
fn write_compact_json(out: &mut Out<'_>, json: &[u8]) {
    if !json
        .iter()
        .any(|&b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(json);
        return;
    }
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

type Entry<'a> = (Cow<'a, str>, &'a RawValue);

/// Empties a list of entries and hands back its allocation with another lifetime. `filter_map` over an empty
/// `vec::IntoIter` collects in place, so the buffer is reused rather than reallocated per record.
#[allow(clippy::unnecessary_filter_map)] // `filter_map` is what changes the lifetime without an element to map.
fn recycle<'a, 'b>(mut entries: Vec<Entry<'a>>) -> Vec<Entry<'b>> {
    entries.clear();
    entries.into_iter().filter_map(|_| None).collect()
}

/// Parses one JSON record into its (key, raw value) entries, borrowing from `bytes`.
fn parse_object<'a>(bytes: &'a [u8], entries: &mut Vec<Entry<'a>>) -> Result<(), RowError> {
    let first = bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    if first != Some(b'{') {
        // Tell "valid JSON but not an object" from "not JSON", without ever quoting the value.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => RowError::record(ErrorCode::NotAnObject, "expected a JSON object"),
                Err(e) => RowError::record(ErrorCode::InvalidJson, format!("invalid JSON: {e}")),
            },
        );
    }
    let invalid = |e: serde_json::Error| {
        RowError::record(ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
    };
    // One SIMD check of the whole record, then parsing from `str`: serde_json then skips its own UTF-8 check
    // of every key and value, which cost more than the rest of the parse. Invalid UTF-8 is parsed from bytes
    // so that the error names where it is.
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            de.deserialize_map(ObjectVisitor { entries, key: None })
                .and_then(|()| de.end())
                .map_err(invalid)
        }
        Err(_) => {
            // Parsed from bytes, keeping the key being read: serde_json stops at the first invalid byte inside
            // a string ("invalid unicode code point"), and that key names the column, as for a CSV cell.
            let mut key = None;
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let parsed = de
                .deserialize_map(ObjectVisitor {
                    entries,
                    key: Some(&mut key),
                })
                .and_then(|()| de.end());
            match parsed {
                Ok(()) => Ok(()),
                Err(e) if is_invalid_utf8(&e) => {
                    let at = simdutf8::compat::from_utf8(bytes)
                        .err()
                        .map_or(0, |u| u.valid_up_to());
                    let message = format!("the text is not valid UTF-8 (byte {at} of the record)");
                    Err(match key {
                        Some(key) => RowError::column(key, ErrorCode::InvalidUtf8, message),
                        None => RowError::record(ErrorCode::InvalidUtf8, message),
                    })
                }
                Err(e) => Err(invalid(e)),
            }
        }
    }
}

/// Whether serde_json failed on bytes that are not UTF-8 inside a string (its `InvalidUnicodeCodePoint`,
/// which it has no public variant for).
fn is_invalid_utf8(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Syntax
        && e.to_string().starts_with("invalid unicode code point")
}

struct ObjectVisitor<'v, 'a> {
    entries: &'v mut Vec<Entry<'a>>,
    /// When given: the (trimmed) key whose value is being read, `None` while a key is being read.
    key: Option<&'v mut Option<String>>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        loop {
            if let Some(current) = self.key.as_deref_mut() {
                *current = None;
            }
            let Some(Key(key)) = map.next_key::<Key<'de>>()? else {
                return Ok(());
            };
            if let Some(current) = self.key.as_deref_mut() {
                *current = Some(key.trim().to_owned());
            }
            let value: &'de RawValue = map.next_value()?;
            self.entries.push((key, value));
        }
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &[u8]) -> Option<String> {
        let (out, ok) = json_out::to_vec(s.len(), |out| write_json_string(out, s));
        ok.ok()?;
        String::from_utf8(out).ok()
    }

    #[test]
    fn canonical_decimals_are_copied_exactly_as_the_general_path_writes_them() {
        let alphabet = b"0012345789.-+ e";
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
        let limits = [
            (None, None),
            (None, Some(0)),
            (None, Some(2)),
            (Some(5), Some(2)),
            (Some(4), None),
            (Some(2), Some(2)),
        ];
        let mut copied = 0;
        for _ in 0..100_000 {
            let state = rng.step();
            let len = 1 + (state % 9) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| {
                    let pick = (state >> (8 + 5 * i)) as usize;
                    // Mostly digits, so that many texts are numbers.
                    if pick % 4 == 0 {
                        alphabet[pick / 4 % alphabet.len()]
                    } else {
                        b'0' + (pick / 4 % 10) as u8
                    }
                })
                .collect();
            for (precision, scale) in limits {
                let (general, want) = json_out::to_vec(8, |out| {
                    write_decimal_general(out, &text, precision, scale).ok()
                });
                if is_canonical_decimal(&text, precision, scale) {
                    copied += 1;
                    assert_eq!(want, Some(()), "{text:?} {precision:?} {scale:?}");
                    let mut quoted = b"\"".to_vec();
                    quoted.extend_from_slice(&text);
                    quoted.push(b'"');
                    assert_eq!(general, quoted, "{text:?} {precision:?} {scale:?}");
                }
                let (fast, got) =
                    json_out::to_vec(8, |out| write_decimal(out, &text, precision, scale).ok());
                assert_eq!(
                    (got, &fast),
                    (want, &general),
                    "{text:?} {precision:?} {scale:?}"
                );
            }
        }
        assert!(copied > 10_000, "the fast path was taken {copied} times");
    }

    #[test]
    fn json_string_escaping_matches_serde_json() {
        let cases = [
            "",
            "plain ascii text that is longer than eight bytes",
            "quote \" and backslash \\ inside",
            "control \u{1} \u{1f} \n \r \t \u{8} \u{c} end",
            "ünïcödé and emoji 🎉 mixed with \"quotes\"",
            "12345678\"",
            "\u{7f} del",
        ];
        for case in cases {
            let got = escaped(case.as_bytes());
            let want = serde_json::to_string(case).ok();
            assert_eq!(got, want, "input {case:?}");
        }
    }

    #[test]
    fn json_string_rejects_invalid_utf8_anywhere() {
        for bad in [
            &b"\xff"[..],
            b"abcdefghij\xc3",
            b"\xe2\x82",
            b"ok then \xed\xa0\x80 surrogate",
        ] {
            assert!(escaped(bad).is_none(), "input {bad:?}");
        }
    }

    #[test]
    fn parse_i64_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("-0", Some(0)),
            ("+42", Some(42)),
            ("007", Some(7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("99999999999999999999999", None),
            ("", None),
            ("-", None),
            ("+", None),
            ("1.0", None),
            ("1e3", None),
            ("1_000", None),
            ("--1", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_i64(text.as_bytes()), *want, "input {text:?}");
        }
    }

    #[test]
    fn eight_digits_at_once_match_a_digit_loop() {
        let naive = |t: &[u8]| -> Option<u32> {
            if t.is_empty() || t.len() > 8 {
                return None;
            }
            t.iter().try_fold(0u32, |v, &b| {
                b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
            })
        };
        // Digits and the bytes next to them, and bytes that carry when 6 is added.
        let alphabet = [b'0', b'1', b'5', b'9', b'/', b':', 0x00, 0xFA, 0xFF, b'a'];
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
        for len in 0..=9 {
            for _ in 0..5_000 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        let state = rng.step();
                        if state % 8 == 0 {
                            alphabet[(state >> 8) as usize % alphabet.len()]
                        } else {
                            b'0' + (state >> 8) as u8 % 10
                        }
                    })
                    .collect();
                assert_eq!(parse_8_digits(&text), naive(&text), "{text:?}");
            }
        }
        assert_eq!(parse_8_digits(b"99999999"), Some(99_999_999));
        assert_eq!(parse_8_digits(b"00000000"), Some(0));
        assert_eq!(parse_8_digits(b"7"), Some(7));
    }

    #[test]
    fn integers_are_written_in_canonical_form() {
        let kind = Kind::Integer {
            min: i64::MIN,
            max: i64::MAX,
        };
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("+0", "0"),
            ("007", "7"),
            ("-007", "-7"),
            ("+42", "42"),
            ("42", "42"),
            ("-42", "-42"),
            ("999999999999999999", "999999999999999999"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("00000000000000000000042", "42"),
        ];
        for (text, want) in cases {
            let (out, ok) = json_out::to_vec(8, |out| {
                out.push(b'x');
                write_typed(&kind, text.as_bytes(), out).is_ok()
            });
            assert!(ok, "input {text:?}");
            assert_eq!(out, format!("x{want}").as_bytes(), "input {text:?}");
        }
    }

    /// The same-day shortcut for timestamps with an offset writes what the calendar conversion writes.
    #[test]
    fn same_day_offset_shortcut_matches_calendar_conversion() {
        let mut rng = crate::test_rng::XorShift(0x853C_49E6_748F_EA9Bu64);
        let mut next = |n: u64| rng.below(n) as u32;
        let mut checked = 0;
        for _ in 0..20_000 {
            let (y, mo) = (next(10_000), 1 + next(12));
            let d = 1 + next(u64::from(days_in_month(y, mo)));
            let (h, mi, s) = (next(24), next(60), next(60));
            let frac = ["", ".5", ".123456789", ".000"][next(4) as usize];
            let sign = if next(2) == 0 { '+' } else { '-' };
            let (oh, om) = (next(24), [0, 15, 30, 45, next(60)][next(5) as usize]);
            let sep = ["T", "t", " "][next(3) as usize];
            let text = format!(
                "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{sign}{oh:02}:{om:02}"
            );
            let Some(p) = parse_timestamp(text.as_bytes()) else {
                panic!("{text} does not parse");
            };
            let (slow, slow_ok) = json_out::to_vec(8, |out| write_shifted(out, &p).is_some());
            let (fast, fast_ok) =
                json_out::to_vec(8, |out| write_timestamp(out, text.as_bytes(), None).is_ok());
            assert_eq!(fast_ok, slow_ok, "{text}");
            if slow_ok {
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&slow),
                    "{text}"
                );
                checked += 1;
            }
        }
        assert!(checked > 19_000, "{checked}");
    }

    /// `parse_date_time` against the same rules read digit by digit, on valid text and on text with one to
    /// three bytes changed to digits, punctuation, neighbours of the digits and bytes above ASCII.
    #[test]
    fn date_and_time_words_match_a_digit_by_digit_reading() {
        fn by_digits(t: &[u8; 19]) -> Option<[u32; 6]> {
            if t[4] != b'-' || t[7] != b'-' || t[13] != b':' || t[16] != b':' {
                return None;
            }
            let n = |i: usize| digits2(t[i], t[i + 1]);
            let (y, mo, d) = (n(0)? * 100 + n(2)?, n(5)?, n(8)?);
            let (h, mi, s) = (n(11)?, n(14)?, n(17)?);
            let valid = (1..=12).contains(&mo)
                && d >= 1
                && d <= days_in_month(y, mo)
                && h < 24
                && mi < 60
                && s < 60;
            valid.then_some([y, mo, d, h, mi, s])
        }
        let alphabet = b"0123456789-:/;T tZ+.\x00\x7f\x80\xb0\xff";
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
        let (mut valid, mut invalid) = (0, 0);
        for i in 0..60_000 {
            let mut next = |n: u64| rng.below(n) as u32;
            let (y, mo) = (next(10_000), next(14));
            let (d, h, mi, s) = (next(33), next(26), next(62), next(62));
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            let mut t = *text.as_bytes().first_chunk::<19>().expect("19 bytes");
            for _ in 0..(i % 4) {
                let at = next(19) as usize;
                t[at] = alphabet[next(alphabet.len() as u64) as usize];
            }
            let want = by_digits(&t);
            assert_eq!(parse_date_time(&t), want, "{}", String::from_utf8_lossy(&t));
            if want.is_some() {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(valid > 10_000 && invalid > 10_000, "{valid} {invalid}");
    }

    #[test]
    fn february_has_29_days_in_leap_years_only() {
        for year in 0..=9999 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            assert_eq!(days_in_month(year, 2), 28 + u32::from(leap), "{year}");
            assert_eq!(days_in_month(year, 1), 31);
            assert_eq!(days_in_month(year, 4), 30);
        }
        assert_eq!(days_in_month(2024, 0), 0);
        assert_eq!(days_in_month(2024, 13), 0);
    }

    #[test]
    fn two_digit_pairs_are_written_from_the_table() {
        for v in 0..100 {
            let mut b = [b'#'; 4];
            stage_2(&mut b, 1, v);
            assert_eq!(&b, format!("#{v:02}#").as_bytes());
        }
    }

    /// Sets of 0 to 16 short words (random, and close to each other): each is found at its value, other words
    /// are not; a word listed twice finds its first value; more than 16 get no index.
    #[test]
    fn word_index_finds_exactly_the_values_words() {
        let value = |text: &str| EnumValue {
            text: text.into(),
            word: short_word(text.as_bytes()),
            json: json_string_literal(text).into_boxed_slice(),
        };
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9ABC_DEF1u64);
        for round in 0..400 {
            let n = round % 17;
            let texts: Vec<String> = (0..n)
                .map(|i| match round % 3 {
                    0 => format!("V{i}"),
                    1 => format!("{:x}", rng.step() % 0xFFF_FFFF),
                    _ => ["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA", "us", "gb"][i % 10]
                        .repeat(1 + i / 10),
                })
                .collect();
            let values: Vec<EnumValue> = texts.iter().map(|t| value(t)).collect();
            let index = WordIndex::new(&values).expect("16 words or fewer are indexed");
            for (i, t) in texts.iter().enumerate() {
                let first = texts.iter().position(|x| x == t).expect("listed");
                assert_eq!(
                    index.find(short_word(t.as_bytes()).expect("short")),
                    Some(first),
                    "{t}"
                );
                assert!(first <= i);
            }
            for other in ["V99", "zz", "USA", "U", "g", "0", "fffffff"] {
                if !texts.iter().any(|t| t == other) {
                    assert_eq!(
                        index.find(short_word(other.as_bytes()).expect("short")),
                        None,
                        "{other}"
                    );
                }
            }
        }
        let twice: Vec<EnumValue> = ["a", "b", "a"].into_iter().map(value).collect();
        let index = WordIndex::new(&twice).expect("indexed");
        assert_eq!(index.find(short_word(b"a").expect("short")), Some(0));
        let many: Vec<EnumValue> = (0..17).map(|i| value(&format!("V{i}"))).collect();
        assert!(WordIndex::new(&many).is_none());
    }

    /// Canonical UTC timestamps (`...T...Z`, copied as they are once checked) come out as the general reading
    /// writes them, valid or not: random ones, and ones with one to three bytes changed.
    #[test]
    fn canonical_timestamps_are_written_as_the_general_path_writes_them() {
        let general = |t: &[u8]| {
            parse_timestamp(t).map(|p| {
                json_out::to_vec(32, |out| {
                    write_same_day(out, t, (p.time.0, p.time.1), p.frac)
                })
                .0
            })
        };
        let alphabet = b"0123456789-:T tZz+.\xff";
        let mut rng = crate::test_rng::XorShift(0x5DEE_CE66_D1CE_4E5Bu64);
        let mut valid = 0;
        for i in 0..30_000 {
            let mut next = |n: u64| rng.below(n) as u32;
            let (y, mo, d) = (next(10_000), next(14), next(33));
            let (h, mi, s) = (next(25), next(61), next(61));
            let mut t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z").into_bytes();
            for _ in 0..(i % 4) {
                let at = next(20) as usize;
                t[at] = alphabet[next(alphabet.len() as u64) as usize];
            }
            let (out, ok) = json_out::to_vec(32, |out| write_timestamp(out, &t, None).is_ok());
            assert_eq!(
                ok.then_some(out),
                general(&t),
                "{}",
                String::from_utf8_lossy(&t)
            );
            valid += usize::from(ok);
        }
        assert!(valid > 5_000, "{valid}");
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(y, i64::from(m), i64::from(d)),
                days,
                "days {days}"
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
    }

    #[test]
    fn compact_json_drops_only_insignificant_whitespace() {
        let (out, ()) = json_out::to_vec(8, |out| {
            write_compact_json(out, b"{ \"a b\" : [1, 2,\n 3], \"c\":\"x\\\" y\" }");
        });
        assert_eq!(out, b"{\"a b\":[1,2,3],\"c\":\"x\\\" y\"}");
    }

    #[test]
    fn recycled_entries_keep_their_allocation() {
        let mut v: Vec<Entry<'static>> = Vec::with_capacity(32);
        let cap = v.capacity();
        let raw: &'static RawValue = serde_json::from_str("1").expect("valid JSON");
        v.push((Cow::Borrowed("k"), raw));
        let short: Vec<Entry<'_>> = recycle(v);
        assert!(short.is_empty() && short.capacity() >= cap);
    }
}

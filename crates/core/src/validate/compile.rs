//! Compiling a template for one file: which column feeds which field, the JSON bytes of every output key,
//! enum spellings; and binding a CSV header to the fields.

use std::collections::HashMap;

use super::enums::{ascii_lower, short_word, EnumValue, WordIndex};
use super::json_string::write_json_string;
use super::write::WINDOW;
use super::{Kind, Plan, Shape, TemplateMismatch, Validator, NO_ENTRY};
use crate::json_out;
use crate::read::Fields;
use crate::template::{normalize_column, FieldType, Template, UnknownColumns};
use crate::Format;

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
}

/// The JSON key bytes `,"name":`.
pub(super) fn json_key(name: &str) -> Box<[u8]> {
    let (key, _) = json_out::to_vec(name.len() + 64, |out| {
        out.push(b',');
        // A `str` is valid UTF-8, so escaping cannot fail.
        let _ = write_json_string(out, name.as_bytes());
        out.push(b':');
    });
    key.into_boxed_slice()
}

/// `text` as a JSON string literal (a `str` is valid UTF-8, so escaping cannot fail).
pub(super) fn json_string_literal(text: &str) -> Vec<u8> {
    json_out::to_vec(text.len() + 64, |out| {
        write_json_string(out, text.as_bytes())
    })
    .0
}

/// The quoted name inside a `,"name":` key (escaped form; equal to the name when it needs no escaping).
pub(super) fn field_name(key: &[u8]) -> &[u8] {
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

/// `key` followed by zeros, when it fits.
fn padded(key: &[u8]) -> Option<[u8; WINDOW + 1]> {
    let mut block = [0u8; WINDOW + 1];
    block.get_mut(..key.len())?.copy_from_slice(key);
    Some(block).filter(|_| key.len() <= WINDOW)
}

//! The Parquet schema of a connector's output: one column per template field, typed from the template, then
//! the lineage columns the other destinations write.
//!
//! | template type | Parquet physical type | logical type | Athena / Hive |
//! |---|---|---|---|
//! | `string`, `enum` | BYTE_ARRAY (dictionary encoded) | STRING | `string` |
//! | `json` | BYTE_ARRAY | JSON | `string` |
//! | `integer` | INT64 | — | `bigint` |
//! | `decimal(p,s)`, p ≤ 9 | INT32 | DECIMAL(p,s) | `decimal(p,s)` |
//! | `decimal(p,s)`, p ≤ 18 | INT64 | DECIMAL(p,s) | `decimal(p,s)` |
//! | `decimal(p,s)`, p ≤ 38 | FIXED_LEN_BYTE_ARRAY (fewest bytes holding p digits) | DECIMAL(p,s) | `decimal(p,s)` |
//! | `boolean` | BOOLEAN | — | `boolean` |
//! | `date` | INT32 (days since 1970-01-01) | DATE | `date` |
//! | `timestamp` | INT64 (µs since the epoch) | TIMESTAMP(MICROS, UTC) | `timestamp` |
//!
//! A required field is a REQUIRED column, any other OPTIONAL. A decimal needs a `scale` (a Parquet decimal has a
//! fixed one); without a `precision` it is 38 digits, the most a template may declare.
//!
//! Lineage columns, named as in the records table and the PostgreSQL table: `_source_key` (STRING),
//! `_source_etag` (STRING, quoted as S3 gives it), `_source_last_modified` and `_imported_at` (TIMESTAMP(MICROS,
//! UTC)), `_source_row` (INT64, the record number), and `_extra` (JSON, nullable): the keys a row has beyond
//! the template's fields (`unknown_columns = "keep"`) as one JSON object.

use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::schema::types::{Type, TypePtr};
use s3_importer_core::template::{FieldType, Template, MAX_DECIMAL_PRECISION};

use super::ParquetError;

/// Source key lineage column.
pub const SOURCE_KEY: &str = "_source_key";
/// Source ETag lineage column.
pub const SOURCE_ETAG: &str = "_source_etag";
/// Source LastModified lineage column.
pub const SOURCE_LAST_MODIFIED: &str = "_source_last_modified";
/// Record number lineage column.
pub const SOURCE_ROW: &str = "_source_row";
/// Import time lineage column.
pub const IMPORTED_AT: &str = "_imported_at";
/// The row's keys outside the template, as a JSON object.
pub const EXTRA: &str = "_extra";
/// Columns the importer writes itself, in file order after the template's fields.
pub const LINEAGE: [&str; 6] = [
    SOURCE_KEY,
    SOURCE_ETAG,
    SOURCE_LAST_MODIFIED,
    SOURCE_ROW,
    IMPORTED_AT,
    EXTRA,
];

/// How one column's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// UTF-8 text (string, enum): BYTE_ARRAY STRING.
    Text,
    /// JSON text: BYTE_ARRAY JSON.
    Json,
    /// INT64.
    Int64,
    /// BOOLEAN.
    Boolean,
    /// INT32 DATE.
    Date,
    /// INT64 TIMESTAMP(MICROS, UTC).
    Timestamp,
    /// An exact decimal of `precision` digits, `scale` of them after the point.
    Decimal {
        /// Total digits (1 to 38).
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
}

/// One column of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name (the field's output name).
    pub name: String,
    /// How values are stored.
    pub kind: ColumnKind,
    /// REQUIRED (never null) or OPTIONAL.
    pub required: bool,
}

/// The columns of a template's output, in file order: its fields, then [`LINEAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSchema {
    /// Every column.
    pub columns: Vec<Column>,
    /// How many of them are template fields (the first ones).
    pub fields: usize,
}

impl OutputSchema {
    /// The output columns of `template`; fails on a field Parquet cannot hold exactly (a decimal without a
    /// scale) or named like a lineage column.
    pub fn of(template: &Template) -> Result<Self, ParquetError> {
        let mut columns = Vec::with_capacity(template.fields.len() + LINEAGE.len());
        for field in &template.fields {
            if LINEAGE.contains(&field.name.as_str()) {
                return Err(ParquetError::Field {
                    field: field.name.clone(),
                    reason: "the name is a lineage column the importer writes".into(),
                });
            }
            let kind = match &field.field_type {
                FieldType::String { .. } | FieldType::Enum { .. } => ColumnKind::Text,
                FieldType::Json => ColumnKind::Json,
                FieldType::Integer { .. } => ColumnKind::Int64,
                FieldType::Boolean => ColumnKind::Boolean,
                FieldType::Date { .. } => ColumnKind::Date,
                FieldType::Timestamp { .. } => ColumnKind::Timestamp,
                FieldType::Decimal { precision, scale } => {
                    let precision = precision.unwrap_or(MAX_DECIMAL_PRECISION);
                    let scale = scale.ok_or_else(|| ParquetError::Field {
                        field: field.name.clone(),
                        reason: "a decimal written to Parquet needs a `scale` (Parquet decimals have a fixed one)"
                            .into(),
                    })?;
                    if precision == 0 || precision > MAX_DECIMAL_PRECISION || scale > precision {
                        return Err(ParquetError::Field {
                            field: field.name.clone(),
                            reason: format!(
                                "decimal({precision},{scale}) is not a Parquet decimal"
                            ),
                        });
                    }
                    ColumnKind::Decimal { precision, scale }
                }
            };
            columns.push(Column {
                name: field.name.clone(),
                kind,
                required: field.required,
            });
        }
        let fields = columns.len();
        let lineage = [
            (SOURCE_KEY, ColumnKind::Text, true),
            (SOURCE_ETAG, ColumnKind::Text, true),
            (SOURCE_LAST_MODIFIED, ColumnKind::Timestamp, true),
            (SOURCE_ROW, ColumnKind::Int64, true),
            (IMPORTED_AT, ColumnKind::Timestamp, true),
            (EXTRA, ColumnKind::Json, false),
        ];
        columns.extend(lineage.into_iter().map(|(name, kind, required)| Column {
            name: name.to_owned(),
            kind,
            required,
        }));
        Ok(Self { columns, fields })
    }

    /// The Parquet message type.
    pub fn parquet_type(&self) -> Result<TypePtr, ParquetError> {
        let fields = self
            .columns
            .iter()
            .map(|c| parquet_column(c).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Type::group_type_builder("s3_importer")
            .with_fields(fields)
            .build()
            .map(Arc::new)
            .map_err(|e| ParquetError::Schema(e.to_string()))
    }
}

impl OutputSchema {
    /// The Parquet message type as text (`message s3_importer { REQUIRED BYTE_ARRAY id (STRING); … }`).
    pub fn message_text(&self) -> Result<String, ParquetError> {
        let mut text = Vec::new();
        parquet::schema::printer::print_schema(&mut text, self.parquet_type()?.as_ref());
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

/// Bytes of the FIXED_LEN_BYTE_ARRAY holding any `precision`-digit unscaled value (two's complement).
pub fn decimal_bytes(precision: u32) -> usize {
    // n bytes hold every value of floor(log10(2^(8n-1) - 1)) digits.
    (1..=16usize)
        .find(|&n| {
            let bits = 8 * n as i32 - 1;
            (f64::from(bits) * std::f64::consts::LOG10_2).floor() >= f64::from(precision)
        })
        .unwrap_or(16)
}

fn parquet_column(c: &Column) -> Result<Type, ParquetError> {
    let repetition = if c.required {
        Repetition::REQUIRED
    } else {
        Repetition::OPTIONAL
    };
    let (physical, logical) = match c.kind {
        ColumnKind::Text => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
        ColumnKind::Json => (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
        ColumnKind::Int64 => (PhysicalType::INT64, None),
        ColumnKind::Boolean => (PhysicalType::BOOLEAN, None),
        ColumnKind::Date => (PhysicalType::INT32, Some(LogicalType::Date)),
        ColumnKind::Timestamp => (
            PhysicalType::INT64,
            Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
        ),
        ColumnKind::Decimal { precision, scale } => {
            let physical = match precision {
                ..=9 => PhysicalType::INT32,
                10..=18 => PhysicalType::INT64,
                _ => PhysicalType::FIXED_LEN_BYTE_ARRAY,
            };
            let to_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
            let mut builder = Type::primitive_type_builder(&c.name, physical)
                .with_repetition(repetition)
                .with_logical_type(Some(LogicalType::decimal(to_i32(scale), to_i32(precision))))
                .with_precision(to_i32(precision))
                .with_scale(to_i32(scale));
            if physical == PhysicalType::FIXED_LEN_BYTE_ARRAY {
                builder = builder.with_length(to_i32(decimal_bytes(precision) as u32));
            }
            return builder.build().map_err(|e| ParquetError::Field {
                field: c.name.clone(),
                reason: e.to_string(),
            });
        }
    };
    Type::primitive_type_builder(&c.name, physical)
        .with_repetition(repetition)
        .with_logical_type(logical)
        .build()
        .map_err(|e| ParquetError::Field {
            field: c.name.clone(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::schema::printer::print_schema;

    fn template(fields: &str) -> Template {
        Template::from_toml(&format!("name = \"t\"\n{fields}")).expect("valid template")
    }

    #[test]
    fn decimal_widths_are_the_fewest_bytes_for_the_precision() {
        // The table from the Parquet format's DECIMAL section.
        for (precision, bytes) in [
            (1, 1),
            (2, 1),
            (3, 2),
            (4, 2),
            (9, 4),
            (18, 8),
            (19, 9),
            (38, 16),
        ] {
            assert_eq!(decimal_bytes(precision), bytes, "precision {precision}");
        }
    }

    #[test]
    fn template_types_map_to_parquet_types() -> Result<(), ParquetError> {
        let t = template(
            "[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
             [[fields]]\nname = \"kind\"\ntype = \"enum\"\nvalues = [\"a\"]\n\
             [[fields]]\nname = \"n\"\ntype = \"integer\"\n\
             [[fields]]\nname = \"small\"\ntype = \"decimal\"\nprecision = 9\nscale = 2\n\
             [[fields]]\nname = \"mid\"\ntype = \"decimal\"\nprecision = 18\nscale = 4\n\
             [[fields]]\nname = \"big\"\ntype = \"decimal\"\nprecision = 38\nscale = 10\n\
             [[fields]]\nname = \"ok\"\ntype = \"boolean\"\n\
             [[fields]]\nname = \"day\"\ntype = \"date\"\n\
             [[fields]]\nname = \"at\"\ntype = \"timestamp\"\n\
             [[fields]]\nname = \"doc\"\ntype = \"json\"\n",
        );
        let schema = OutputSchema::of(&t)?;
        assert_eq!(schema.fields, 10);
        let mut text = Vec::new();
        print_schema(&mut text, schema.parquet_type()?.as_ref());
        let text = String::from_utf8_lossy(&text);
        for line in [
            "REQUIRED BYTE_ARRAY id (STRING);",
            "OPTIONAL BYTE_ARRAY kind (STRING);",
            "OPTIONAL INT64 n;",
            "OPTIONAL INT32 small (DECIMAL(9,2));",
            "OPTIONAL INT64 mid (DECIMAL(18,4));",
            "OPTIONAL FIXED_LEN_BYTE_ARRAY (16) big (DECIMAL(38,10));",
            "OPTIONAL BOOLEAN ok;",
            "OPTIONAL INT32 day (DATE);",
            "OPTIONAL INT64 at (TIMESTAMP(MICROS,true));",
            "OPTIONAL BYTE_ARRAY doc (JSON);",
            "REQUIRED BYTE_ARRAY _source_key (STRING);",
            "REQUIRED BYTE_ARRAY _source_etag (STRING);",
            "REQUIRED INT64 _source_last_modified (TIMESTAMP(MICROS,true));",
            "REQUIRED INT64 _source_row;",
            "REQUIRED INT64 _imported_at (TIMESTAMP(MICROS,true));",
            "OPTIONAL BYTE_ARRAY _extra (JSON);",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        Ok(())
    }

    #[test]
    fn a_decimal_without_scale_or_a_lineage_name_is_refused_with_the_field() {
        let no_scale =
            template("[[fields]]\nname = \"amount\"\ntype = \"decimal\"\nprecision = 10\n");
        let err = OutputSchema::of(&no_scale).expect_err("no scale");
        assert!(
            err.to_string().contains("amount") && err.to_string().contains("scale"),
            "{err}"
        );
        let lineage = template("[[fields]]\nname = \"_source_row\"\ntype = \"integer\"\n");
        let err = OutputSchema::of(&lineage).expect_err("reserved");
        assert!(err.to_string().contains("_source_row"), "{err}");
        let unbounded = template("[[fields]]\nname = \"x\"\ntype = \"decimal\"\nscale = 2\n");
        assert_eq!(
            OutputSchema::of(&unbounded).map(|s| s.columns[0].kind).ok(),
            Some(ColumnKind::Decimal {
                precision: 38,
                scale: 2
            })
        );
    }
}

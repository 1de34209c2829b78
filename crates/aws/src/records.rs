//! The DynamoDB records table: its key schema, and the pure mapping from a validated row to an item.
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` (partition key, no sort key) | S | `<connector_id>#<primary key values joined by '#'>`, each value with `\` and `#` escaped by `\` |
//! | `connector_id` | S | the connector |
//! | each field | by template type | integer and decimal → N (exact text), string/enum/date/timestamp → S, boolean → BOOL, json → S (the JSON text), null → NULL |
//! | `_source_key` | S | source object key |
//! | `_source_etag` | S | source ETag, quoted as S3 returns it |
//! | `_source_last_modified` | N | source LastModified, epoch milliseconds: the ordering guard compares it |
//! | `_source_row` | N | record number in the source file (1-based) |
//! | `_imported_at` | S | RFC 3339 time of the import |
//!
//! `json` fields are stored as their JSON text, not as M/L: the text round-trips exactly, while a DynamoDB
//! number holds 38 digits and a limited exponent, so a native map could fail on valid JSON.
//!
//! A template without a primary key cannot upsert by key: its rows are keyed by file version and record
//! (`<connector_id>#<sha256(source key), 32 hex>#<etag>#<record>`), so a retried file rewrites the same items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use s3_importer_core::template::{FieldType, Template};
use s3_importer_core::Position;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::AwsCallError;

/// The partition key attribute.
pub const PK: &str = "pk";
/// The connector attribute.
pub const CONNECTOR_ID: &str = "connector_id";
/// Source key lineage attribute.
pub const SOURCE_KEY: &str = "_source_key";
/// Source ETag lineage attribute.
pub const SOURCE_ETAG: &str = "_source_etag";
/// Source LastModified lineage attribute (epoch millis): the ordering guard.
pub const SOURCE_LAST_MODIFIED: &str = "_source_last_modified";
/// Source record number lineage attribute.
pub const SOURCE_ROW: &str = "_source_row";
/// Import time lineage attribute.
pub const IMPORTED_AT: &str = "_imported_at";
/// Attributes the importer writes itself; a template field may not use these names.
pub const RESERVED: &[&str] = &[
    PK,
    CONNECTOR_ID,
    SOURCE_KEY,
    SOURCE_ETAG,
    SOURCE_LAST_MODIFIED,
    SOURCE_ROW,
    IMPORTED_AT,
];

/// DynamoDB's item size limit (400 KB, counted as 1024-byte KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// What every item of one file shares.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// Connector id.
    pub connector_id: String,
    /// Source key.
    pub source_key: String,
    /// Source ETag (quoted).
    pub source_etag: String,
    /// Source LastModified, epoch milliseconds.
    pub source_last_modified_ms: i64,
    /// Import time, RFC 3339.
    pub imported_at: String,
}

/// A row that cannot become an item.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The row is not a JSON object (a bug upstream: rows come validated).
    #[error("record {}, line {}: row is not a JSON object: {source}", position.record, position.line)]
    InvalidRow {
        /// Where.
        position: Position,
        /// Parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The item would exceed DynamoDB's item size limit.
    #[error(
        "record {}, line {}: the item is about {size} bytes, over DynamoDB's {limit}-byte (400 KB) item limit",
        position.record, position.line
    )]
    TooLarge {
        /// Where.
        position: Position,
        /// Estimated size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// A template field uses an attribute name the importer reserves.
#[derive(Debug, thiserror::Error)]
#[error("template field {field:?} uses an attribute name reserved by the records table ({}); rename the field", RESERVED.join(", "))]
pub struct ReservedField {
    /// The field.
    pub field: String,
}

/// Checks that no template field collides with a [`RESERVED`] attribute.
pub fn check_template(template: &Template) -> Result<(), ReservedField> {
    match template
        .fields
        .iter()
        .find(|f| RESERVED.contains(&f.name.as_str()))
    {
        Some(f) => Err(ReservedField {
            field: f.name.clone(),
        }),
        None => Ok(()),
    }
}

/// An item ready to put.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordItem {
    /// Its partition key.
    pub pk: String,
    /// Every attribute, `pk` included.
    pub item: HashMap<String, AttributeValue>,
    /// The row's position in its file.
    pub position: Position,
}

/// Appends `part` with `\` and `#` escaped by a backslash, so distinct key tuples give distinct strings
/// (`("a#b", "c")` and `("a", "b#c")` must not collide).
pub fn escape_key_part(part: &str, out: &mut String) {
    for c in part.chars() {
        if c == '\\' || c == '#' {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `<connector_id>#<part>#<part>...`, parts escaped by [`escape_key_part`].
pub fn record_pk<'a>(connector_id: &str, parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut pk = String::with_capacity(connector_id.len() + 32);
    pk.push_str(connector_id);
    for part in parts {
        pk.push('#');
        escape_key_part(part, &mut pk);
    }
    pk
}

/// The text of a JSON value inside a key: strings unquoted, null and missing empty, anything else as JSON.
fn key_text(raw: Option<&RawValue>) -> String {
    let Some(raw) = raw else { return String::new() };
    let text = raw.get();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned())
    } else if text == "null" {
        String::new()
    } else {
        text.to_owned()
    }
}

/// A JSON value as an attribute, by the field's template type (`None` for columns kept from the file).
fn attribute(raw: &RawValue, field_type: Option<&FieldType>) -> AttributeValue {
    let text = raw.get();
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    if text == "null" {
        return AttributeValue::Null(true);
    }
    match (field_type, first) {
        // Decimals arrive as JSON strings of their digits: exact text into N.
        (Some(FieldType::Decimal { .. } | FieldType::Integer { .. }), b'"') => {
            match serde_json::from_str::<String>(text) {
                Ok(digits) => AttributeValue::N(digits),
                Err(_) => AttributeValue::S(text.to_owned()),
            }
        }
        // Embedded JSON keeps its text.
        (Some(FieldType::Json), _) => AttributeValue::S(text.to_owned()),
        (_, b'"') => AttributeValue::S(
            serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned()),
        ),
        (_, b't') => AttributeValue::Bool(true),
        (_, b'f') => AttributeValue::Bool(false),
        // The number's own text: exact, never through a float.
        (_, b'-' | b'0'..=b'9') => AttributeValue::N(text.to_owned()),
        _ => AttributeValue::S(text.to_owned()),
    }
}

/// Maps one validated row (a JSON object) to its item.
pub fn row_to_item(
    template: &Template,
    lineage: &Lineage,
    position: Position,
    row: &[u8],
) -> Result<RecordItem, RecordError> {
    let fields: HashMap<String, &RawValue> = serde_json::from_slice(row)
        .map_err(|source| RecordError::InvalidRow { position, source })?;

    let pk = if template.primary_key.is_empty() {
        let digest = Sha256::digest(lineage.source_key.as_bytes());
        let key_hash = hex::encode(&digest[..16]);
        let record = position.record.to_string();
        record_pk(
            &lineage.connector_id,
            [
                key_hash.as_str(),
                lineage.source_etag.trim_matches('"'),
                record.as_str(),
            ],
        )
    } else {
        let texts: Vec<String> = template
            .primary_key
            .iter()
            .map(|name| key_text(fields.get(name.as_str()).copied()))
            .collect();
        record_pk(&lineage.connector_id, texts.iter().map(String::as_str))
    };

    let mut item = HashMap::with_capacity(fields.len() + RESERVED.len());
    for (name, raw) in &fields {
        // DynamoDB rejects empty attribute names; only a kept unknown column can have one.
        if name.is_empty() {
            continue;
        }
        let field_type = template.field(name).map(|f| &f.field_type);
        item.insert(name.clone(), attribute(raw, field_type));
    }
    // Lineage last: a kept unknown column cannot overwrite it.
    item.insert(PK.to_owned(), AttributeValue::S(pk.clone()));
    item.insert(
        CONNECTOR_ID.to_owned(),
        AttributeValue::S(lineage.connector_id.clone()),
    );
    item.insert(
        SOURCE_KEY.to_owned(),
        AttributeValue::S(lineage.source_key.clone()),
    );
    item.insert(
        SOURCE_ETAG.to_owned(),
        AttributeValue::S(lineage.source_etag.clone()),
    );
    item.insert(
        SOURCE_LAST_MODIFIED.to_owned(),
        AttributeValue::N(lineage.source_last_modified_ms.to_string()),
    );
    item.insert(
        SOURCE_ROW.to_owned(),
        AttributeValue::N(position.record.to_string()),
    );
    item.insert(
        IMPORTED_AT.to_owned(),
        AttributeValue::S(lineage.imported_at.clone()),
    );

    let size = item_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(RecordError::TooLarge {
            position,
            size,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(RecordItem { pk, item, position })
}

/// DynamoDB's item size: attribute names plus values (strings by UTF-8 length, numbers about one byte per two
/// digits plus one, booleans and nulls one byte).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// Creates the records table `name` (partition key `pk` S, on-demand) and waits until it is active. An
/// existing table is fine (idempotent).
pub async fn create_records_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<(), AwsCallError> {
    let key = KeySchemaElement::builder()
        .attribute_name(PK)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| AwsCallError::construction(e.to_string()))?;
    let attribute = AttributeDefinition::builder()
        .attribute_name(PK)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| AwsCallError::construction(e.to_string()))?;
    let created = client
        .create_table()
        .table_name(name)
        .key_schema(key)
        .attribute_definitions(attribute)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) => {
            let err = AwsCallError::from_sdk(e);
            if err.code() != "ResourceInUseException" {
                return Err(err);
            }
        }
    }
    // Tables take a few seconds to become ACTIVE on AWS (at once on the emulator).
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(AwsCallError::from_sdk)?;
        if out.table().and_then(|t| t.table_status())
            == Some(&aws_sdk_dynamodb::types::TableStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(AwsCallError::construction(format!(
        "table {name} did not become ACTIVE within 60 s"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(primary_key: &[&str]) -> Template {
        let toml = format!(
            r#"
name = "t"
primary_key = [{}]
[[fields]]
name = "id"
type = "string"
required = true
[[fields]]
name = "region"
type = "string"
required = true
[[fields]]
name = "qty"
type = "integer"
[[fields]]
name = "price"
type = "decimal"
scale = 2
[[fields]]
name = "ok"
type = "boolean"
[[fields]]
name = "meta"
type = "json"
"#,
            primary_key
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Template::from_toml(&toml).expect("test template is valid")
    }

    fn lineage() -> Lineage {
        Lineage {
            connector_id: "c-1".to_owned(),
            source_key: "in/a.csv".to_owned(),
            source_etag: "\"e1\"".to_owned(),
            source_last_modified_ms: 1_700_000_000_000,
            imported_at: "2024-01-01T00:00:00Z".to_owned(),
        }
    }

    fn pos(record: u64) -> Position {
        Position {
            record,
            line: record + 1,
            byte: 0,
        }
    }

    #[test]
    fn key_parts_are_escaped_so_tuples_never_collide() {
        assert_eq!(record_pk("c", ["a#b", "c"]), r"c#a\#b#c");
        assert_eq!(record_pk("c", ["a", "b#c"]), r"c#a#b\#c");
        assert_eq!(record_pk("c", [r"a\", "b"]), r"c#a\\#b");
        assert_ne!(record_pk("c", [r"a\", "#b"]), record_pk("c", [r"a\#", "b"]));
    }

    #[test]
    fn fields_map_by_template_type() -> Result<(), RecordError> {
        let row = br#"{"id":"x#1","region":"eu","qty":12345678901234,"price":"10.50","ok":true,"meta":{"a":[1,2.5]},"extra":null}"#;
        let r = row_to_item(&template(&["id", "region"]), &lineage(), pos(7), row)?;
        assert_eq!(r.pk, r"c-1#x\#1#eu");
        let get = |k: &str| r.item.get(k).cloned();
        assert_eq!(get("pk"), Some(AttributeValue::S(r.pk.clone())));
        assert_eq!(get("qty"), Some(AttributeValue::N("12345678901234".into())));
        assert_eq!(get("price"), Some(AttributeValue::N("10.50".into())));
        assert_eq!(get("ok"), Some(AttributeValue::Bool(true)));
        assert_eq!(
            get("meta"),
            Some(AttributeValue::S(r#"{"a":[1,2.5]}"#.into()))
        );
        assert_eq!(get("extra"), Some(AttributeValue::Null(true)));
        assert_eq!(get("_source_row"), Some(AttributeValue::N("7".into())));
        assert_eq!(
            get("_source_last_modified"),
            Some(AttributeValue::N("1700000000000".into()))
        );
        assert_eq!(
            get("_source_etag"),
            Some(AttributeValue::S("\"e1\"".into()))
        );
        assert_eq!(get("connector_id"), Some(AttributeValue::S("c-1".into())));
        Ok(())
    }

    #[test]
    fn rows_without_a_primary_key_are_keyed_by_file_version_and_record() -> Result<(), RecordError>
    {
        let r = row_to_item(&template(&[]), &lineage(), pos(3), br#"{"id":"a"}"#)?;
        assert!(
            r.pk.starts_with("c-1#") && r.pk.ends_with("#e1#3"),
            "{}",
            r.pk
        );
        Ok(())
    }

    #[test]
    fn an_item_over_400_kb_is_rejected_with_its_position() {
        let big = "x".repeat(MAX_ITEM_BYTES);
        let row = format!(r#"{{"id":"1","region":"{big}"}}"#);
        match row_to_item(&template(&["id"]), &lineage(), pos(9), row.as_bytes()) {
            Err(e @ RecordError::TooLarge { .. }) => {
                assert!(e.to_string().contains("line 10"), "{e}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn reserved_field_names_are_refused() {
        let t = Template::from_toml("name = \"t\"\n[[fields]]\nname = \"pk\"\ntype = \"string\"\n")
            .expect("valid");
        assert!(check_template(&t).is_err());
        assert!(check_template(&template(&["id"])).is_ok());
    }
}

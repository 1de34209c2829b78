//! The statements of the write path that depend on the template: the merge of a file version's staged rows
//! into its table (with the ordering guard), and the COPY text encoding of staged rows.

use s3_importer_core::template::Template;

use crate::ddl::{
    column_type, conflict_key, quote_ident, TableRef, IMPORTER_SCHEMA, LINEAGE,
    SOURCE_LAST_MODIFIED,
};

/// `INSERT … SELECT … ON CONFLICT` of one file version's staged rows into `table`.
///
/// Parameters: `$1` the staging id, `$2` the source key, `$3` the ETag, `$4` the source LastModified.
/// Each staged `jsonb` row becomes the template's typed columns through `jsonb_to_record`, so the server
/// parses every value itself (decimals from their exact text). With a primary key, the last row of each key in
/// file order is kept (`DISTINCT ON … ORDER BY record DESC`: one statement cannot update a row twice), and an
/// existing row is replaced only when it is not newer: `_source_last_modified` NULL (not written by the
/// importer) or `<=` this file's, so equal times let the later write win, as in the DynamoDB records table.
/// Without a primary key, rows are appended and a row already there for the same (file version, record) is
/// left alone.
pub fn merge_sql(template: &Template, table: &TableRef) -> String {
    let fields: Vec<String> = template
        .fields
        .iter()
        .map(|f| quote_ident(&f.name))
        .collect();
    let lineage: Vec<String> = LINEAGE.iter().map(|(n, _)| quote_ident(n)).collect();
    let definitions = template
        .fields
        .iter()
        .map(|f| format!("{} {}", quote_ident(&f.name), column_type(&f.field_type)))
        .collect::<Vec<_>>()
        .join(", ");
    let selected = fields
        .iter()
        .map(|f| format!("x.{f}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key: Vec<String> = conflict_key(template)
        .iter()
        .map(|c| quote_ident(c))
        .collect();
    let (distinct, order, conflict) = if template.primary_key.is_empty() {
        (
            String::new(),
            "s.record".to_owned(),
            format!("ON CONFLICT ({}) DO NOTHING", key.join(", ")),
        )
    } else {
        let x_key = key
            .iter()
            .map(|k| format!("x.{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let updates = template
            .fields
            .iter()
            .filter(|f| !template.primary_key.contains(&f.name))
            .map(|f| quote_ident(&f.name))
            .chain(lineage.iter().cloned())
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let guard = quote_ident(SOURCE_LAST_MODIFIED);
        (
            format!("DISTINCT ON ({x_key}) "),
            format!("{x_key}, s.record DESC"),
            format!(
                "ON CONFLICT ({}) DO UPDATE SET {updates} \
                 WHERE t.{guard} IS NULL OR t.{guard} <= EXCLUDED.{guard}",
                key.join(", ")
            ),
        )
    };
    let separator = if fields.is_empty() { "" } else { ", " };
    format!(
        "INSERT INTO {table} AS t ({fields}{separator}{lineage}) \
         SELECT {distinct}{selected}{separator}$2::text, $3::text, $4::timestamptz, s.record, now() \
         FROM {schema}.staged_rows s CROSS JOIN LATERAL jsonb_to_record(s.row) AS x({definitions}) \
         WHERE s.version = $1 ORDER BY {order} {conflict}",
        table = table.quoted(),
        fields = fields.join(", "),
        lineage = lineage.join(", "),
        schema = quote_ident(IMPORTER_SCHEMA),
    )
}

/// Appends `text` as one field of PostgreSQL's COPY text format: backslash, newline, carriage return and
/// tab escaped by a backslash (validated rows are compact JSON, so only backslashes occur in practice).
pub fn push_copy_field(out: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_the_text_format_reads_specially() {
        let cases: [(&[u8], &[u8]); 4] = [
            (br#"{"a":1}"#, br#"{"a":1}"#),
            (br#"{"a":"x\"y\\z"}"#, br#"{"a":"x\\"y\\\\z"}"#),
            (b"a\tb\nc\rd", b"a\\tb\\nc\\rd"),
            (b"", b""),
        ];
        for (input, want) in cases {
            let mut out = b"prefix|".to_vec();
            push_copy_field(&mut out, input);
            assert_eq!(
                String::from_utf8_lossy(&out[7..]),
                String::from_utf8_lossy(want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn the_merge_guards_on_last_modified_with_a_key_and_appends_without() -> Result<(), String> {
        let keyed = Template::from_toml(
            "name = \"o\"\nprimary_key = [\"id\"]\n[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
             [[fields]]\nname = \"qty\"\ntype = \"integer\"\n",
        )
        .map_err(|e| e.to_string())?;
        let sql = merge_sql(&keyed, &TableRef::new("public", "o"));
        for part in [
            "SELECT DISTINCT ON (x.\"id\") x.\"id\", x.\"qty\", $2::text",
            "jsonb_to_record(s.row) AS x(\"id\" text, \"qty\" bigint)",
            "ORDER BY x.\"id\", s.record DESC",
            "ON CONFLICT (\"id\") DO UPDATE SET \"qty\" = EXCLUDED.\"qty\", \"_source_key\" = EXCLUDED.\"_source_key\"",
            "WHERE t.\"_source_last_modified\" IS NULL OR t.\"_source_last_modified\" <= EXCLUDED.\"_source_last_modified\"",
        ] {
            assert!(sql.contains(part), "{part:?} not in\n{sql}");
        }
        let append =
            Template::from_toml("name = \"l\"\n[[fields]]\nname = \"m\"\ntype = \"string\"\n")
                .map_err(|e| e.to_string())?;
        let sql = merge_sql(&append, &TableRef::new("public", "l"));
        assert!(sql.ends_with(
            "ORDER BY s.record ON CONFLICT (\"_source_key\", \"_source_etag\", \"_source_row\") DO NOTHING"
        ), "{sql}");
        assert!(!sql.contains("DISTINCT"), "{sql}");
        Ok(())
    }
}

//! The statements of the write path that depend on the template: the merge of a file version's staging
//! table into its table, with the ordering guard, in a fast form and a general one.

use s3_importer_core::template::Template;

use crate::ddl::{conflict_key, quote_ident, TableRef, LINEAGE, SOURCE_LAST_MODIFIED};

/// Parameters of both statements: `$1` the source key, `$2` the ETag, `$3` the source LastModified.
fn lineage_values() -> &'static str {
    "$1::text, $2::text, $3::timestamptz, s.record, now()"
}

fn columns(template: &Template) -> (String, String) {
    let fields: Vec<String> = template
        .fields
        .iter()
        .map(|f| quote_ident(&f.name))
        .chain(LINEAGE.iter().map(|(n, _)| quote_ident(n)))
        .collect();
    let selected: Vec<String> = template
        .fields
        .iter()
        .map(|f| format!("s.{}", quote_ident(&f.name)))
        .chain(std::iter::once(lineage_values().to_owned()))
        .collect();
    (fields.join(", "), selected.join(", "))
}

/// The fast merge: a plain `INSERT … SELECT` of every staged row, without `ON CONFLICT` (whose speculative
/// insertion costs about as much again per row) and without sorting. With a primary key, staged rows whose
/// key is already in the table are left out (`NOT EXISTS`), so the statement inserts every staged row
/// exactly when all the file's keys are new and distinct; otherwise it inserts fewer rows, or fails with a
/// unique violation (a key twice in the file, or inserted by a concurrent transaction), and the caller rolls
/// it back and runs [`merge_sql`]. Without a primary key it appends every row (a unique violation means the
/// file version's rows are there already: the general form leaves them).
pub fn insert_sql(template: &Template, table: &TableRef, stage: &str) -> String {
    let (fields, selected) = columns(template);
    let table = table.quoted();
    let unless_present = if template.primary_key.is_empty() {
        String::new()
    } else {
        let matches = template
            .primary_key
            .iter()
            .map(|k| format!("x.{k} = s.{k}", k = quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(" WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE {matches})")
    };
    format!("INSERT INTO {table} ({fields}) SELECT {selected} FROM {stage} s{unless_present}")
}

/// The general merge: `INSERT … SELECT … ON CONFLICT` of one file version's staged rows into `table`.
///
/// With a primary key, the last row of each key in file order is kept (`DISTINCT ON … ORDER BY record
/// DESC`: one statement cannot update a row twice), and an existing row is replaced only when it is not
/// newer: `_source_last_modified` NULL (not written by the importer) or `<=` this file's, so equal times let
/// the later write win, as in the DynamoDB records table. Without a primary key, rows are appended and a row
/// already there for the same (file version, record) is left alone.
pub fn merge_sql(template: &Template, table: &TableRef, stage: &str) -> String {
    let (fields, selected) = columns(template);
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
        let s_key = key
            .iter()
            .map(|k| format!("s.{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let updates = template
            .fields
            .iter()
            .filter(|f| !template.primary_key.contains(&f.name))
            .map(|f| quote_ident(&f.name))
            .chain(LINEAGE.iter().map(|(n, _)| quote_ident(n)))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let guard = quote_ident(SOURCE_LAST_MODIFIED);
        (
            format!("DISTINCT ON ({s_key}) "),
            format!("{s_key}, s.record DESC"),
            format!(
                "ON CONFLICT ({}) DO UPDATE SET {updates} \
                 WHERE t.{guard} IS NULL OR t.{guard} <= EXCLUDED.{guard}",
                key.join(", ")
            ),
        )
    };
    format!(
        "INSERT INTO {table} AS t ({fields}) SELECT {distinct}{selected} FROM {stage} s ORDER BY {order} {conflict}",
        table = table.quoted(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_guards_on_last_modified_with_a_key_and_appends_without() -> Result<(), String> {
        let keyed = Template::from_toml(
            "name = \"o\"\nprimary_key = [\"id\"]\n[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
             [[fields]]\nname = \"qty\"\ntype = \"integer\"\n",
        )
        .map_err(|e| e.to_string())?;
        let sql = merge_sql(&keyed, &TableRef::new("public", "o"), "st");
        for part in [
            "SELECT DISTINCT ON (s.\"id\") s.\"id\", s.\"qty\", $1::text",
            "FROM st s ORDER BY s.\"id\", s.record DESC",
            "ON CONFLICT (\"id\") DO UPDATE SET \"qty\" = EXCLUDED.\"qty\", \"_source_key\" = EXCLUDED.\"_source_key\"",
            "WHERE t.\"_source_last_modified\" IS NULL OR t.\"_source_last_modified\" <= EXCLUDED.\"_source_last_modified\"",
        ] {
            assert!(sql.contains(part), "{part:?} not in\n{sql}");
        }
        let append =
            Template::from_toml("name = \"l\"\n[[fields]]\nname = \"m\"\ntype = \"string\"\n")
                .map_err(|e| e.to_string())?;
        let sql = merge_sql(&append, &TableRef::new("public", "l"), "st");
        assert!(sql.ends_with(
            "ORDER BY s.record ON CONFLICT (\"_source_key\", \"_source_etag\", \"_source_row\") DO NOTHING"
        ), "{sql}");
        assert!(!sql.contains("DISTINCT"), "{sql}");
        assert_eq!(
            insert_sql(&append, &TableRef::new("public", "l"), "st"),
            "INSERT INTO \"public\".\"l\" (\"m\", \"_source_key\", \"_source_etag\", \"_source_last_modified\", \
             \"_source_row\", \"_imported_at\") SELECT s.\"m\", $1::text, $2::text, $3::timestamptz, s.record, now() \
             FROM st s"
        );
        let fast = insert_sql(&keyed, &TableRef::new("public", "o"), "st");
        assert!(
            fast.ends_with("FROM st s WHERE NOT EXISTS (SELECT 1 FROM \"public\".\"o\" x WHERE x.\"id\" = s.\"id\")"),
            "{fast}"
        );
        assert!(!fast.contains("ON CONFLICT"), "{fast}");
        Ok(())
    }
}

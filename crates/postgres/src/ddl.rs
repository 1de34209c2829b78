//! The table a template describes, and the importer's own schema.
//!
//! | template type | column type |
//! |---|---|
//! | string, enum | `text` |
//! | integer | `bigint` |
//! | decimal(p, s) | `numeric(p,s)` (`numeric(38,s)` with only a scale, `numeric` with neither) |
//! | boolean | `boolean` |
//! | date | `date` |
//! | timestamp | `timestamp with time zone` (`timestamptz`) |
//! | json | `jsonb` |
//!
//! Lineage columns follow the DynamoDB records table's names: `_source_key text`, `_source_etag text` (quoted
//! as S3 gives it), `_source_last_modified timestamptz` (an instant a SQL user can compare and read; S3
//! gives seconds, so nothing is lost against the records table's epoch milliseconds), `_source_row bigint`
//! (record number), `_imported_at timestamptz`. The template's primary key is the table's; without one, the
//! rows are keyed by file version and record: `UNIQUE (_source_key, _source_etag, _source_row)`.
//!
//! Type names are written as `format_type` prints them, so `verify` compares a column with one string.
//! Every identifier is quoted ([`quote_ident`]): a field called `order` or `"x"` is an ordinary column.

use s3_importer_core::template::{FieldType, Template, MAX_DECIMAL_PRECISION};

use crate::error::PgError;

/// The schema of the importer's own tables (`imports`, the staging tables).
pub const IMPORTER_SCHEMA: &str = "s3_importer";
/// Source key lineage column.
pub const SOURCE_KEY: &str = "_source_key";
/// Source ETag lineage column.
pub const SOURCE_ETAG: &str = "_source_etag";
/// Source LastModified lineage column (`timestamptz`): the ordering guard compares it.
pub const SOURCE_LAST_MODIFIED: &str = "_source_last_modified";
/// Record number lineage column.
pub const SOURCE_ROW: &str = "_source_row";
/// Import time lineage column.
pub const IMPORTED_AT: &str = "_imported_at";
/// The lineage columns and their types, in table order.
pub const LINEAGE: [(&str, &str); 5] = [
    (SOURCE_KEY, "text"),
    (SOURCE_ETAG, "text"),
    (SOURCE_LAST_MODIFIED, "timestamp with time zone"),
    (SOURCE_ROW, "bigint"),
    (IMPORTED_AT, "timestamp with time zone"),
];
/// The key of a table whose template has no primary key.
pub const APPEND_KEY: [&str; 3] = [SOURCE_KEY, SOURCE_ETAG, SOURCE_ROW];
/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A table, by schema and name (both unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Schema (`public` by default).
    pub schema: String,
    /// Table name.
    pub name: String,
}

impl TableRef {
    /// `schema.name`.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// A table as the CLI and the connector name it: `schema.table`, or `table` in `public`. Names are taken
    /// as written (case kept, no quotes): a dot separates the schema, so a table name cannot contain one.
    pub fn parse(spec: &str) -> Result<Self, PgError> {
        let (schema, name) = spec.split_once('.').unwrap_or(("public", spec));
        let bad = |part: &str| {
            part.is_empty() || part.contains(['.', '\0', '"']) || part.len() > MAX_IDENTIFIER_BYTES
        };
        if bad(schema) || bad(name) {
            return Err(PgError::Settings(format!(
                "{spec:?} is not a table: expected TABLE or SCHEMA.TABLE, each at most \
                 {MAX_IDENTIFIER_BYTES} bytes, without dots or double quotes"
            )));
        }
        Ok(Self::new(schema, name))
    }

    /// `"schema"."name"`, quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// An identifier quoted for SQL: in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column type of a template type, as `format_type` prints it.
pub fn column_type(field_type: &FieldType) -> String {
    match field_type {
        FieldType::String { .. } | FieldType::Enum { .. } => "text".into(),
        FieldType::Integer { .. } => "bigint".into(),
        FieldType::Decimal { precision, scale } => match (precision, scale) {
            (Some(p), Some(s)) => format!("numeric({p},{s})"),
            (None, Some(s)) => format!("numeric({MAX_DECIMAL_PRECISION},{s})"),
            // Without a scale the values keep their own digits: an unconstrained numeric keeps them all.
            (_, None) => "numeric".into(),
        },
        FieldType::Boolean => "boolean".into(),
        FieldType::Date { .. } => "date".into(),
        FieldType::Timestamp { .. } => "timestamp with time zone".into(),
        FieldType::Json => "jsonb".into(),
    }
}

/// Checks that every field can be a column: a name PostgreSQL keeps whole, and none of the lineage names.
pub fn check_template(template: &Template) -> Result<(), PgError> {
    for field in &template.fields {
        let reason = if field.name.is_empty() || field.name.contains('\0') {
            Some("a field name is empty or holds a NUL character".to_owned())
        } else if field.name.len() > MAX_IDENTIFIER_BYTES {
            Some(format!(
                "field {:?} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifiers",
                field.name
            ))
        } else if LINEAGE.iter().any(|(name, _)| *name == field.name) {
            Some(format!(
                "field {:?} uses a lineage column name ({}); rename the field",
                field.name,
                LINEAGE.map(|(name, _)| name).join(", ")
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(PgError::Template {
                template: template.name.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// The columns of the table's conflict key: the primary key, or [`APPEND_KEY`] without one.
pub fn conflict_key(template: &Template) -> Vec<&str> {
    if template.primary_key.is_empty() {
        APPEND_KEY.to_vec()
    } else {
        template.primary_key.iter().map(String::as_str).collect()
    }
}

/// `CREATE TABLE IF NOT EXISTS` for `table` from `template`: its fields, the lineage columns, and the key.
pub fn create_table(template: &Template, table: &TableRef) -> Result<String, PgError> {
    check_template(template)?;
    let mut columns: Vec<String> = template
        .fields
        .iter()
        .map(|f| {
            let not_null = if template.primary_key.contains(&f.name) {
                " NOT NULL"
            } else {
                ""
            };
            format!(
                "{} {}{not_null}",
                quote_ident(&f.name),
                column_type(&f.field_type)
            )
        })
        .collect();
    columns.extend(
        LINEAGE
            .iter()
            .map(|(name, ty)| format!("{} {ty} NOT NULL", quote_ident(name))),
    );
    let key = conflict_key(template)
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let constraint = if template.primary_key.is_empty() {
        "UNIQUE"
    } else {
        "PRIMARY KEY"
    };
    columns.push(format!("{constraint} ({key})"));
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} (\n    {}\n)",
        table.quoted(),
        columns.join(",\n    ")
    ))
}

/// The importer's schema: `imports` records each file version merged into a table, in the merge's
/// transaction. Rows not merged yet wait in one staging table per file version ([`create_stage`]).
pub fn importer_schema() -> [String; 3] {
    let schema = quote_ident(IMPORTER_SCHEMA);
    [
        format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.imports (\n    \
             target text NOT NULL,\n    connector_id text NOT NULL,\n    file_id text NOT NULL,\n    \
             source_key text NOT NULL,\n    source_etag text NOT NULL,\n    \
             source_last_modified timestamptz NOT NULL,\n    rows bigint NOT NULL DEFAULT 0,\n    \
             imported_at timestamptz NOT NULL DEFAULT now(),\n    \
             replays integer NOT NULL DEFAULT 0,\n    \
             PRIMARY KEY (target, connector_id, file_id)\n)"
        ),
        // Tables made before replays were recorded.
        format!("ALTER TABLE {schema}.imports ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0"),
    ]
}

/// The staging table of the file version whose staging id is `version`, quoted: `s3_importer."stage_<id>"`.
pub fn stage_table(version: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(IMPORTER_SCHEMA),
        quote_ident(&format!("stage_{version}"))
    )
}

/// `CREATE TABLE IF NOT EXISTS` for a file version's staging table: `record bigint` and the template's
/// fields with their column types, and nothing else: no key, no index, no constraint, no autovacuum (the
/// table lives until its file version is merged or aborted, then is dropped). It is an ordinary, logged
/// table, so staged pieces survive a server crash or a failover.
pub fn create_stage(template: &Template, version: &str) -> String {
    let columns: Vec<String> = std::iter::once("record bigint NOT NULL".to_owned())
        .chain(
            template
                .fields
                .iter()
                .map(|f| format!("{} {}", quote_ident(&f.name), column_type(&f.field_type))),
        )
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}) WITH (autovacuum_enabled = false)",
        stage_table(version),
        columns.join(", ")
    )
}

/// Runs [`importer_schema`] in one transaction, serialised by an advisory lock (concurrent `CREATE … IF NOT
/// EXISTS` can otherwise collide on the catalog).
pub async fn ensure_importer_schema(client: &mut tokio_postgres::Client) -> Result<(), PgError> {
    let step = |source| PgError::query("create the importer's schema", IMPORTER_SCHEMA, source);
    let tx = client.transaction().await.map_err(step)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('s3_importer schema'))",
        &[],
    )
    .await
    .map_err(step)?;
    for statement in importer_schema() {
        tx.batch_execute(&statement).await.map_err(step)?;
    }
    tx.commit().await.map_err(step)
}

/// Creates `table` from `template` if it does not exist, and the importer's schema (what `connector create
/// --create-table` runs).
pub async fn create(
    client: &mut tokio_postgres::Client,
    template: &Template,
    table: &TableRef,
) -> Result<(), PgError> {
    ensure_importer_schema(client).await?;
    let sql = create_table(template, table)?;
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| PgError::query("create the table", table.quoted(), e))?;
    tracing::info!(table = %table, template = %template.name, "table created from the template (or already there)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_parsed_with_its_schema_or_public() -> Result<(), PgError> {
        assert_eq!(
            TableRef::parse("sales.Orders")?,
            TableRef::new("sales", "Orders")
        );
        assert_eq!(
            TableRef::parse("orders")?,
            TableRef::new("public", "orders")
        );
        for bad in ["", ".t", "s.", "a.b.c", "x\"y", &"t".repeat(64)] {
            assert!(TableRef::parse(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    fn template(toml: &str) -> Result<Template, String> {
        Template::from_toml(toml).map_err(|e| e.to_string())
    }

    #[test]
    fn every_template_type_maps_to_its_column_type() -> Result<(), String> {
        let t = template(
            "name = \"all\"\nprimary_key = [\"order\"]\n\
             [[fields]]\nname = \"order\"\ntype = \"string\"\nrequired = true\n\
             [[fields]]\nname = \"n\"\ntype = \"integer\"\n\
             [[fields]]\nname = \"price\"\ntype = \"decimal\"\nprecision = 12\nscale = 2\n\
             [[fields]]\nname = \"ok\"\ntype = \"boolean\"\n\
             [[fields]]\nname = \"day\"\ntype = \"date\"\n\
             [[fields]]\nname = \"at\"\ntype = \"timestamp\"\n\
             [[fields]]\nname = \"kind\"\ntype = \"enum\"\nvalues = [\"a\"]\n\
             [[fields]]\nname = \"doc\"\ntype = \"json\"\n",
        )?;
        let sql = create_table(&t, &TableRef::new("public", "all \"types\""))
            .map_err(|e| e.to_string())?;
        for part in [
            "CREATE TABLE IF NOT EXISTS \"public\".\"all \"\"types\"\"\"",
            "\"order\" text NOT NULL",
            "\"n\" bigint,",
            "\"price\" numeric(12,2),",
            "\"ok\" boolean,",
            "\"day\" date,",
            "\"at\" timestamp with time zone,",
            "\"kind\" text,",
            "\"doc\" jsonb,",
            "\"_source_last_modified\" timestamp with time zone NOT NULL",
            "\"_source_row\" bigint NOT NULL",
            "PRIMARY KEY (\"order\")",
        ] {
            assert!(sql.contains(part), "{part:?} not in\n{sql}");
        }
        Ok(())
    }

    #[test]
    fn a_template_without_primary_key_is_keyed_by_file_version_and_record() -> Result<(), String> {
        let t = template("name = \"log\"\n[[fields]]\nname = \"msg\"\ntype = \"string\"\n")?;
        let sql = create_table(&t, &TableRef::new("s", "log")).map_err(|e| e.to_string())?;
        assert!(
            sql.contains("UNIQUE (\"_source_key\", \"_source_etag\", \"_source_row\")"),
            "{sql}"
        );
        assert!(!sql.contains("PRIMARY KEY"), "{sql}");
        Ok(())
    }

    #[test]
    fn decimals_keep_their_precision_and_scale() {
        let cases = [
            ((Some(10), Some(3)), "numeric(10,3)"),
            ((None, Some(2)), "numeric(38,2)"),
            ((Some(10), None), "numeric"),
            ((None, None), "numeric"),
        ];
        for ((precision, scale), want) in cases {
            assert_eq!(column_type(&FieldType::Decimal { precision, scale }), want);
        }
    }

    #[test]
    fn lineage_names_and_overlong_names_are_refused() -> Result<(), String> {
        let long = "x".repeat(64);
        for name in ["_source_row", long.as_str()] {
            let t = template(&format!(
                "name = \"t\"\n[[fields]]\nname = \"{name}\"\ntype = \"string\"\n"
            ))?;
            let err = create_table(&t, &TableRef::new("s", "t"))
                .err()
                .map(|e| e.to_string());
            assert!(err.is_some(), "{name} accepted");
        }
        Ok(())
    }
}

//! The Athena (Hive) `CREATE EXTERNAL TABLE` for a connector's Parquet output, with partition projection so
//! new dates are queryable without `MSCK REPAIR TABLE` or a crawler.

use std::fmt::Write as _;

use s3_importer_core::template::Template;

use super::layout;
use super::schema::{ColumnKind, OutputSchema};
use super::ParquetError;

/// The partition columns of the layout ([`layout::object_key`]).
pub const PARTITIONS: [&str; 2] = ["connector", "date"];

/// The Athena / Hive type of a column.
pub fn athena_type(kind: ColumnKind) -> String {
    match kind {
        ColumnKind::Text | ColumnKind::Json => "string".into(),
        ColumnKind::Int64 => "bigint".into(),
        ColumnKind::Boolean => "boolean".into(),
        ColumnKind::Date => "date".into(),
        ColumnKind::Timestamp => "timestamp".into(),
        ColumnKind::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
    }
}

/// A table name Athena accepts from `name`: lowercase ASCII letters, digits and `_`.
pub fn table_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 't');
    }
    out
}

fn quoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `CREATE EXTERNAL TABLE` for the output of connector `connector_id` written with `template` to
/// `s3://bucket/prefix/`. Fails when a field is named like a partition column (Athena refuses a column in both
/// lists) or cannot be written as Parquet.
pub fn create_table(
    table: &str,
    template: &Template,
    bucket: &str,
    prefix: &str,
    connector_id: &str,
) -> Result<String, ParquetError> {
    let schema = OutputSchema::of(template)?;
    if let Some(clash) = schema
        .columns
        .iter()
        .find(|c| PARTITIONS.contains(&c.name.to_ascii_lowercase().as_str()))
    {
        return Err(ParquetError::Field {
            field: clash.name.clone(),
            reason: "Athena cannot have a column named like a partition column (connector, date); rename the \
                     field in the template"
                .into(),
        });
    }
    let root = format!(
        "s3://{bucket}/{}",
        layout::connector_prefix(prefix, connector_id)
    );
    let location = root
        .strip_suffix(&format!("connector={connector_id}/"))
        .unwrap_or(&root)
        .to_owned();
    let mut sql = format!("CREATE EXTERNAL TABLE IF NOT EXISTS {} (\n", quoted(table));
    let columns: Vec<String> = schema
        .columns
        .iter()
        .map(|c| format!("  {} {}", quoted(&c.name), athena_type(c.kind)))
        .collect();
    sql.push_str(&columns.join(",\n"));
    // Writing to a String cannot fail.
    let _ = write!(
        sql,
        "\n)\nPARTITIONED BY (`connector` string, `date` string)\nSTORED AS PARQUET\nLOCATION '{location}'\n\
         TBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.connector.type' = 'enum',\n  \
         'projection.connector.values' = '{connector_id}',\n  'projection.date.type' = 'date',\n  \
         'projection.date.format' = 'yyyy-MM-dd',\n  'projection.date.range' = '2000-01-01,NOW',\n  \
         'projection.date.interval' = '1',\n  'projection.date.interval.unit' = 'DAYS',\n  \
         'storage.location.template' = '{location}connector=${{connector}}/date=${{date}}/'\n);\n"
    );
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(fields: &str) -> Template {
        Template::from_toml(&format!("name = \"t\"\n{fields}")).expect("valid template")
    }

    #[test]
    fn the_ddl_types_columns_partitions_and_projects_them() -> Result<(), ParquetError> {
        let t = template(
            "[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
             [[fields]]\nname = \"qty\"\ntype = \"integer\"\n\
             [[fields]]\nname = \"price\"\ntype = \"decimal\"\nprecision = 12\nscale = 2\n\
             [[fields]]\nname = \"paid\"\ntype = \"boolean\"\n\
             [[fields]]\nname = \"day\"\ntype = \"date\"\n\
             [[fields]]\nname = \"at\"\ntype = \"timestamp\"\n\
             [[fields]]\nname = \"doc\"\ntype = \"json\"\n",
        );
        let sql = create_table("orders", &t, "lake", "/parquet/orders/", "c-0a1b")?;
        let want = "CREATE EXTERNAL TABLE IF NOT EXISTS `orders` (\n  `id` string,\n  `qty` bigint,\n  \
                    `price` decimal(12,2),\n  `paid` boolean,\n  `day` date,\n  `at` timestamp,\n  `doc` string,\n  \
                    `_source_key` string,\n  `_source_etag` string,\n  `_source_last_modified` timestamp,\n  \
                    `_source_row` bigint,\n  `_imported_at` timestamp,\n  `_extra` string\n)\n\
                    PARTITIONED BY (`connector` string, `date` string)\nSTORED AS PARQUET\n\
                    LOCATION 's3://lake/parquet/orders/'\nTBLPROPERTIES (\n  'projection.enabled' = 'true',\n  \
                    'projection.connector.type' = 'enum',\n  'projection.connector.values' = 'c-0a1b',\n  \
                    'projection.date.type' = 'date',\n  'projection.date.format' = 'yyyy-MM-dd',\n  \
                    'projection.date.range' = '2000-01-01,NOW',\n  'projection.date.interval' = '1',\n  \
                    'projection.date.interval.unit' = 'DAYS',\n  'storage.location.template' = \
                    's3://lake/parquet/orders/connector=${connector}/date=${date}/'\n);\n";
        assert_eq!(sql, want);
        // The location is the prefix of every object key the layout writes.
        let key = layout::object_key("/parquet/orders/", "c-0a1b", chrono::Utc::now(), "k", "e");
        assert!(format!("s3://lake/{key}")
            .starts_with("s3://lake/parquet/orders/connector=c-0a1b/date="));
        Ok(())
    }

    #[test]
    fn a_field_named_like_a_partition_is_refused_and_names_are_quoted() {
        let t = template("[[fields]]\nname = \"Date\"\ntype = \"date\"\n");
        let err = create_table("t", &t, "b", "p", "c-1").expect_err("clash");
        assert!(err.to_string().contains("field Date"), "{err}");
        let t = template("[[fields]]\nname = \"a`b\"\ntype = \"string\"\n");
        let sql = create_table("t", &t, "b", "", "c-1").unwrap_or_default();
        assert!(
            sql.contains("`a``b` string") && sql.contains("LOCATION 's3://b/'"),
            "{sql}"
        );
        assert_eq!(table_name("Orders EU-2"), "orders_eu_2");
        assert_eq!(table_name("2024"), "t2024");
    }
}

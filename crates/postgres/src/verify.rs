//! `connector verify` for an existing table: every column the template and the lineage need, with the type
//! [`crate::ddl`] would give it, and a unique key on the conflict key (the upsert's `ON CONFLICT` needs one).
//! Each mismatch comes with the exact `ALTER TABLE` that fixes it. Extra columns are fine (they must allow
//! NULL or have a default, which an `INSERT` then reports if not).

use std::fmt;

use s3_importer_core::template::Template;
use tokio_postgres::Client;

use crate::ddl::{self, column_type, conflict_key, quote_ident, TableRef, LINEAGE};
use crate::error::PgError;

/// What differs between the table and the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The table does not exist.
    MissingTable,
    /// A column is missing.
    MissingColumn {
        /// Column.
        column: String,
        /// The type it should have.
        want: String,
    },
    /// A column has another type.
    WrongType {
        /// Column.
        column: String,
        /// The type it should have.
        want: String,
        /// The type it has.
        found: String,
    },
    /// No unique key (primary key, unique constraint or plain unique index, immediate, on these columns
    /// exactly) that an upsert can name.
    NoUniqueKey {
        /// The conflict key.
        columns: Vec<String>,
    },
}

/// One mismatch and the statement that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs.
    pub problem: Problem,
    /// The SQL to run.
    pub fix: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {};", self.problem, self.fix)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingTable => write!(f, "the table does not exist"),
            Problem::MissingColumn { column, want } => {
                write!(f, "column {} is missing (want {want})", quote_ident(column))
            }
            Problem::WrongType {
                column,
                want,
                found,
            } => write!(
                f,
                "column {} is {found}, the template wants {want}",
                quote_ident(column)
            ),
            Problem::NoUniqueKey { columns } => write!(
                f,
                "no unique key on ({}) for the upsert",
                columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The table checked.
    pub table: TableRef,
    /// Every mismatch; empty when the table fits.
    pub mismatches: Vec<Mismatch>,
}

impl Report {
    /// True when the table fits the template.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(f, "table {} fits the template", self.table);
        }
        write!(f, "table {} does not fit the template:", self.table)?;
        for m in &self.mismatches {
            write!(f, "\n  - {m}")?;
        }
        Ok(())
    }
}

/// Compares `table` with `template` (and the lineage columns) as the server's catalog describes it.
pub async fn verify(
    client: &Client,
    template: &Template,
    table: &TableRef,
) -> Result<Report, PgError> {
    ddl::check_template(template)?;
    let query = |e| PgError::query("read the table's columns", table.quoted(), e);
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
             AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(query)?;
    let mut mismatches = Vec::new();
    if columns.is_empty() {
        mismatches.push(Mismatch {
            problem: Problem::MissingTable,
            fix: ddl::create_table(template, table)?,
        });
        return Ok(Report {
            table: table.clone(),
            mismatches,
        });
    }
    let found: Vec<(String, String)> = columns.iter().map(|r| (r.get(0), r.get(1))).collect();
    let wanted = template
        .fields
        .iter()
        .map(|f| (f.name.clone(), column_type(&f.field_type)))
        .chain(
            LINEAGE
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned())),
        );
    for (column, want) in wanted {
        let quoted = quote_ident(&column);
        match found.iter().find(|(name, _)| *name == column) {
            None => mismatches.push(Mismatch {
                fix: format!("ALTER TABLE {table} ADD COLUMN {quoted} {want}"),
                problem: Problem::MissingColumn { column, want },
            }),
            Some((_, ty)) if *ty != want => mismatches.push(Mismatch {
                fix: format!(
                    "ALTER TABLE {table} ALTER COLUMN {quoted} TYPE {want} USING {quoted}::{want}"
                ),
                problem: Problem::WrongType {
                    column,
                    want,
                    found: ty.clone(),
                },
            }),
            Some(_) => {}
        }
    }

    let key = conflict_key(template);
    let keys = client
        .query(
            "SELECT i.indisprimary, ARRAY(SELECT a.attname::text FROM pg_attribute a \
                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) ORDER BY a.attname) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indimmediate \
             AND i.indpred IS NULL AND i.indexprs IS NULL",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| PgError::query("read the table's unique keys", table.quoted(), e))?;
    let mut sorted: Vec<String> = key.iter().map(|c| (*c).to_owned()).collect();
    sorted.sort();
    let has_key = keys.iter().any(|r| r.get::<_, Vec<String>>(1) == sorted);
    if !has_key {
        let has_primary = keys.iter().any(|r| r.get::<_, bool>(0));
        let list = key
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let fix = if has_primary || template.primary_key.is_empty() {
            format!("ALTER TABLE {table} ADD UNIQUE ({list})")
        } else {
            format!("ALTER TABLE {table} ADD PRIMARY KEY ({list})")
        };
        mismatches.push(Mismatch {
            problem: Problem::NoUniqueKey {
                columns: key.iter().map(|c| (*c).to_owned()).collect(),
            },
            fix,
        });
    }
    Ok(Report {
        table: table.clone(),
        mismatches,
    })
}

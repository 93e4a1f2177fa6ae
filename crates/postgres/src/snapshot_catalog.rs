//! Catalog look-ups and COPY for snapshots: a table's columns, key, size, and its rows in
//! chunks read under one transaction snapshot.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio_postgres::Client;

use crate::values::TypeKind;
use crate::{quote_ident, ControlConnection, PgError};

/// Session settings that fix the text form of COPY output to what the value decoder expects:
/// the same as the replication session's.
pub const COPY_SESSION_SQL: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
     SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

#[derive(Debug, Clone)]
pub struct SnapshotColumn {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    pub type_name: String,
    pub kind: TypeKind,
    /// Part of the key: the replica identity index, else the primary key (`keys`).
    pub key: bool,
}

#[derive(Debug, Clone)]
pub struct SnapshotTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<SnapshotColumn>,
    /// The key when it is a single integer column: chunks are key ranges.
    pub integer_key: Option<String>,
    pub pages: u64,
    pub estimated_rows: u64,
}

impl SnapshotTable {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `COPY (SELECT … WHERE <range>) TO STDOUT` for one chunk.
    pub fn copy_sql(&self, range: &ChunkRange, filter: Option<&str>) -> String {
        let mut predicate = match range {
            ChunkRange::Key { from, to } => {
                let key = quote_ident(self.integer_key.as_deref().unwrap_or("ctid"));
                match to {
                    Some(to) => format!("{key} >= {from} AND {key} < {to}"),
                    None => format!("{key} >= {from}"),
                }
            }
            ChunkRange::Pages { from, to } => match to {
                Some(to) => format!("ctid >= '({from},0)'::tid AND ctid < '({to},0)'::tid"),
                None => format!("ctid >= '({from},0)'::tid"),
            },
            ChunkRange::All => "true".to_string(),
        };
        if let Some(f) = filter {
            predicate = format!("({predicate}) AND ({f})");
        }
        format!(
            "COPY (SELECT {} FROM {} WHERE {predicate}) TO STDOUT",
            self.column_list(),
            self.quoted()
        )
    }
}

/// The rows of one chunk. The last chunk of a table is open-ended so that nothing past the
/// planned bounds is missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRange {
    Key { from: i64, to: Option<i64> },
    Pages { from: u64, to: Option<u64> },
    All,
}

impl ControlConnection {
    /// Columns, key and size of a table, with value kinds resolved.
    pub async fn snapshot_table(&self, schema: &str, name: &str) -> Result<SnapshotTable, PgError> {
        let client = self.client();
        let row = client
            .query_opt(
                "SELECT c.oid, GREATEST(c.relpages, 0)::int8, GREATEST(c.reltuples, 0)::int8 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &name],
            )
            .await?
            .ok_or_else(|| PgError::Precondition(format!("table {schema}.{name} does not exist")))?;
        let oid: u32 = row.get(0);
        let pages: i64 = row.get(1);
        let estimated: i64 = row.get(2);
        let rows = client
            .query(
                &format!(
                    "SELECT a.attname::text, a.atttypid, a.atttypmod, t.typname::text, \
                            coalesce(a.attnum = ANY({}), false) \
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    crate::keys::key_index_sql("a.attrelid")
                ),
                &[&oid],
            )
            .await?;
        let mut columns = Vec::with_capacity(rows.len());
        for r in rows {
            let type_oid: u32 = r.get(1);
            let kind = match TypeKind::from_builtin_oid(type_oid) {
                Some(k) => k,
                None => self.resolve_type(type_oid).await?,
            };
            columns.push(SnapshotColumn {
                name: r.get(0),
                type_oid,
                type_modifier: r.get(2),
                type_name: r.get(3),
                kind,
                key: r.get(4),
            });
        }
        let keys: Vec<&SnapshotColumn> = columns.iter().filter(|c| c.key).collect();
        let integer_key = match keys.as_slice() {
            [k] if matches!(k.type_oid, 20 | 21 | 23) => Some(k.name.clone()),
            _ => None,
        };
        Ok(SnapshotTable {
            oid,
            schema: schema.to_string(),
            name: name.to_string(),
            columns,
            integer_key,
            pages: pages as u64,
            estimated_rows: estimated as u64,
        })
    }
}

/// Splits a table into chunks of about `chunk_rows` rows: key ranges for a single integer
/// key, page (CTID) ranges otherwise. Runs inside the snapshot transaction.
pub async fn plan_chunks(
    client: &Client,
    table: &SnapshotTable,
    chunk_rows: u64,
) -> Result<Vec<ChunkRange>, PgError> {
    if let Some(key) = &table.integer_key {
        let row = client
            .query_one(
                &format!(
                    "SELECT min({k})::int8, max({k})::int8, count(*)::int8 FROM {}",
                    table.quoted(),
                    k = quote_ident(key)
                ),
                &[],
            )
            .await?;
        let (min, max, count): (Option<i64>, Option<i64>, i64) =
            (row.get(0), row.get(1), row.get(2));
        let (Some(min), Some(max)) = (min, max) else {
            return Ok(vec![ChunkRange::All]);
        };
        let chunks = (count as u64).div_ceil(chunk_rows).max(1);
        let width = ((max as i128 - min as i128 + 1) / chunks as i128).max(1) as i64;
        let mut out = Vec::new();
        let mut from = min;
        for i in 0..chunks {
            if i + 1 == chunks {
                out.push(ChunkRange::Key { from, to: None });
            } else {
                let to = from.saturating_add(width);
                out.push(ChunkRange::Key { from, to: Some(to) });
                from = to;
            }
        }
        // Keys below the minimum cannot appear in this snapshot; the first chunk starts at it.
        return Ok(out);
    }
    let pages_row = client
        .query_one(
            &format!("SELECT (pg_relation_size('{}'::regclass) / current_setting('block_size')::int8)::int8", table.quoted().replace('\'', "''")),
            &[],
        )
        .await?;
    let pages: i64 = pages_row.get(0);
    let pages = pages.max(0) as u64;
    if pages == 0 {
        return Ok(vec![ChunkRange::All]);
    }
    let rows_per_page = table
        .estimated_rows
        .checked_div(table.pages)
        .unwrap_or(100)
        .max(1);
    let pages_per_chunk = (chunk_rows / rows_per_page).max(1);
    let mut out = Vec::new();
    let mut from = 0;
    while from < pages {
        let to = from + pages_per_chunk;
        out.push(ChunkRange::Pages {
            from,
            to: (to < pages).then_some(to),
        });
        from = to;
    }
    Ok(out)
}

/// Streams `COPY … TO STDOUT` text output.
pub async fn copy_out(
    client: &Client,
    sql: &str,
) -> Result<impl Stream<Item = Result<Bytes, PgError>>, PgError> {
    let stream = client.copy_out(sql).await?;
    Ok(stream.map(|r| r.map_err(PgError::from)))
}

impl ControlConnection {
    /// Drops a replication slot (not in use).
    pub async fn drop_slot(&self, slot: &str) -> Result<(), PgError> {
        self.client()
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await?;
        Ok(())
    }
}

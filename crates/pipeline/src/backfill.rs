//! Online backfills with watermarks (DBLog): re-read a table, or the rows matching a
//! predicate, while streaming goes on — without a backfilled row ever landing after a newer
//! change of the same key.
//!
//! ```text
//!  backfill task:  LW(chunk) ─ SELECT chunk (keyset, ≤ N rows) ─ HW(chunk)     (logical messages)
//!  session:        LW seen → note keys of every change to the table until HW;
//!                  HW seen → publish the chunk's rows whose keys did not change in between,
//!                            as `read` events inside the HW's transaction.
//! ```
//! A row changed between LW and HW is dropped from the chunk: its change event, already in the
//! stream, carries a value at least as new. Changes after HW follow the reads. So for every
//! key the last event carries the current value.
//!
//! Requests arrive as inserts into the signal table (`tributary backfill` writes one), so they
//! are ordered with the changes and survive nothing: a backfill interrupted by a restart is
//! requested again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tributary_postgres::snapshot_catalog::{copy_out, SnapshotTable, COPY_SESSION_SQL};
use tributary_postgres::{quote_ident, ConnectParams, ControlConnection};
use tributary_proto::cdc::v1::value::Kind;
use tributary_proto::cdc::v1::Row;

use crate::context::SourceContext;
use crate::event::build_row_from_text;
use crate::relations::RelationInfo;
use crate::snapshot::copy_text::{parse_row, RowSplitter};

pub const WATERMARK_PREFIX: &str = "tributary.backfill";

/// One chunk selected between its watermarks.
pub struct ChunkRows {
    pub id: String,
    pub chunk: u32,
    pub info: Arc<RelationInfo>,
    pub rows: Vec<Row>,
}

struct Window {
    table_oid: u32,
    seen: HashSet<Vec<u8>>,
}

/// The session's side: open windows and chunks waiting for their high watermark.
/// The backfill tasks it started are its own: they stop with it (the stop token, then an
/// abort when it is dropped), so no task reads a table for a session that is gone.
pub struct Backfills {
    tasks: JoinSet<()>,
    stop: CancellationToken,
    rows_tx: mpsc::UnboundedSender<ChunkRows>,
    rows_rx: mpsc::UnboundedReceiver<ChunkRows>,
    arrived: HashMap<(String, u32), ChunkRows>,
    windows: HashMap<(String, u32), Window>,
}

pub enum Watermark {
    Low {
        id: String,
        chunk: u32,
        table_oid: u32,
    },
    High {
        id: String,
        chunk: u32,
    },
}

pub fn parse_watermark(content: &[u8]) -> Option<Watermark> {
    let text = std::str::from_utf8(content).ok()?;
    let mut parts = text.split(' ');
    let kind = parts.next()?;
    let id = parts.next()?.to_string();
    let chunk = parts.next()?.parse().ok()?;
    match kind {
        "low" => Some(Watermark::Low {
            id,
            chunk,
            table_oid: parts.next()?.parse().ok()?,
        }),
        "high" => Some(Watermark::High { id, chunk }),
        _ => None,
    }
}

impl Default for Backfills {
    fn default() -> Self {
        let (rows_tx, rows_rx) = mpsc::unbounded_channel();
        Backfills {
            tasks: JoinSet::new(),
            stop: CancellationToken::new(),
            rows_tx,
            rows_rx,
            arrived: HashMap::new(),
            windows: HashMap::new(),
        }
    }
}

impl Drop for Backfills {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backfills {
    /// Starts the requested backfill beside the session that owns `self`.
    pub fn start(&mut self, ctx: &SourceContext, database: &str, request: BackfillRequest) {
        let (source, database, prefix, mode) = (
            ctx.config.name.clone(),
            database.to_string(),
            ctx.subject_prefix.clone(),
            ctx.config.schema,
        );
        let info_for = move |t: &SnapshotTable| {
            crate::snapshot::table_relation(&source, &database, &prefix, mode, t)
        };
        let task = run(
            ctx.params.clone(),
            request,
            info_for,
            ctx.config.snapshot_chunk_rows.min(10_000),
            self.rows_tx.clone(),
            BackfillEnv {
                source: ctx.config.name.clone(),
                js: ctx.js.clone(),
                schemas: ctx.schemas.clone(),
                replicas: ctx.stream.replicas,
            },
        );
        self.spawn(task);
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        // Finished backfills are reaped here rather than kept until the session ends.
        while self.tasks.try_join_next().is_some() {}
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        });
    }

    pub fn has_windows(&self) -> bool {
        !self.windows.is_empty()
    }

    /// A low watermark opens its chunk's window. One of a predecessor's backfills (re-sent
    /// after a restart) opens one too, and closes without rows.
    pub fn open(&mut self, id: String, chunk: u32, table_oid: u32) {
        self.windows.insert(
            (id, chunk),
            Window {
                table_oid,
                seen: HashSet::new(),
            },
        );
    }

    /// Notes the key of a change to `table_oid` in every window open on that table.
    pub fn note_key(&mut self, table_oid: u32, key: &[u8]) {
        for w in self
            .windows
            .values_mut()
            .filter(|w| w.table_oid == table_oid)
        {
            w.seen.insert(key.to_vec());
        }
    }

    /// The high watermark closes the window: the chunk's rows whose keys did not change.
    pub fn close(&mut self, id: &str, chunk: u32) -> Option<(Arc<RelationInfo>, Vec<Row>)> {
        self.collect();
        let window = self.windows.remove(&(id.to_string(), chunk))?;
        let rows = self.arrived.remove(&(id.to_string(), chunk))?;
        let keep = rows
            .rows
            .into_iter()
            .filter(|r| !window.seen.contains(&row_key(&rows.info.key_indexes, r)))
            .collect();
        Some((rows.info, keep))
    }

    fn collect(&mut self) {
        while let Ok(c) = self.rows_rx.try_recv() {
            self.arrived.insert((c.id.clone(), c.chunk), c);
        }
    }
}

/// The identity of a row: its key columns' values, encoded.
pub fn row_key(key_indexes: &[usize], row: &Row) -> Vec<u8> {
    let mut out = Vec::new();
    for &i in key_indexes {
        if let Some(v) = row.values.get(i) {
            v.encode_length_delimited(&mut out).ok();
        }
    }
    out
}

/// The request in a row of the signal table, such as
/// `('id-1', 'backfill', '{"table": "public.orders", "where": "region = ''EU''"}')`; a row that
/// is not a backfill request is logged and ignored.
pub fn signal_request(names: &[String], row: &Row, source: &str) -> Option<BackfillRequest> {
    let text = |name: &str| -> Option<String> {
        let i = names.iter().position(|n| n == name)?;
        match row.values.get(i)?.kind.as_ref()? {
            Kind::Text(t) | Kind::Json(t) => Some(t.clone()),
            _ => None,
        }
    };
    let (Some(id), Some(kind)) = (text("id"), text("type")) else {
        warn!(%source, "signal without id or type ignored");
        return None;
    };
    if kind != "backfill" {
        warn!(%source, %id, %kind, "unknown signal type ignored");
        return None;
    }
    let data: serde_json::Value = text("data")
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or_default();
    let Some(table) = data
        .get("table")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        warn!(%source, %id, "backfill signal without data.table ignored");
        return None;
    };
    let filter = data
        .get("where")
        .and_then(|t| t.as_str())
        .map(str::to_string);
    info!(%source, backfill = %id, %table, filter = ?filter, "backfill requested");
    Some(BackfillRequest { id, table, filter })
}

pub struct BackfillRequest {
    pub id: String,
    pub table: String,
    pub filter: Option<String>,
}

/// Progress of one backfill, kept in the snapshot bucket under [`progress_key`] for
/// `tributary backfill` to show.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BackfillProgress {
    pub table: String,
    pub filter: Option<String>,
    pub rows: u64,
    pub chunks: u32,
    /// The table's estimated size (rows matching a filter are not estimated).
    pub estimated_rows: u64,
    pub done: bool,
    pub error: Option<String>,
}

pub fn progress_key(source: &str, id: &str) -> String {
    format!(
        "{}.backfill.{}",
        source.replace(['.', '*', '>', ' '], "_"),
        id.replace(['.', '*', '>', ' '], "_")
    )
}

struct ProgressWriter {
    kv: Option<async_nats::jetstream::kv::Store>,
    key: String,
    progress: BackfillProgress,
}

impl ProgressWriter {
    async fn save(&self) {
        if let (Some(kv), Ok(bytes)) = (&self.kv, serde_json::to_vec(&self.progress)) {
            if let Err(e) = kv.put(&self.key, bytes.into()).await {
                tracing::debug!(error = %e, "backfill progress not saved");
            }
        }
    }
}

/// The source a backfill reads for, and where it keeps its progress and stores the schema of
/// the table it reads.
pub struct BackfillEnv {
    pub source: String,
    pub js: async_nats::jetstream::Context,
    pub schemas: Arc<crate::schemas::SchemaWriter>,
    pub replicas: usize,
}

/// Reads the table chunk by chunk between watermarks. Runs beside the session.
pub async fn run(
    params: ConnectParams,
    request: BackfillRequest,
    info_for: impl Fn(&SnapshotTable) -> RelationInfo + Send + 'static,
    chunk_rows: u64,
    out: mpsc::UnboundedSender<ChunkRows>,
    stores: BackfillEnv,
) {
    let source = stores.source.clone();
    let mut progress = ProgressWriter {
        kv: crate::snapshot::StateStore::open(&stores.js, &source, 1)
            .await
            .ok()
            .map(|s| s.kv().clone()),
        key: progress_key(&source, &request.id),
        progress: BackfillProgress {
            table: request.table.clone(),
            filter: request.filter.clone(),
            ..Default::default()
        },
    };
    progress.save().await;
    let result = run_inner(
        &params,
        &request,
        info_for,
        chunk_rows,
        out,
        &mut progress,
        &stores,
    )
    .await;
    if let Err(e) = &result {
        warn!(%source, backfill = %request.id, table = %request.table, error = %e, "backfill failed; the stream goes on");
        progress.progress.error = Some(e.clone());
    }
    progress.progress.done = true;
    progress.save().await;
}

async fn run_inner(
    params: &ConnectParams,
    request: &BackfillRequest,
    info_for: impl Fn(&SnapshotTable) -> RelationInfo,
    chunk_rows: u64,
    out: mpsc::UnboundedSender<ChunkRows>,
    progress: &mut ProgressWriter,
    stores: &BackfillEnv,
) -> Result<(), String> {
    let source = stores.source.as_str();
    let (schema, name) = request
        .table
        .split_once('.')
        .ok_or_else(|| format!("table {:?} must be written schema.table", request.table))?;
    let control = ControlConnection::connect(params)
        .await
        .map_err(|e| e.to_string())?;
    let table = control
        .snapshot_table(schema, name)
        .await
        .map_err(|e| e.to_string())?;
    let keys: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.as_str())
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "{} has no key (primary key or replica identity index): a backfill needs one to order its chunks",
            table.qualified()
        ));
    }
    let info = Arc::new(info_for(&table));
    // The rows are published by the session as events naming this schema: stored first.
    stores
        .schemas
        .ensure(&stores.js, stores.replicas, info.description.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    progress.progress.estimated_rows = table.estimated_rows;
    let client = control.client();
    client
        .batch_execute(COPY_SESSION_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let key_list = keys
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let columns = table
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let rows_counter = metrics::counter!(crate::metrics::BACKFILL_ROWS, "source" => source.to_string(), "table" => table.qualified());
    let mut last: Option<Vec<String>> = None;
    let mut total = 0u64;
    for chunk in 0u32.. {
        let mut predicate = request
            .filter
            .clone()
            .map(|f| format!("({f})"))
            .unwrap_or_else(|| "true".into());
        if let Some(last) = &last {
            let literals = last
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            predicate = format!("({key_list}) > ({literals}) AND {predicate}");
        }
        let sql = format!(
            "COPY (SELECT {columns} FROM {}.{} WHERE {predicate} ORDER BY {key_list} LIMIT {chunk_rows}) TO STDOUT",
            quote_ident(&table.schema),
            quote_ident(&table.name)
        );
        emit(client, &format!("low {} {chunk} {}", request.id, table.oid)).await?;
        wait_for_earlier_commits(client).await?;
        let (rows, last_key) = select_chunk(client, &sql, &table, &info, source).await?;
        let n = rows.len() as u64;
        total += n;
        rows_counter.increment(n);
        out.send(ChunkRows {
            id: request.id.clone(),
            chunk,
            info: info.clone(),
            rows,
        })
        .map_err(|_| "the session ended".to_string())?;
        emit(client, &format!("high {} {chunk}", request.id)).await?;
        progress.progress.rows = total;
        progress.progress.chunks = chunk + 1;
        progress.save().await;
        if n < chunk_rows {
            break;
        }
        last = last_key;
    }
    info!(%source, backfill = %request.id, table = %table.qualified(), rows = total, "backfill: done");
    Ok(())
}

/// PostgreSQL makes a commit visible slightly after writing its commit record, so a
/// transaction that committed before the low watermark in the WAL can still be invisible to a
/// snapshot taken right after it — its change would precede the window unnoticed while the
/// chunk read its old row. Wait until every transaction in progress now has ended.
async fn wait_for_earlier_commits(client: &tokio_postgres::Client) -> Result<(), String> {
    let row = client
        .query_one(
            "SELECT coalesce(array_agg(x::text), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let running: Vec<String> = row.get(0);
    for _ in 0..3000 {
        if running.is_empty() {
            return Ok(());
        }
        let row = client
            .query_one(
                "SELECT count(*) FROM unnest($1::text[]) t WHERE pg_xact_status(t::xid8) = 'in progress'",
                &[&running],
            )
            .await
            .map_err(|e| e.to_string())?;
        if row.get::<_, i64>(0) == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err("transactions older than the low watermark did not end within 30 s".into())
}

async fn emit(client: &tokio_postgres::Client, content: &str) -> Result<(), String> {
    client
        .execute(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&WATERMARK_PREFIX, &content],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The chunk's rows and the text of the last row's key (where the next chunk starts).
async fn select_chunk(
    client: &tokio_postgres::Client,
    sql: &str,
    table: &SnapshotTable,
    info: &RelationInfo,
    source: &str,
) -> Result<(Vec<Row>, Option<Vec<String>>), String> {
    use futures::StreamExt;
    let stream = copy_out(client, sql).await.map_err(|e| e.to_string())?;
    let mut stream = std::pin::pin!(stream);
    let mut splitter = RowSplitter::default();
    let mut rows = Vec::new();
    let mut last_key = None;
    let mut n = 0u64;
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| e.to_string())?;
        splitter.push(&data, |line| {
            n += 1;
            let mut fields = Vec::with_capacity(table.columns.len());
            parse_row(line, n, &mut fields).map_err(|e| e.to_string())?;
            last_key = Some(
                info.key_indexes
                    .iter()
                    .map(|&i| {
                        fields
                            .get(i)
                            .and_then(|f| f.as_ref())
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .unwrap_or_default()
                    })
                    .collect(),
            );
            rows.push(build_row_from_text(info, &fields, source).map_err(|e| e.to_string())?);
            Ok::<(), String>(())
        })?;
    }
    Ok((rows, last_key))
}

#[cfg(test)]
mod tests {
    use tributary_proto::cdc::v1::Value;

    use super::*;

    fn text(t: &str) -> Value {
        Value {
            kind: Some(Kind::Text(t.to_string())),
        }
    }

    #[test]
    fn a_signal_row_becomes_a_backfill_request_or_is_ignored() {
        let names: Vec<String> = ["id", "type", "data"].map(String::from).to_vec();
        let row = |kind: &str, data: &str| Row {
            values: vec![text("bf-1"), text(kind), text(data)],
        };
        let request = signal_request(
            &names,
            &row(
                "backfill",
                r#"{"table": "public.orders", "where": "region = 'EU'"}"#,
            ),
            "erp",
        )
        .expect("a backfill request");
        assert_eq!(request.id, "bf-1");
        assert_eq!(request.table, "public.orders");
        assert_eq!(request.filter.as_deref(), Some("region = 'EU'"));
        assert!(signal_request(&names, &row("vacuum", "{}"), "erp").is_none());
        assert!(signal_request(&names, &row("backfill", "not json"), "erp").is_none());
        assert!(signal_request(&names[..1], &row("backfill", "{}"), "erp").is_none());
    }

    #[tokio::test]
    async fn backfill_tasks_stop_with_the_session_that_started_them() {
        let mut backfills = Backfills::default();
        let (alive, mut gone) = tokio::sync::oneshot::channel::<()>();
        backfills.spawn(async move {
            let _alive = alive;
            std::future::pending::<()>().await
        });
        tokio::task::yield_now().await;
        assert!(gone
            .try_recv()
            .is_err_and(|e| e == tokio::sync::oneshot::error::TryRecvError::Empty));
        drop(backfills);
        // The task's future (and the sender it holds) is dropped: the receiver sees it closed.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(10), gone).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "the backfill task outlived its session"
        );
    }
}

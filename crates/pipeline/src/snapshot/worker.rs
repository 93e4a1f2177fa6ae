//! A snapshot worker: one connection inside the shared transaction snapshot, copying chunks
//! from a queue with COPY and handing their `read` events to the publisher.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tributary_core::Lsn;
use tributary_postgres::snapshot_catalog::{copy_out, ChunkRange, SnapshotTable, COPY_SESSION_SQL};
use tributary_postgres::ControlConnection;
use tributary_proto::cdc::v1::{ChangeEvent, Operation};

use super::copy_text::{parse_row, RowSplitter};
use crate::batching::EventBatch;
use crate::context::SourceContext;
use crate::event::build_row_from_text;
use crate::outbound::{now_micros, ChunkId, Outbound, BATCH};
use crate::relations::{Op, RelationInfo};
use crate::transaction::{encode, PendingChange};
use crate::PipelineError;

pub struct ChunkJob {
    pub id: ChunkId,
    pub range: ChunkRange,
    pub table: SnapshotTable,
    pub info: Arc<RelationInfo>,
}

pub enum ChunkOutcome {
    /// All rows handed to the publisher; `recorded` fires once the chunk is durable in the
    /// progress store, so that a crash repeats at most the chunk in progress.
    Copied {
        id: ChunkId,
        rows: u64,
        recorded: tokio::sync::oneshot::Sender<()>,
    },
    /// The table cannot be copied (no permission, …): it is skipped, the rest goes on.
    Failed { id: ChunkId, error: String },
}

pub struct Worker {
    conn: ControlConnection,
}

/// What every `read` event of this snapshot run shares.
pub struct ReadSettings {
    pub source: String,
    pub consistent_point: Lsn,
    /// The run's attempt number, part of the event ids (see `copy_chunk`).
    pub attempt: u32,
    /// `snapshot_rows_per_message`: above 1, rows go out in `ChangeEventBatch` messages.
    pub rows_per_message: usize,
}

enum CopyError {
    Table(String),
    PublisherGone,
}

impl Worker {
    /// Opens a connection that reads under `snapshot` (an exported snapshot name).
    pub async fn open(ctx: &SourceContext, snapshot: &str) -> Result<Worker, PipelineError> {
        let conn = ControlConnection::connect(&ctx.params)
            .await
            .map_err(|e| ctx.pg_err(e))?;
        let setup = format!(
            "{COPY_SESSION_SQL}; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        );
        conn.client()
            .batch_execute(&setup)
            .await
            .map_err(|e| ctx.fatal(format!("cannot import snapshot {snapshot}: {e}")))?;
        Ok(Worker { conn })
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        self.conn.client()
    }

    pub async fn run(
        self,
        queue: Arc<Mutex<VecDeque<ChunkJob>>>,
        out: mpsc::Sender<Vec<Outbound>>,
        outcomes: mpsc::UnboundedSender<ChunkOutcome>,
        reads: ReadSettings,
    ) -> Result<(), PipelineError> {
        let gone = || PipelineError::PublisherGone {
            source_name: reads.source.clone(),
            message: "closed during the snapshot".into(),
        };
        loop {
            let Some(job) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                break;
            };
            let client = self.conn.client();
            if let Err(e) = client.batch_execute("SAVEPOINT chunk").await {
                let _ = outcomes.send(ChunkOutcome::Failed {
                    id: job.id,
                    error: e.to_string(),
                });
                continue;
            }
            match copy_chunk(client, &job, &out, &reads).await {
                Ok(rows) => {
                    let _ = client.batch_execute("RELEASE SAVEPOINT chunk").await;
                    let (recorded, wait) = tokio::sync::oneshot::channel();
                    let _ = outcomes.send(ChunkOutcome::Copied {
                        id: job.id,
                        rows,
                        recorded,
                    });
                    if wait.await.is_err() {
                        return Err(gone());
                    }
                }
                Err(CopyError::Table(error)) => {
                    let _ = client.batch_execute("ROLLBACK TO SAVEPOINT chunk").await;
                    let _ = outcomes.send(ChunkOutcome::Failed { id: job.id, error });
                }
                Err(CopyError::PublisherGone) => return Err(gone()),
            }
        }
        let _ = self.conn.client().batch_execute("COMMIT").await;
        Ok(())
    }
}

async fn copy_chunk(
    client: &tokio_postgres::Client,
    job: &ChunkJob,
    out: &mpsc::Sender<Vec<Outbound>>,
    reads: &ReadSettings,
) -> Result<u64, CopyError> {
    let source = reads.source.as_str();
    let table_err =
        |e: &dyn std::fmt::Display| CopyError::Table(format!("{}: {e}", job.table.qualified()));
    let sql = job.table.copy_sql(&job.range, None);
    let stream = copy_out(client, &sql).await.map_err(|e| table_err(&e))?;
    let mut stream = std::pin::pin!(stream);
    let rows_counter = metrics::counter!(crate::metrics::SNAPSHOT_ROWS, "source" => source.to_string(), "table" => job.id.table.to_string());
    let mut splitter = RowSplitter::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut rows = 0u64;
    let now = now_micros();
    // Unique per run, chunk and row: a chunk cut short by a crash is read again under a new
    // snapshot whose rows may differ, so it is published again in full, never half-deduplicated.
    // Everything but the row number is the same for the whole chunk: formatted once.
    let id_prefix = format!(
        "{source}:{}:r{}.{}.{}.",
        reads.consistent_point, reads.attempt, job.table.oid, job.id.index
    );
    let mut grouped = (reads.rows_per_message > 1).then(|| {
        let subject = job.info.subjects[Op::Read as usize].clone();
        EventBatch::new(subject, reads.rows_per_message)
    });
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| table_err(&e))?;
        splitter.push(&data, |line| {
            rows += 1;
            let mut fields = Vec::with_capacity(job.info.kinds.len());
            parse_row(line, rows, &mut fields).map_err(|e| table_err(&e))?;
            let after =
                build_row_from_text(&job.info, &fields, source).map_err(|e| table_err(&e))?;
            let (id, payload) =
                read_event(job, after, &id_prefix, reads.consistent_point, rows, now);
            match &mut grouped {
                None => batch.push(Outbound::Change {
                    msg_id: id,
                    subject: job.info.subjects[Op::Read as usize].clone(),
                    payload,
                    commit_time_micros: now,
                    batchable: false,
                    ends_transaction: false,
                }),
                Some(grouped) => {
                    if let Some(full) = grouped.push(id, payload, now) {
                        batch.push(full);
                    }
                }
            }
            Ok::<(), CopyError>(())
        })?;
        if batch.len() >= BATCH || (grouped.is_some() && !batch.is_empty()) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            out.send(full).await.map_err(|_| CopyError::PublisherGone)?;
        }
    }
    if splitter.has_partial_row() {
        return Err(table_err(&"COPY output ended inside a row"));
    }
    rows_counter.increment(rows);
    if let Some(last) = grouped.as_mut().and_then(EventBatch::finish) {
        batch.push(last);
    }
    batch.push(Outbound::SnapshotChunk { id: job.id.clone() });
    out.send(batch)
        .await
        .map_err(|_| CopyError::PublisherGone)?;
    Ok(rows)
}

fn read_event(
    job: &ChunkJob,
    after: tributary_proto::cdc::v1::Row,
    id_prefix: &str,
    lsn: Lsn,
    n: u64,
    now: i64,
) -> (String, bytes::Bytes) {
    let mut id = String::with_capacity(id_prefix.len() + 20);
    id.push_str(id_prefix);
    // Writing into a String cannot fail.
    let _ = write!(id, "{n}");
    let mut change = PendingChange {
        event: ChangeEvent {
            event_id: id,
            op: Operation::Read as i32,
            after: Some(after),
            commit_lsn: lsn.0,
            commit_time_micros: now,
            captured_at_micros: now,
            ..Default::default()
        },
        static_fields: job.info.static_fields.clone(),
        subject: job.info.subjects[Op::Read as usize].clone(),
    };
    let payload = encode(&change);
    (std::mem::take(&mut change.event.event_id), payload)
}

//! Initial snapshots: the current rows of every published table as `read` events, consistent
//! with the slot, copied in parallel chunks and resumable chunk by chunk.
//!
//! ```text
//!  CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT ──► snapshot S at consistent point C
//!      workers: BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT S; COPY chunk … (N at once)
//!      read events ──► publisher ──► ack ──► chunk done in KV (tributary_snapshots)
//!  then START_REPLICATION from C: changes committed after S follow the reads.
//! ```
//!
//! Exactness: every row visible in S is read once (chunks partition the table under one
//! snapshot) and every change committed after S comes from the slot, which starts at C.
//! Resuming after a crash: finished chunks are not read again; the remaining ones are read under
//! a new snapshot S′ shared by all workers. Rows changed between S and S′ may be read at their
//! S′ value and then receive their older change events, but the change events end with the
//! newest value, so replaying the stream still ends at the table's state.

pub(crate) mod copy_text;
mod worker;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{info, warn};
use tributary_core::Lsn;
use tributary_postgres::snapshot_catalog::{plan_chunks, SnapshotTable};
use tributary_postgres::ControlConnection;

pub use crate::snapshot_state::{
    SnapshotPace, SnapshotState, StateStore, Status, TableProgress, BUCKET as SNAPSHOT_BUCKET,
};

use crate::context::SourceContext;
pub use crate::outbound::ChunkId;
use crate::outbound::Outbound;
use crate::relations::{ColumnSpec, RelationContext, RelationInfo, RelationSpec};
use crate::snapshot_state::ChunkSpec;
use crate::PipelineError;
use worker::{ChunkJob, ChunkOutcome, ReadSettings, Worker};

/// Where the snapshot's transaction snapshot comes from.
pub enum SnapshotSource {
    /// Exported by CREATE_REPLICATION_SLOT: exact with the slot's consistent point.
    Exported(String),
    /// Resuming: a fresh snapshot shared by every worker.
    Fresh,
}

pub struct SnapshotRun<'a> {
    pub ctx: &'a SourceContext,
    pub database: &'a str,
    pub store: &'a StateStore,
    pub out: mpsc::Sender<Vec<Outbound>>,
    pub acked: mpsc::UnboundedReceiver<ChunkId>,
}

impl SnapshotRun<'_> {
    /// Copies what `state` says is left. Returns once every chunk is acknowledged or its table failed.
    pub async fn run(
        mut self,
        source: SnapshotSource,
        mut state: SnapshotState,
        tables: Vec<String>,
    ) -> Result<SnapshotState, PipelineError> {
        let ctx = self.ctx;
        let fail = |m: String| ctx.fatal(m);
        let consistent_point: Lsn = state
            .consistent_point
            .parse()
            .map_err(|e| fail(format!("snapshot state: {e}")))?;
        let control = ControlConnection::connect(&ctx.params)
            .await
            .map_err(|e| ctx.pg_err(e))?;
        // Hold the fresh snapshot open until every worker has imported it.
        let (name, exporter) = match source {
            SnapshotSource::Exported(name) => (name, None),
            SnapshotSource::Fresh => {
                let exporter = ControlConnection::connect(&ctx.params)
                    .await
                    .map_err(|e| ctx.pg_err(e))?;
                exporter
                    .client()
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(|e| ctx.pg_err(e.into()))?;
                let row = exporter
                    .client()
                    .query_one("SELECT pg_export_snapshot()", &[])
                    .await
                    .map_err(|e| ctx.pg_err(e.into()))?;
                (row.get::<_, String>(0), Some(exporter))
            }
        };
        state.attempt += 1;
        state.run_started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        state.rows_at_run_start = state.rows();
        let attempt = state.attempt;
        let parallelism = ctx.config.snapshot_parallelism;
        let mut workers = Vec::with_capacity(parallelism);
        for _ in 0..parallelism {
            workers.push(Worker::open(ctx, &name).await?);
        }
        drop(exporter);

        // Plan tables not planned yet (the first run), inside the snapshot.
        let mut infos = std::collections::HashMap::new();
        for table in &tables {
            let Some((schema, name)) = table.split_once('.') else {
                continue;
            };
            let entry = state.tables.entry(table.clone()).or_default();
            if entry.failed.is_some() {
                continue;
            }
            let described = match control.snapshot_table(schema, name).await {
                Ok(t) => t,
                Err(e) => {
                    fail_table(entry, table, &e.to_string());
                    continue;
                }
            };
            if entry.chunks.is_empty() && entry.done.is_empty() {
                // A failed statement aborts the snapshot transaction unless it ran in a savepoint.
                let client = workers[0].client();
                client
                    .batch_execute("SAVEPOINT plan")
                    .await
                    .map_err(|e| ctx.pg_err(e.into()))?;
                match plan_chunks(client, &described, ctx.config.snapshot_chunk_rows).await {
                    Ok(chunks) => {
                        client
                            .batch_execute("RELEASE SAVEPOINT plan")
                            .await
                            .map_err(|e| ctx.pg_err(e.into()))?;
                        entry.chunks = chunks.iter().map(ChunkSpec::from).collect();
                        entry.estimated_rows = described.estimated_rows;
                    }
                    Err(e) => {
                        client
                            .batch_execute("ROLLBACK TO SAVEPOINT plan")
                            .await
                            .map_err(|e| ctx.pg_err(e.into()))?;
                        fail_table(entry, table, &e.to_string());
                        continue;
                    }
                }
            }
            let info = relation_info(ctx, self.database, &described);
            // Before the workers publish rows naming it.
            ctx.ensure_schema(&info).await?;
            infos.insert(table.clone(), (Arc::new(info), described));
        }
        self.store
            .save(&state)
            .await
            .map_err(|e| ctx.state_err(e))?;

        let mut jobs = VecDeque::new();
        for (table, progress) in &state.tables {
            if progress.failed.is_some() {
                continue;
            }
            let Some((info, described)) = infos.get(table) else {
                continue;
            };
            metrics::gauge!(crate::metrics::SNAPSHOT_ROWS_ESTIMATED, "source" => ctx.config.name.clone(), "table" => table.clone())
                .set(progress.estimated_rows as f64);
            for (index, chunk) in progress.chunks.iter().enumerate() {
                if !progress.done.contains(&index) {
                    jobs.push_back(ChunkJob {
                        id: ChunkId {
                            table: Arc::from(table.as_str()),
                            index,
                        },
                        range: chunk.into(),
                        table: described.clone(),
                        info: info.clone(),
                    });
                }
            }
        }
        let total = jobs.len();
        info!(source = %ctx.config.name, chunks = total, tables = state.tables.len(), parallelism, "snapshot: copying");
        let queue = Arc::new(Mutex::new(jobs));
        let (outcome_tx, mut outcomes) = mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in workers {
            let queue = queue.clone();
            let out = self.out.clone();
            let outcome_tx = outcome_tx.clone();
            let reads = ReadSettings {
                source: ctx.config.name.clone(),
                consistent_point,
                attempt,
                rows_per_message: ctx.config.snapshot_rows_per_message,
            };
            tasks.spawn(async move { worker.run(queue, out, outcome_tx, reads).await });
        }
        drop(outcome_tx);

        let mut pending = total;
        let mut workers_done = false;
        // A chunk is recorded when both its ack and its worker's report have arrived.
        let mut acked_early: Vec<ChunkId> = Vec::new();
        let mut waiting: Vec<(ChunkId, tokio::sync::oneshot::Sender<()>)> = Vec::new();
        // Until every chunk is recorded and every worker has reported (a worker waits for its
        // chunk's record, which may come before or after its report).
        while pending > 0 || !workers_done {
            tokio::select! {
                acked = self.acked.recv(), if pending > 0 => {
                    let Some(id) = acked else {
                        // The publisher's own error (e.g. a predecessor's last messages landing
                        // after ours) is transient: the session restarts and resumes the snapshot.
                        return Err(PipelineError::PublisherGone {
                            source_name: ctx.config.name.clone(),
                            message: "stopped during the snapshot".into(),
                        });
                    };
                    let Some(p) = state.tables.get_mut(id.table.as_ref()) else { continue };
                    if p.done.insert(id.index) {
                        pending -= 1;
                    }
                    if p.finished() {
                        info!(source = %ctx.config.name, table = %id.table, rows = p.rows, "snapshot: table copied");
                    }
                    self.store.save(&state).await.map_err(|e| ctx.state_err(e))?;
                    match waiting.iter().position(|(w, _)| *w == id) {
                        Some(i) => {
                            let _ = waiting.swap_remove(i).1.send(());
                        }
                        None => acked_early.push(id),
                    }
                }
                outcome = outcomes.recv(), if !workers_done => match outcome {
                    Some(ChunkOutcome::Copied { id, rows, recorded }) => {
                        if let Some(p) = state.tables.get_mut(id.table.as_ref()) {
                            p.rows += rows;
                        }
                        match acked_early.iter().position(|a| *a == id) {
                            Some(i) => {
                                acked_early.swap_remove(i);
                                let _ = recorded.send(());
                            }
                            None => waiting.push((id, recorded)),
                        }
                    }
                    Some(ChunkOutcome::Failed { id, error }) => {
                        if let Some(p) = state.tables.get_mut(id.table.as_ref()) {
                            if p.failed.is_none() {
                                let left = p.chunks.len() - p.done.len();
                                fail_table(p, &id.table, &error);
                                pending = pending.saturating_sub(left);
                                // Its other chunks are skipped by the workers.
                                queue.lock().map(|mut q| q.retain(|j| j.id.table != id.table)).ok();
                            }
                        }
                        self.store.save(&state).await.map_err(|e| ctx.state_err(e))?;
                    }
                    None => workers_done = true,
                }
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(fail(format!("snapshot worker: {e}"))),
            }
        }
        state.status = Status::Done;
        self.store
            .save(&state)
            .await
            .map_err(|e| ctx.state_err(e))?;
        let failed: Vec<&String> = state
            .tables
            .iter()
            .filter(|(_, p)| p.failed.is_some())
            .map(|(t, _)| t)
            .collect();
        info!(source = %ctx.config.name, failed = ?failed, "snapshot: done");
        Ok(state)
    }
}

fn fail_table(p: &mut TableProgress, table: &str, error: &str) {
    warn!(%table, %error, "snapshot: table not copied; the other tables and the stream go on");
    p.failed = Some(error.to_string());
}

fn relation_info(ctx: &SourceContext, database: &str, t: &SnapshotTable) -> RelationInfo {
    table_relation(
        &ctx.config.name,
        database,
        &ctx.subject_prefix,
        ctx.config.schema,
        t,
    )
}

/// Event metadata of a table described from the catalog (not from a Relation message).
pub(crate) fn table_relation(
    source: &str,
    database: &str,
    subject_prefix: &str,
    schema_mode: tributary_config::SchemaMode,
    t: &SnapshotTable,
) -> RelationInfo {
    let tables = std::collections::HashSet::new();
    let rctx = RelationContext {
        source,
        database,
        subject_prefix,
        tables: &tables,
        schema_mode,
    };
    RelationInfo::build(
        &rctx,
        RelationSpec {
            oid: t.oid,
            schema: &t.schema,
            table: &t.name,
            columns: t
                .columns
                .iter()
                .map(|c| ColumnSpec {
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    type_modifier: c.type_modifier,
                    type_name: c.type_name.clone(),
                    kind: c.kind.clone(),
                    key: c.key,
                })
                .collect(),
        },
    )
}

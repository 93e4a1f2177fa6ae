//! One replication session of one source: connect, check the slot, stream, publish, confirm.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tributary_config::{ResolvedStream, SnapshotMode};
use tributary_core::Lsn;
use tributary_postgres::control::SlotInfo;
use tributary_postgres::replication::{ReplicationConnection, StartOptions};
use tributary_postgres::{ControlConnection, PgError};

use crate::context::SourceContext;
use crate::metrics as m;
use crate::publish::PublishTask;
use crate::session::{Session, SessionParts};
use crate::snapshot::{
    SnapshotRun, SnapshotSource, SnapshotState, StateStore, Status as SnapshotStatus,
};
use crate::spool::Spool;
use crate::transaction::tail_position;
use crate::PipelineError;

const CHANNEL_BATCHES: usize = 32;

/// The stream of the source `source` (`stream`: its resolved settings).
pub fn source_stream(
    stream: ResolvedStream,
    subject_prefix: &str,
    source: &str,
) -> tributary_nats::StreamSpec {
    tributary_nats::StreamSpec {
        settings: stream,
        subjects: vec![tributary_nats::subject::source_wildcard(
            subject_prefix,
            source,
        )],
        component: format!("source:{source}"),
        name_key: "sources.stream.name",
    }
}

impl SourceContext {
    /// Publication present (or created) and covering the configured tables.
    pub(crate) async fn check_publication(
        &self,
        control: &ControlConnection,
    ) -> Result<(), PipelineError> {
        let publication = &self.config.publication;
        if !control
            .publication_exists(publication)
            .await
            .map_err(|e| self.pg_err(e))?
        {
            if !self.config.create_publication {
                return Err(self.fatal(format!(
                    "publication {publication:?} does not exist in database {:?} (config key `sources.publication`); \
                     create it (CREATE PUBLICATION {publication} FOR TABLE …) or set create_publication = true",
                    self.params.dbname
                )));
            }
            control
                .create_publication(publication, &self.config.tables)
                .await
                .map_err(|e| self.pg_err(e))?;
            info!(source = self.name(), publication, "created publication");
        }
        let covered: HashSet<String> = control
            .publication_tables(publication)
            .await
            .map_err(|e| self.pg_err(e))?
            .into_iter()
            .collect();
        let missing: Vec<&String> = self
            .config
            .tables
            .iter()
            .filter(|t| !covered.contains(*t))
            .collect();
        if !missing.is_empty() {
            return Err(self.fatal(format!(
                "publication {publication:?} does not cover {missing:?} (config key `sources.tables`): \
                 ALTER PUBLICATION {publication} ADD TABLE …"
            )));
        }
        self.check_replica_identity(control, covered).await
    }

    /// An existing slot of this name must be a pgoutput logical slot of this source's database:
    /// slot names are per server, so it may be another source's (preflight's `slot` check).
    pub(crate) fn check_slot_kind(&self, info: &SlotInfo) -> Result<(), PipelineError> {
        if info.slot_type != "logical" || info.plugin.as_deref() != Some("pgoutput") {
            return Err(self.pg_err(PgError::SlotWrongPlugin {
                slot: self.config.slot.clone(),
                plugin: info
                    .plugin
                    .clone()
                    .unwrap_or_else(|| format!("none ({} slot)", info.slot_type)),
            }));
        }
        if info.database.as_deref() != Some(self.params.dbname.as_str()) {
            return Err(self.pg_err(PgError::SlotOtherDatabase {
                slot: self.config.slot.clone(),
                database: info.database.clone().unwrap_or_default(),
                expected: self.params.dbname.clone(),
            }));
        }
        Ok(())
    }

    /// The same rule as preflight's `replica_identity` check: a published table whose
    /// UPDATEs and DELETEs PostgreSQL rejects is a set-up error, not something to stream past.
    async fn check_replica_identity(
        &self,
        control: &ControlConnection,
        published: HashSet<String>,
    ) -> Result<(), PipelineError> {
        let mut names: Vec<(String, String)> = published
            .iter()
            .filter_map(|t| t.split_once('.'))
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect();
        names.sort();
        let tables = control
            .table_info(&names)
            .await
            .map_err(|e| self.pg_err(e))?;
        let bad: Vec<String> = tables
            .iter()
            .filter_map(|t| {
                t.identity_problem()
                    .map(|p| format!("{} ({p})", t.qualified()))
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        Err(self.fatal(format!(
            "publication {:?} publishes tables without a usable replica identity: {}; PostgreSQL rejects \
             their UPDATEs and DELETEs: give each a primary key (ALTER TABLE … ADD PRIMARY KEY) or \
             ALTER TABLE … REPLICA IDENTITY FULL (`tributary preflight` lists them too)",
            self.config.publication,
            bad.join(", ")
        )))
    }

    /// Runs one session until shutdown (Ok) or an error.
    pub async fn run_session(&self, shutdown: &CancellationToken) -> Result<(), PipelineError> {
        let control = ControlConnection::connect(&self.params)
            .await
            .map_err(|e| self.pg_err(e))?;
        control.check_server().await.map_err(|e| self.pg_err(e))?;
        self.check_publication(&control).await?;

        let spec = source_stream(self.stream.clone(), &self.subject_prefix, self.name());
        let mut stream = tributary_nats::ensure_stream(&self.js, &spec)
            .await
            .map_err(|e| self.nats_err(e))?;
        let tail = tributary_nats::stream_tail(&mut stream)
            .await
            .map_err(|e| self.nats_err(e))?;
        let last_sequence = tail.last_sequence;
        let watermark = tail_position(
            tail.subject.as_deref(),
            tail.msg_id.as_deref(),
            tail.payload.as_ref(),
        );

        let slot = control
            .slot(&self.config.slot)
            .await
            .map_err(|e| self.pg_err(e))?;
        let mut replication = ReplicationConnection::connect(&self.params)
            .await
            .map_err(|e| self.pg_err(e))?;
        let identity = replication
            .identify_system()
            .await
            .map_err(|e| self.pg_err(e))?;
        let mode = self.config.snapshot;
        let store = match mode {
            SnapshotMode::Never => None,
            _ => Some(
                StateStore::open(&self.js, self.name(), self.stream.replicas)
                    .await
                    .map_err(|e| self.state_err(e))?,
            ),
        };
        let mut snapshot = None;
        // initial_only drops its slot when done: a completed snapshot means nothing to do.
        if let (SnapshotMode::InitialOnly, Some(store)) = (mode, &store) {
            let state = store.load().await.map_err(|e| self.state_err(e))?;
            if state.is_some_and(|s| s.status == SnapshotStatus::Done) {
                info!(
                    source = self.name(),
                    "snapshot already complete (snapshot = \"initial_only\")"
                );
                return Ok(());
            }
        }
        match slot {
            None if last_sequence > 0 => {
                return Err(self.pg_err(PgError::SlotMissing {
                    slot: self.config.slot.clone(),
                    missing_since_restart: true,
                }))
            }
            None => {
                let created = replication
                    .create_slot(&self.config.slot, store.is_some())
                    .await
                    .map_err(|e| self.pg_err(e))?;
                info!(source = self.name(), slot = %self.config.slot, consistent_point = %created.consistent_point, "created replication slot");
                if let (Some(name), Some(_)) = (created.snapshot_name, &store) {
                    snapshot = Some((
                        SnapshotSource::Exported(name),
                        SnapshotState::new(created.consistent_point),
                    ));
                }
            }
            Some(info) => {
                self.check_slot_kind(&info)?;
                if info.wal_status.as_deref() == Some("lost") {
                    return Err(self.pg_err(PgError::SlotInvalidated {
                        slot: self.config.slot.clone(),
                        reason: "wal_status = lost".into(),
                        confirmed: info.confirmed_flush.unwrap_or_default(),
                    }));
                }
                if let Some(store) = &store {
                    match store.load().await.map_err(|e| self.state_err(e))? {
                        Some(state) if state.status == SnapshotStatus::InProgress => {
                            info!(source = self.name(), "resuming the interrupted snapshot");
                            snapshot = Some((SnapshotSource::Fresh, state));
                        }
                        _ => {}
                    }
                }
            }
        }

        let (confirmed_tx, confirmed_rx) = watch::channel(Lsn::ZERO);
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let (chunks_tx, chunks_rx) = mpsc::unbounded_channel();
        let publisher = PublishTask {
            source: self.name().to_string(),
            lag_budget: Duration::from_secs(self.config.lag_budget_secs),
            publisher: tributary_nats::OrderedPublisher::new(
                self.js.clone(),
                self.nats.clone(),
                last_sequence,
            )
            .with_msg_id(self.msg_id_header),
            window: self.ack_window,
            confirm_delay: self.confirm_delay,
            confirmed: confirmed_tx,
            chunks_acked: Some(chunks_tx),
        };
        let mut publisher = tokio::spawn(publisher.run(rx));

        if let (Some((source, state)), Some(store)) = (snapshot, &store) {
            let tables = if self.config.tables.is_empty() {
                control
                    .publication_tables(&self.config.publication)
                    .await
                    .map_err(|e| self.pg_err(e))?
            } else {
                self.config.tables.clone()
            };
            let run = SnapshotRun {
                ctx: self,
                database: &identity.dbname,
                store,
                out: tx.clone(),
                acked: chunks_rx,
            };
            if let Err(e) = run.run(source, state, tables).await {
                publisher.abort();
                return Err(e);
            }
            // The exported snapshot is no longer needed; stream on a fresh connection.
            replication.close().await;
            if mode == SnapshotMode::InitialOnly {
                drop(tx);
                let drained = (&mut publisher).await;
                if let Ok(Err(e)) = drained {
                    return Err(self.nats_err(e));
                }
                control
                    .drop_slot(&self.config.slot)
                    .await
                    .map_err(|e| self.pg_err(e))?;
                info!(source = self.name(), slot = %self.config.slot, "snapshot complete; slot dropped (snapshot = \"initial_only\")");
                return Ok(());
            }
            replication = ReplicationConnection::connect(&self.params)
                .await
                .map_err(|e| self.pg_err(e))?;
        }

        // Protocol 2 streams in-progress transactions (PostgreSQL 14+); they are spooled to
        // disk until they commit, so that memory stays flat and aborted work is never published.
        let streaming = self.config.streaming
            && control
                .server_version_num()
                .await
                .map_err(|e| self.pg_err(e))?
                >= 140_000;
        let start = StartOptions {
            slot: self.config.slot.clone(),
            start: Lsn::ZERO,
            publication: self.config.publication.clone(),
            proto_version: if streaming { 2 } else { 1 },
            messages: true,
            streaming,
        };
        // One directory per source and process: a session clears its directory when it starts,
        // so two bridges on one host (or a test suite) must never share one.
        let spool_dir = match &self.config.spool_dir {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join("tributary-spool"),
        }
        .join(format!("{}-{}", self.config.name, std::process::id()));
        let spool = Spool::open(spool_dir)
            .map_err(|e| self.fatal(format!("config key `sources.spool_dir`: {e}")))?;
        if self.take_over_slot {
            if let Err(e) = self.take_over_slot(&control).await {
                publisher.abort();
                return Err(e);
            }
        }
        let repl = match replication.start_replication(&start).await {
            Ok(r) => r,
            Err(e) => {
                publisher.abort();
                return Err(self.pg_err(e));
            }
        };
        info!(source = self.name(), slot = %self.config.slot, last_sequence, watermark = ?watermark, streaming, "streaming");
        let heartbeat = spawn_heartbeat(self, control, shutdown.child_token());

        let session = Session::new(SessionParts {
            ctx: self,
            database: identity.dbname,
            watermark,
            spool,
            out: tx,
            confirmed: confirmed_rx,
            publisher,
        });
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_UP, "source" => self.name().to_string()).set(1.0);
        let result = session.run(repl, shutdown).await;
        self.ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_UP, "source" => self.name().to_string()).set(0.0);
        heartbeat.abort();
        result
    }
}

impl SourceContext {
    /// HA mode: the slot admits one reader, and a replica that lost the lease (paused, cut
    /// off) may still hold it. Once this replica's fence is valid, that walsender is
    /// terminated; its owner can no longer confirm anything (its connection is gone and its
    /// own fence refuses).
    async fn take_over_slot(&self, control: &ControlConnection) -> Result<(), PipelineError> {
        let fenced = |error| PipelineError::Fenced {
            source_name: self.name().to_string(),
            error,
        };
        for _ in 0..50 {
            let Some(info) = control
                .slot(&self.config.slot)
                .await
                .map_err(|e| self.pg_err(e))?
            else {
                return Ok(());
            };
            let Some(pid) = info.active_pid.filter(|_| info.active) else {
                return Ok(());
            };
            self.fence.get().check().map_err(fenced)?;
            warn!(source = self.name(), slot = %self.config.slot, pid, "slot held by a walsender of a replica that lost the lease; terminating it");
            control
                .terminate_slot_holder(pid)
                .await
                .map_err(|e| self.pg_err(e))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

fn spawn_heartbeat(
    ctx: &SourceContext,
    control: ControlConnection,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs(ctx.config.heartbeat_interval_secs);
    let source = ctx.name().to_string();
    let counter = metrics::counter!(m::HEARTBEATS, "source" => source.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match control.emit_heartbeat().await {
                Ok(lsn) => {
                    counter.increment(1);
                    debug!(%source, %lsn, "heartbeat");
                }
                // Fails on a standby or where EXECUTE on pg_logical_emit_message was revoked; the
                // keepalive path still advances the slot.
                Err(e) => warn!(%source, error = %e, "heartbeat failed"),
            }
        }
    })
}

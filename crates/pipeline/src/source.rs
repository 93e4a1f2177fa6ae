//! One replication session of one source: connect, check the slot, stream, publish, confirm.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tributary_config::{ResolvedStream, SourceConfig};
use tributary_core::Lsn;
use tributary_nats::NatsError;
use tributary_postgres::control::HEARTBEAT_PREFIX;
use tributary_postgres::pgoutput::{self, OldTuple, PgOutputMessage};
use tributary_postgres::replication::{
    ReplicationConnection, ReplicationMessage, ReplicationStream, StartOptions,
};
use tributary_postgres::values::TypeKind;
use tributary_postgres::{ConnectParams, ControlConnection, PgError};
use tributary_proto::cdc::v1::{ChangeEvent, LogicalMessage, Operation};

use crate::event::{build_row, changed_columns};
use crate::metrics as m;
use crate::publish::{now_micros, PublishTask};
use crate::relations::{ColumnSpec, Op, RelationCache, RelationContext, RelationSpec};
use crate::transaction::{
    encode, event_id, parse_event_id, OpenTransaction, Outbound, PendingChange, Position,
};
use crate::PipelineError;

const BATCH: usize = 512;
const CHANNEL_BATCHES: usize = 32;

/// Everything a source session needs; shared by its successive sessions.
pub struct SourceContext {
    pub config: SourceConfig,
    pub params: ConnectParams,
    pub js: async_nats::jetstream::Context,
    pub nats: async_nats::Client,
    pub stream: ResolvedStream,
    pub subject_prefix: String,
    pub ack_window: usize,
    pub confirm_delay: Duration,
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

impl SourceContext {
    fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn pg_err(&self, error: PgError) -> PipelineError {
        PipelineError::Postgres {
            source_name: self.name().to_string(),
            error,
        }
    }

    pub(crate) fn nats_err(&self, error: NatsError) -> PipelineError {
        PipelineError::Nats {
            source_name: self.name().to_string(),
            error,
        }
    }

    fn fatal(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::Fatal {
            source_name: self.name().to_string(),
            message: message.into(),
        }
    }

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
        Ok(())
    }

    /// Runs one session until shutdown (Ok) or an error.
    pub async fn run_session(&self, shutdown: &CancellationToken) -> Result<(), PipelineError> {
        let control = ControlConnection::connect(&self.params)
            .await
            .map_err(|e| self.pg_err(e))?;
        control.check_server().await.map_err(|e| self.pg_err(e))?;
        self.check_publication(&control).await?;

        let subjects = vec![tributary_nats::subject::source_wildcard(
            &self.subject_prefix,
            self.name(),
        )];
        let mut stream = tributary_nats::ensure_stream(&self.js, &self.stream, subjects)
            .await
            .map_err(|e| self.nats_err(e))?;
        let (last_sequence, last_id) = tributary_nats::last_message_id(&mut stream)
            .await
            .map_err(|e| self.nats_err(e))?;
        let watermark = last_id.as_deref().and_then(parse_event_id);

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
        match slot {
            None if last_sequence > 0 => {
                return Err(self.pg_err(PgError::SlotMissing {
                    slot: self.config.slot.clone(),
                    missing_since_restart: true,
                }))
            }
            None => {
                let created = replication
                    .create_slot(&self.config.slot, false)
                    .await
                    .map_err(|e| self.pg_err(e))?;
                info!(source = self.name(), slot = %self.config.slot, consistent_point = %created.consistent_point, "created replication slot");
            }
            Some(info) => {
                if info.plugin.as_deref() != Some("pgoutput") {
                    return Err(self.pg_err(PgError::SlotWrongPlugin {
                        slot: self.config.slot.clone(),
                        plugin: info.plugin.unwrap_or_default(),
                    }));
                }
                if info.wal_status.as_deref() == Some("lost") {
                    return Err(self.pg_err(PgError::SlotInvalidated {
                        slot: self.config.slot.clone(),
                        reason: "wal_status = lost".into(),
                        confirmed: info.confirmed_flush.unwrap_or_default(),
                    }));
                }
            }
        }
        let start = StartOptions {
            slot: self.config.slot.clone(),
            start: Lsn::ZERO,
            publication: self.config.publication.clone(),
            proto_version: 1,
            messages: true,
            streaming: false,
        };
        let repl = replication
            .start_replication(&start)
            .await
            .map_err(|e| self.pg_err(e))?;
        info!(source = self.name(), slot = %self.config.slot, last_sequence, watermark = ?watermark, "streaming");

        let (confirmed_tx, confirmed_rx) = watch::channel(Lsn::ZERO);
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let publisher = PublishTask {
            source: self.name().to_string(),
            publisher: tributary_nats::OrderedPublisher::new(
                self.js.clone(),
                self.nats.clone(),
                last_sequence,
            ),
            window: self.ack_window,
            confirm_delay: self.confirm_delay,
            confirmed: confirmed_tx,
        };
        let mut publisher = tokio::spawn(publisher.run(rx));
        let heartbeat = spawn_heartbeat(self, control, shutdown.child_token());

        let tables: HashSet<String> = self.config.tables.iter().cloned().collect();
        let mut session = Session {
            ctx: self,
            database: identity.dbname,
            tables,
            relations: RelationCache::default(),
            type_control: None,
            tx: None,
            watermark,
            batch: Vec::with_capacity(BATCH),
            last_checkpoint: Lsn::ZERO,
            server_wal_end: Lsn::ZERO,
            lag_bytes: metrics::gauge!(m::LAG_BYTES, "source" => self.name().to_string()),
            server_lsn: metrics::gauge!(m::SERVER_WAL_LSN, "source" => self.name().to_string()),
            transactions: metrics::counter!(m::TRANSACTIONS, "source" => self.name().to_string()),
            skipped: metrics::counter!(m::SKIPPED_RESENT, "source" => self.name().to_string()),
        };
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_UP, "source" => self.name().to_string()).set(1.0);
        let result = session
            .stream(repl, tx, confirmed_rx, &mut publisher, shutdown)
            .await;
        self.ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(m::SOURCE_UP, "source" => self.name().to_string()).set(0.0);
        heartbeat.abort();
        result
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
                // A read-only role cannot write messages; the keepalive path still advances the slot.
                Err(e) => warn!(%source, error = %e, "heartbeat failed"),
            }
        }
    })
}

struct Session<'a> {
    ctx: &'a SourceContext,
    database: String,
    tables: HashSet<String>,
    relations: RelationCache,
    /// Connection for catalog look-ups of types, opened when a relation needs one.
    type_control: Option<ControlConnection>,
    tx: Option<OpenTransaction>,
    /// Position of the last change the stream already holds: re-sent changes up to it are skipped.
    watermark: Option<Position>,
    batch: Vec<Outbound>,
    last_checkpoint: Lsn,
    server_wal_end: Lsn,
    lag_bytes: metrics::Gauge,
    server_lsn: metrics::Gauge,
    transactions: metrics::Counter,
    skipped: metrics::Counter,
}

type PublisherHandle = tokio::task::JoinHandle<Result<(), NatsError>>;

impl Session<'_> {
    async fn stream(
        &mut self,
        mut repl: ReplicationStream,
        tx: mpsc::Sender<Vec<Outbound>>,
        mut confirmed: watch::Receiver<Lsn>,
        publisher: &mut PublisherHandle,
        shutdown: &CancellationToken,
    ) -> Result<(), PipelineError> {
        let status_every = Duration::from_millis(self.ctx.config.status_interval_ms);
        let mut ticker = tokio::time::interval(status_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = Instant::now();
        let outcome: Result<(), PipelineError> = async {
            loop {
                let mut reply = false;
                while let Some(msg) = repl.try_next().map_err(|e| self.ctx.pg_err(e))? {
                    match msg {
                        ReplicationMessage::XLogData {
                            wal_start,
                            wal_end,
                            data,
                        } => {
                            self.note_server_end(wal_end);
                            self.handle(wal_start, data).await?;
                        }
                        ReplicationMessage::Keepalive {
                            wal_end,
                            reply_requested,
                        } => {
                            self.note_server_end(wal_end);
                            reply |= reply_requested;
                            if self.tx.is_none() && wal_end > self.last_checkpoint {
                                self.last_checkpoint = wal_end;
                                self.batch.push(Outbound::Checkpoint { lsn: wal_end });
                            }
                        }
                    }
                    if self.batch.len() >= BATCH {
                        self.send_batch(&tx, &mut repl, &confirmed, &mut ticker, publisher)
                            .await?;
                    }
                }
                if !self.batch.is_empty() {
                    self.send_batch(&tx, &mut repl, &confirmed, &mut ticker, publisher)
                        .await?;
                }
                if reply {
                    self.status(&mut repl, &confirmed, true).await?;
                    last_status = Instant::now();
                }
                tokio::select! {
                    r = repl.fill() => r.map_err(|e| self.ctx.pg_err(e))?,
                    changed = confirmed.changed() => {
                        if changed.is_err() {
                            return Err(publisher_gone(self.ctx, publisher).await);
                        }
                        // Batch status updates: at most one per 20 ms while acks stream in.
                        if last_status.elapsed() >= Duration::from_millis(20) {
                            self.status(&mut repl, &confirmed, false).await?;
                            last_status = Instant::now();
                        }
                    }
                    _ = ticker.tick() => {
                        self.status(&mut repl, &confirmed, false).await?;
                        last_status = Instant::now();
                    }
                    _ = shutdown.cancelled() => return Ok(()),
                    joined = &mut *publisher => return Err(join_error(self.ctx, joined)),
                }
            }
        }
        .await;
        // Drain: let the publisher finish what it has, then confirm it.
        drop(tx);
        let drained = match outcome {
            Ok(()) => match publisher.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(self.ctx.nats_err(e)),
                Err(e) => Err(self.ctx.fatal(format!("publisher task: {e}"))),
            },
            Err(e) => {
                publisher.abort();
                Err(e)
            }
        };
        if drained.is_ok() {
            self.status(&mut repl, &confirmed, false).await?;
            info!(source = self.ctx.name(), confirmed = %*confirmed.borrow(), "stopped");
            repl.close().await;
        }
        drained
    }

    fn note_server_end(&mut self, wal_end: Lsn) {
        if wal_end > self.server_wal_end {
            self.server_wal_end = wal_end;
        }
    }

    async fn status(
        &self,
        repl: &mut ReplicationStream,
        confirmed: &watch::Receiver<Lsn>,
        reply: bool,
    ) -> Result<(), PipelineError> {
        let lsn = *confirmed.borrow();
        repl.send_status(lsn, reply)
            .await
            .map_err(|e| self.ctx.pg_err(e))?;
        let reported = repl.reported_flush();
        self.lag_bytes
            .set(self.server_wal_end.0.saturating_sub(reported.0) as f64);
        self.server_lsn.set(self.server_wal_end.0 as f64);
        Ok(())
    }

    /// Hands the batch to the publisher; while the channel is full, keeps the walsender answered.
    async fn send_batch(
        &mut self,
        tx: &mpsc::Sender<Vec<Outbound>>,
        repl: &mut ReplicationStream,
        confirmed: &watch::Receiver<Lsn>,
        ticker: &mut tokio::time::Interval,
        publisher: &mut PublisherHandle,
    ) -> Result<(), PipelineError> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        loop {
            tokio::select! {
                permit = tx.reserve() => {
                    match permit {
                        Ok(permit) => { permit.send(batch); return Ok(()); }
                        Err(_) => return Err(publisher_gone(self.ctx, publisher).await),
                    }
                }
                _ = ticker.tick() => self.status(repl, confirmed, false).await?,
            }
        }
    }

    async fn handle(&mut self, wal_start: Lsn, data: Bytes) -> Result<(), PipelineError> {
        let message = pgoutput::decode(&data, false).map_err(|e| self.ctx.pg_err(e.into()))?;
        match message {
            PgOutputMessage::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.tx = Some(OpenTransaction::new(
                    final_lsn,
                    pgoutput::pg_epoch_micros_to_unix(commit_time),
                    xid,
                ));
            }
            PgOutputMessage::Commit { end_lsn, .. } => {
                if let Some(mut open) = self.tx.take() {
                    if let Some(last) = open.finish() {
                        self.emit(last);
                    }
                    if open.changes() > 0 {
                        self.transactions.increment(1);
                    }
                }
                self.last_checkpoint = end_lsn;
                self.batch.push(Outbound::Checkpoint { lsn: end_lsn });
            }
            PgOutputMessage::Origin { name, .. } => {
                if let Some(open) = self.tx.as_mut() {
                    open.origin = name.to_string();
                }
            }
            PgOutputMessage::Relation(rel) => self.on_relation(rel).await?,
            PgOutputMessage::Type { .. } => {}
            PgOutputMessage::Insert {
                relation_oid, new, ..
            } => {
                let Some(rel) = self.included(relation_oid)? else {
                    return Ok(());
                };
                let after = build_row(rel, &new, self.ctx.name())
                    .map_err(|e| self.ctx.fatal(e.to_string()))?;
                let event = ChangeEvent {
                    op: Operation::Insert as i32,
                    after: Some(after),
                    lsn: wal_start.0,
                    ..Default::default()
                };
                self.push(relation_oid, Op::Insert, event);
            }
            PgOutputMessage::Update {
                relation_oid,
                old,
                new,
                ..
            } => {
                let Some(rel) = self.included(relation_oid)? else {
                    return Ok(());
                };
                let after = build_row(rel, &new, self.ctx.name())
                    .map_err(|e| self.ctx.fatal(e.to_string()))?;
                let (before, key_only) = match &old {
                    Some(OldTuple::Full(t)) => (
                        Some(
                            build_row(rel, t, self.ctx.name())
                                .map_err(|e| self.ctx.fatal(e.to_string()))?,
                        ),
                        false,
                    ),
                    Some(OldTuple::Key(t)) => (
                        Some(
                            build_row(rel, t, self.ctx.name())
                                .map_err(|e| self.ctx.fatal(e.to_string()))?,
                        ),
                        true,
                    ),
                    None => (None, false),
                };
                let changed = match (&before, key_only) {
                    (Some(b), false) => changed_columns(rel, b, &after),
                    _ => Vec::new(),
                };
                let event = ChangeEvent {
                    op: Operation::Update as i32,
                    before,
                    before_is_key_only: key_only,
                    after: Some(after),
                    changed_columns: changed,
                    lsn: wal_start.0,
                    ..Default::default()
                };
                self.push(relation_oid, Op::Update, event);
            }
            PgOutputMessage::Delete {
                relation_oid, old, ..
            } => {
                let Some(rel) = self.included(relation_oid)? else {
                    return Ok(());
                };
                let key_only = matches!(old, OldTuple::Key(_));
                let before = build_row(rel, old.tuple(), self.ctx.name())
                    .map_err(|e| self.ctx.fatal(e.to_string()))?;
                let event = ChangeEvent {
                    op: Operation::Delete as i32,
                    before: Some(before),
                    before_is_key_only: key_only,
                    lsn: wal_start.0,
                    ..Default::default()
                };
                self.push(relation_oid, Op::Delete, event);
            }
            PgOutputMessage::Truncate {
                options,
                relation_oids,
                ..
            } => {
                for oid in relation_oids {
                    if self.included(oid)?.is_none() {
                        continue;
                    }
                    let event = ChangeEvent {
                        op: Operation::Truncate as i32,
                        truncate_cascade: options & 1 != 0,
                        truncate_restart_identity: options & 2 != 0,
                        lsn: wal_start.0,
                        ..Default::default()
                    };
                    self.push(oid, Op::Truncate, event);
                }
            }
            PgOutputMessage::Message {
                transactional,
                lsn,
                prefix,
                content,
                ..
            } => {
                if prefix != HEARTBEAT_PREFIX {
                    self.on_logical_message(transactional, lsn, prefix, content);
                }
            }
            PgOutputMessage::StreamStart { .. }
            | PgOutputMessage::StreamStop
            | PgOutputMessage::StreamCommit { .. }
            | PgOutputMessage::StreamAbort { .. } => {
                return Err(self.ctx.fatal("the server streams an in-progress transaction although streaming was not requested"));
            }
        }
        Ok(())
    }

    fn included(&self, oid: u32) -> Result<Option<&crate::relations::RelationInfo>, PipelineError> {
        match self.relations.get(oid) {
            Some(rel) if rel.included => Ok(Some(rel)),
            Some(_) => Ok(None),
            None => Err(self.ctx.fatal(format!(
                "change for relation {oid} before its Relation message"
            ))),
        }
    }

    /// Adds a change to the open transaction; the change it releases goes to the batch.
    fn push(&mut self, oid: u32, op: Op, mut event: ChangeEvent) {
        let Some(rel) = self.relations.get(oid) else {
            return;
        };
        rel.counters[op as usize].increment(1);
        let Some(open) = self.tx.as_mut() else { return };
        event.commit_lsn = open.final_lsn.0;
        event.xid = open.xid;
        event.commit_time_micros = open.commit_time_micros;
        event.captured_at_micros = now_micros();
        if !open.origin.is_empty() {
            event.origin = open.origin.clone();
        }
        let change = PendingChange {
            event,
            static_fields: rel.static_fields.clone(),
            subject: rel.subjects[op as usize].clone(),
        };
        if let Some(released) = open.push(change) {
            self.emit(released);
        }
    }

    fn emit(&mut self, mut change: PendingChange) {
        let position = (Lsn(change.event.commit_lsn), change.event.ordinal);
        if self.watermark.is_some_and(|w| position <= w) {
            self.skipped.increment(1);
            return;
        }
        let id = event_id(self.ctx.name(), position.0, position.1);
        change.event.event_id = id.clone();
        let payload = encode(&change);
        self.batch.push(Outbound::Change {
            subject: change.subject,
            msg_id: id,
            payload,
            commit_time_micros: change.event.commit_time_micros,
        });
    }

    fn on_logical_message(&mut self, transactional: bool, lsn: Lsn, prefix: &str, content: &[u8]) {
        let subject = async_nats::Subject::from(format!(
            "{}.{}._message.{}",
            self.ctx.subject_prefix,
            tributary_nats::subject::token(self.ctx.name()),
            tributary_nats::subject::token(prefix)
        ));
        let event = ChangeEvent {
            source: self.ctx.name().to_string(),
            database: self.database.clone(),
            op: Operation::Message as i32,
            lsn: lsn.0,
            message: Some(LogicalMessage {
                prefix: prefix.to_string(),
                content: Bytes::copy_from_slice(content),
                transactional,
            }),
            ..Default::default()
        };
        match self.tx.as_mut() {
            Some(open) if transactional => {
                let mut event = event;
                event.commit_lsn = open.final_lsn.0;
                event.xid = open.xid;
                event.commit_time_micros = open.commit_time_micros;
                event.captured_at_micros = now_micros();
                let change = PendingChange {
                    event,
                    static_fields: Bytes::new(),
                    subject,
                };
                if let Some(released) = open.push(change) {
                    self.emit(released);
                }
            }
            _ => {
                // A non-transactional message stands alone: it is its own "transaction" at its LSN.
                let mut change = PendingChange {
                    event,
                    static_fields: Bytes::new(),
                    subject,
                };
                change.event.commit_lsn = lsn.0;
                change.event.ordinal = 1;
                change.event.transaction_changes = 1;
                change.event.last_in_transaction = true;
                change.event.captured_at_micros = now_micros();
                self.emit(change);
            }
        }
    }

    async fn on_relation(&mut self, rel: pgoutput::Relation<'_>) -> Result<(), PipelineError> {
        let mut unknown: Vec<u32> = Vec::new();
        for c in &rel.columns {
            if !unknown.contains(&c.type_oid) {
                unknown.push(c.type_oid);
            }
        }
        if self.type_control.is_none() {
            self.type_control = Some(
                ControlConnection::connect(&self.ctx.params)
                    .await
                    .map_err(|e| self.ctx.pg_err(e))?,
            );
        }
        let Some(control) = self.type_control.as_ref() else {
            return Ok(());
        };
        let mut columns = Vec::with_capacity(rel.columns.len());
        for c in &rel.columns {
            let kind = match TypeKind::from_builtin_oid(c.type_oid) {
                Some(k) => k,
                None => control
                    .resolve_type(c.type_oid)
                    .await
                    .map_err(|e| self.ctx.pg_err(e))?,
            };
            let type_name = control
                .type_name(c.type_oid)
                .await
                .map_err(|e| self.ctx.pg_err(e))?;
            columns.push(ColumnSpec {
                name: c.name.to_string(),
                type_oid: c.type_oid,
                type_modifier: c.type_modifier,
                type_name,
                kind,
                key: c.key,
            });
        }
        let ctx = RelationContext {
            source: self.ctx.name(),
            database: &self.database,
            subject_prefix: &self.ctx.subject_prefix,
            tables: &self.tables,
        };
        let info = self.relations.insert(
            &ctx,
            RelationSpec {
                oid: rel.oid,
                schema: rel.namespace,
                table: rel.name,
                columns,
            },
        );
        debug!(source = self.ctx.name(), table = %info.qualified_name(), included = info.included, columns = info.names.len(), "relation");
        Ok(())
    }
}

/// The publisher's own error when it stopped with one. Only for a task not yet joined.
async fn publisher_gone(ctx: &SourceContext, publisher: &mut PublisherHandle) -> PipelineError {
    join_error(ctx, publisher.await)
}

fn join_error(
    ctx: &SourceContext,
    joined: Result<Result<(), NatsError>, tokio::task::JoinError>,
) -> PipelineError {
    let message = match joined {
        Ok(Ok(())) => "ended".to_string(),
        Ok(Err(e)) => return ctx.nats_err(e),
        Err(e) => e.to_string(),
    };
    PipelineError::PublisherGone {
        source_name: ctx.name().to_string(),
        message,
    }
}

//! From pgoutput messages to change events: transactions, relations, rows, logical messages,
//! and in-progress transactions spooled until they commit.

use bytes::Bytes;
use tracing::debug;
use tributary_core::Lsn;
use tributary_postgres::control::HEARTBEAT_PREFIX;
use tributary_postgres::pgoutput::{self, OldTuple, PgOutputMessage};
use tributary_postgres::replication::ReplicationStream;
use tributary_postgres::values::TypeKind;
use tributary_postgres::ControlConnection;
use tributary_proto::cdc::v1::{ChangeEvent, LogicalMessage, Operation};

use crate::backfill::signal_request;
use crate::event::{build_row, changed_columns};
use crate::outbound::{now_micros, Outbound};
use crate::relations::{ColumnSpec, Op, RelationContext, RelationSpec};
use crate::session::Session;
use crate::transaction::{encode, event_id, OpenTransaction, PendingChange};
use crate::PipelineError;

/// With a full before image (REPLICA IDENTITY FULL) an untouched TOASTed value is known:
/// PostgreSQL still marks it unchanged in the new row, so take it from the old one.
fn fill_unchanged(
    after: &mut tributary_proto::cdc::v1::Row,
    before: &tributary_proto::cdc::v1::Row,
) {
    use tributary_proto::cdc::v1::value::Kind;
    for (a, b) in after.values.iter_mut().zip(&before.values) {
        if matches!(a.kind, Some(Kind::Unchanged(_))) && !matches!(b.kind, Some(Kind::Unchanged(_)))
        {
            a.kind = b.kind.clone();
        }
    }
}

impl Session<'_> {
    /// One XLogData payload: decoded and applied, or spooled while a transaction streams.
    pub async fn handle(
        &mut self,
        repl: &mut ReplicationStream,
        wal_start: Lsn,
        data: &[u8],
    ) -> Result<(), PipelineError> {
        let message = pgoutput::decode(data, self.stream_xid.is_some())
            .map_err(|e| self.ctx.pg_err(e.into()))?;
        match message {
            PgOutputMessage::StreamStart { xid, first_segment } => {
                if first_segment {
                    debug!(source = %self.ctx.config.name, xid, spooled = self.spool.open_transactions() + 1, "spooling an in-progress transaction");
                }
                self.stream_xid = Some(xid);
            }
            PgOutputMessage::StreamStop => self.stream_xid = None,
            PgOutputMessage::StreamAbort { xid, subxid } => {
                self.spool
                    .abort(xid, subxid)
                    .map_err(|e| self.ctx.fatal(e.to_string()))?;
            }
            PgOutputMessage::StreamCommit {
                xid,
                end_lsn,
                commit_lsn,
                commit_time,
                ..
            } => {
                self.replay_streamed(repl, xid, commit_lsn, commit_time, end_lsn)
                    .await?;
            }
            message => match self.stream_xid {
                Some(top_xid) => {
                    // A relation's shape applies from now on; it is also replayed in order.
                    if let PgOutputMessage::Relation(rel) = message {
                        self.on_relation(rel).await?;
                    }
                    let xid = pgoutput::message_xid(data).unwrap_or(top_xid);
                    self.spool
                        .append(top_xid, xid, wal_start, data)
                        .map_err(|e| self.ctx.fatal(e.to_string()))?;
                }
                None => self.apply(wal_start, message).await?,
            },
        }
        Ok(())
    }

    /// Publishes a streamed transaction from the spool once it commits.
    async fn replay_streamed(
        &mut self,
        repl: &mut ReplicationStream,
        xid: u32,
        commit_lsn: Lsn,
        commit_time: i64,
        end_lsn: Lsn,
    ) -> Result<(), PipelineError> {
        self.tx = Some(OpenTransaction::new(
            commit_lsn,
            pgoutput::pg_epoch_micros_to_unix(commit_time),
            xid,
        ));
        if let Some(mut replay) = self
            .spool
            .commit(xid)
            .map_err(|e| self.ctx.fatal(e.to_string()))?
        {
            let mut buf = Vec::new();
            while let Some(wal_start) = replay
                .next(&mut buf)
                .map_err(|e| self.ctx.fatal(e.to_string()))?
            {
                let message =
                    pgoutput::decode(&buf, true).map_err(|e| self.ctx.pg_err(e.into()))?;
                self.apply(wal_start, message).await?;
                self.flush_if_full(repl).await?;
            }
        }
        self.commit(end_lsn);
        Ok(())
    }

    fn commit(&mut self, end_lsn: Lsn) {
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

    /// Applies a decoded message outside of (or replayed from) a streamed block.
    async fn apply(
        &mut self,
        wal_start: Lsn,
        message: PgOutputMessage<'_>,
    ) -> Result<(), PipelineError> {
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
            PgOutputMessage::Commit { end_lsn, .. } => self.commit(end_lsn),
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
                if self.signal_oid == Some(relation_oid) {
                    self.on_signal(relation_oid, &new);
                    return Ok(());
                }
                let Some(rel) = self.included(relation_oid)? else {
                    return Ok(());
                };
                let after = build_row(rel, &new, self.ctx.config.name.as_str())
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
                let mut after = build_row(rel, &new, self.ctx.config.name.as_str())
                    .map_err(|e| self.ctx.fatal(e.to_string()))?;
                let (before, key_only) = match &old {
                    Some(OldTuple::Full(t)) => (
                        Some(
                            build_row(rel, t, self.ctx.config.name.as_str())
                                .map_err(|e| self.ctx.fatal(e.to_string()))?,
                        ),
                        false,
                    ),
                    Some(OldTuple::Key(t)) => (
                        Some(
                            build_row(rel, t, self.ctx.config.name.as_str())
                                .map_err(|e| self.ctx.fatal(e.to_string()))?,
                        ),
                        true,
                    ),
                    None => (None, false),
                };
                let changed = match (&before, key_only) {
                    (Some(b), false) => {
                        let changed = changed_columns(rel, b, &after);
                        fill_unchanged(&mut after, b);
                        changed
                    }
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
                let before = build_row(rel, old.tuple(), self.ctx.config.name.as_str())
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
                if prefix == crate::backfill::WATERMARK_PREFIX {
                    self.on_watermark(content);
                } else if prefix != HEARTBEAT_PREFIX {
                    self.on_logical_message(transactional, lsn, prefix, content);
                }
            }
            PgOutputMessage::StreamStart { .. }
            | PgOutputMessage::StreamStop
            | PgOutputMessage::StreamCommit { .. }
            | PgOutputMessage::StreamAbort { .. } => {
                return Err(self
                    .ctx
                    .fatal("a stream control message inside a spooled transaction"));
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
        if self.backfills.has_windows() {
            for row in [&event.after, &event.before].into_iter().flatten() {
                let key = crate::backfill::row_key(&rel.key_indexes, row);
                self.backfills.note_key(oid, &key);
            }
        }
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
        change.event.event_id = event_id(self.ctx.config.name.as_str(), position.0, position.1);
        let payload = encode(&change);
        // The id is in the payload now; the same String becomes the Nats-Msg-Id.
        let batchable = matches!(
            Operation::try_from(change.event.op),
            Ok(Operation::Insert | Operation::Update | Operation::Delete)
        );
        self.batch.push(Outbound::Change {
            subject: change.subject,
            msg_id: std::mem::take(&mut change.event.event_id),
            payload,
            commit_time_micros: change.event.commit_time_micros,
            batchable,
            ends_transaction: change.event.last_in_transaction,
        });
    }

    /// Backfill watermarks: a low one opens a chunk's window, a high one publishes the chunk's
    /// rows that did not change meanwhile, as `read` events of the high watermark's transaction.
    fn on_watermark(&mut self, content: &[u8]) {
        match crate::backfill::parse_watermark(content) {
            Some(crate::backfill::Watermark::Low {
                id,
                chunk,
                table_oid,
            }) => self.backfills.open(id, chunk, table_oid),
            Some(crate::backfill::Watermark::High { id, chunk }) => {
                let Some((info, rows)) = self.backfills.close(&id, chunk) else {
                    return;
                };
                let Some(mut open) = self.tx.take() else {
                    return;
                };
                info.counters[Op::Read as usize].increment(rows.len() as u64);
                let mut released = Vec::new();
                for row in rows {
                    let change = PendingChange {
                        event: ChangeEvent {
                            op: Operation::Read as i32,
                            after: Some(row),
                            commit_lsn: open.final_lsn.0,
                            xid: open.xid,
                            commit_time_micros: open.commit_time_micros,
                            captured_at_micros: now_micros(),
                            ..Default::default()
                        },
                        static_fields: info.static_fields.clone(),
                        subject: info.subjects[Op::Read as usize].clone(),
                    };
                    released.extend(open.push(change));
                }
                self.tx = Some(open);
                for change in released {
                    self.emit(change);
                }
            }
            None => {
                tracing::warn!(source = %self.ctx.config.name, "unreadable backfill watermark ignored")
            }
        }
    }

    /// A row inserted into the signal table: a backfill request starts beside the session.
    fn on_signal(&mut self, oid: u32, tuple: &pgoutput::TupleData<'_>) {
        let Some(rel) = self.relations.get(oid) else {
            return;
        };
        let Ok(row) = build_row(rel, tuple, &self.ctx.config.name) else {
            return;
        };
        if let Some(request) = signal_request(&rel.names, &row, &self.ctx.config.name) {
            self.backfills.start(self.ctx, &self.database, request);
        }
    }

    fn on_logical_message(&mut self, transactional: bool, lsn: Lsn, prefix: &str, content: &[u8]) {
        let subject = async_nats::Subject::from(format!(
            "{}.{}._message.{}",
            self.ctx.subject_prefix,
            tributary_nats::subject::token(self.ctx.config.name.as_str()),
            tributary_nats::subject::token(prefix)
        ));
        let event = ChangeEvent {
            source: self.ctx.config.name.as_str().to_string(),
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
        // Once per Relation message, never per row: the key comes from the catalog because
        // pgoutput flags every column under REPLICA IDENTITY FULL (crates/postgres keys.rs).
        let catalog_key = control
            .key_columns(rel.oid)
            .await
            .map_err(|e| self.ctx.pg_err(e))?;
        let is_key = |c: &pgoutput::RelationColumn<'_>| match &catalog_key {
            Some(names) => names.iter().any(|n| n == c.name),
            // Dropped since: the flags are the key unless they flag the whole row.
            None => c.key && rel.replica_identity != b'f',
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
                key: is_key(c),
            });
        }
        let ctx = RelationContext {
            source: self.ctx.config.name.as_str(),
            database: &self.database,
            subject_prefix: &self.ctx.subject_prefix,
            tables: &self.tables,
            schema_mode: self.ctx.config.schema,
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
        debug!(source = self.ctx.config.name.as_str(), table = %info.qualified_name(), included = info.included, columns = info.names.len(), "relation");
        // Before any event of this shape is built: the schema is stored (and acked) first.
        if info.included {
            self.ctx.ensure_schema(info).await?;
        }
        if self.ctx.config.signal_table.as_deref() == Some(info.qualified_name().as_str()) {
            self.signal_oid = Some(rel.oid);
        }
        Ok(())
    }
}

//! The streaming loop of one session: read the replication socket, hand batches to the
//! publisher, answer the walsender, report the confirmed position, drain on shutdown.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tributary_core::Lsn;
use tributary_nats::NatsError;
use tributary_postgres::replication::{ReplicationMessage, ReplicationStream};
use tributary_postgres::ControlConnection;

use crate::context::SourceContext;
use crate::metrics as m;
use crate::outbound::{Outbound, BATCH};
use crate::relations::RelationCache;
use crate::spool::Spool;
use crate::transaction::{OpenTransaction, Position};
use crate::PipelineError;

pub(crate) type PublisherHandle = tokio::task::JoinHandle<Result<(), NatsError>>;

pub(crate) struct Session<'a> {
    pub ctx: &'a SourceContext,
    pub database: String,
    pub tables: HashSet<String>,
    pub relations: RelationCache,
    /// Connection for catalog look-ups of types, opened when a relation needs one.
    pub type_control: Option<ControlConnection>,
    pub tx: Option<OpenTransaction>,
    /// Top-level xid of the in-progress transaction being streamed (protocol 2).
    pub stream_xid: Option<u32>,
    pub spool: Spool,
    pub backfills: crate::backfill::Backfills,
    /// Relation OID of the configured signal table, once its Relation message arrived.
    pub signal_oid: Option<u32>,
    /// Position of the last change the stream already holds: re-sent changes up to it are skipped.
    pub watermark: Option<Position>,
    pub batch: Vec<Outbound>,
    /// `changes_per_message`: merges runs of changes into batches as they are handed over.
    coalescer: crate::batching::Coalescer,
    pub last_checkpoint: Lsn,
    server_wal_end: Lsn,
    out: mpsc::Sender<Vec<Outbound>>,
    confirmed: watch::Receiver<Lsn>,
    ticker: tokio::time::Interval,
    publisher: PublisherHandle,
    lag_bytes: metrics::Gauge,
    server_lsn: metrics::Gauge,
    over_budget: metrics::Gauge,
    /// When the lag was last reported as over budget, to warn once a minute rather than per update.
    last_budget_warning: Option<Instant>,
    pub transactions: metrics::Counter,
    pub skipped: metrics::Counter,
    fence: tributary_core::Fence,
}

pub(crate) struct SessionParts<'a> {
    pub ctx: &'a SourceContext,
    pub database: String,
    pub watermark: Option<Position>,
    pub spool: Spool,
    pub out: mpsc::Sender<Vec<Outbound>>,
    pub confirmed: watch::Receiver<Lsn>,
    pub publisher: PublisherHandle,
}

impl<'a> Session<'a> {
    pub fn new(p: SessionParts<'a>) -> Self {
        let name = p.ctx.config.name.clone();
        let mut ticker =
            tokio::time::interval(Duration::from_millis(p.ctx.config.status_interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Session {
            ctx: p.ctx,
            database: p.database,
            tables: p.ctx.config.tables.iter().cloned().collect(),
            relations: RelationCache::default(),
            type_control: None,
            tx: None,
            stream_xid: None,
            spool: p.spool,
            backfills: Default::default(),
            signal_oid: None,
            watermark: p.watermark,
            batch: Vec::with_capacity(BATCH),
            coalescer: crate::batching::Coalescer::new(p.ctx.config.changes_per_message),
            last_checkpoint: Lsn::ZERO,
            server_wal_end: Lsn::ZERO,
            out: p.out,
            confirmed: p.confirmed,
            ticker,
            publisher: p.publisher,
            lag_bytes: metrics::gauge!(m::LAG_BYTES, "source" => name.clone()),
            server_lsn: metrics::gauge!(m::SERVER_WAL_LSN, "source" => name.clone()),
            over_budget: metrics::gauge!(m::LAG_OVER_BUDGET, "source" => name.clone(), "kind" => "bytes"),
            last_budget_warning: None,
            transactions: metrics::counter!(m::TRANSACTIONS, "source" => name.clone()),
            skipped: metrics::counter!(m::SKIPPED_RESENT, "source" => name),
            fence: p.ctx.fence.get(),
        }
    }

    /// Streams until shutdown (then drains and confirms) or an error.
    pub async fn run(
        mut self,
        mut repl: ReplicationStream,
        shutdown: &CancellationToken,
    ) -> Result<(), PipelineError> {
        let outcome = self.stream(&mut repl, shutdown).await;
        // Drain: the publisher finishes what it has; then the final position is confirmed.
        let Session { out, publisher, .. } = &mut self;
        drop(std::mem::replace(out, mpsc::channel(1).0));
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
            self.status(&mut repl, false).await?;
            info!(source = self.ctx.config.name, confirmed = %*self.confirmed.borrow(), "stopped");
            repl.close().await;
        }
        drained
    }

    async fn stream(
        &mut self,
        repl: &mut ReplicationStream,
        shutdown: &CancellationToken,
    ) -> Result<(), PipelineError> {
        let mut last_status = Instant::now();
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
                        self.handle(repl, wal_start, &data).await?;
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
                self.flush_if_full(repl).await?;
            }
            if !self.batch.is_empty() {
                self.send_batch(repl).await?;
            }
            if reply {
                self.status(repl, true).await?;
                last_status = Instant::now();
            }
            tokio::select! {
                r = repl.fill() => r.map_err(|e| self.ctx.pg_err(e))?,
                changed = self.confirmed.changed() => {
                    if changed.is_err() {
                        return Err(publisher_gone(self.ctx, &mut self.publisher).await);
                    }
                    // Batch status updates: at most one per 20 ms while acks stream in.
                    if last_status.elapsed() >= Duration::from_millis(20) {
                        self.status(repl, false).await?;
                        last_status = Instant::now();
                    }
                }
                _ = self.ticker.tick() => {
                    self.status(repl, false).await?;
                    last_status = Instant::now();
                }
                _ = shutdown.cancelled() => return Ok(()),
                joined = &mut self.publisher => return Err(join_error(self.ctx, joined)),
            }
        }
    }

    /// Refuses to publish or confirm once the lease is gone (HA mode; always passes otherwise).
    fn check_fence(&self) -> Result<(), PipelineError> {
        self.fence
            .check()
            .map(drop)
            .map_err(|error| PipelineError::Fenced {
                source_name: self.ctx.config.name.clone(),
                error,
            })
    }

    fn note_server_end(&mut self, wal_end: Lsn) {
        if wal_end > self.server_wal_end {
            self.server_wal_end = wal_end;
        }
    }

    async fn status(
        &mut self,
        repl: &mut ReplicationStream,
        reply: bool,
    ) -> Result<(), PipelineError> {
        let lsn = *self.confirmed.borrow();
        self.check_fence()?;
        repl.send_status(lsn, reply)
            .await
            .map_err(|e| self.ctx.pg_err(e))?;
        let reported = repl.reported_flush();
        let lag = self.server_wal_end.0.saturating_sub(reported.0);
        self.lag_bytes.set(lag as f64);
        self.server_lsn.set(self.server_wal_end.0 as f64);
        self.check_budget(lag, reported);
        Ok(())
    }

    fn check_budget(&mut self, lag: u64, confirmed: Lsn) {
        let budget = self.ctx.config.lag_budget_bytes;
        if lag <= budget || reported_before_start(confirmed) {
            self.over_budget.set(0.0);
            return;
        }
        self.over_budget.set(1.0);
        if self
            .last_budget_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_budget_warning = Some(Instant::now());
            warn!(
                source = %self.ctx.config.name,
                lag_bytes = lag,
                budget_bytes = budget,
                %confirmed,
                "the slot retains more WAL than its budget: the bridge or NATS is not keeping up"
            );
        }
    }

    pub async fn flush_if_full(
        &mut self,
        repl: &mut ReplicationStream,
    ) -> Result<(), PipelineError> {
        if self.batch.len() >= BATCH {
            self.send_batch(repl).await?;
        }
        Ok(())
    }

    /// Hands the batch to the publisher; while the channel is full, keeps the walsender answered.
    async fn send_batch(&mut self, repl: &mut ReplicationStream) -> Result<(), PipelineError> {
        self.check_fence()?;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let batch = self.coalescer.feed(batch);
        if batch.is_empty() {
            // Everything is in a run still open (its transaction has not ended).
            return Ok(());
        }
        loop {
            tokio::select! {
                permit = self.out.reserve() => {
                    match permit {
                        Ok(permit) => { permit.send(batch); return Ok(()); }
                        Err(_) => return Err(publisher_gone(self.ctx, &mut self.publisher).await),
                    }
                }
                _ = self.ticker.tick() => {}
            }
            self.status(repl, false).await?;
        }
    }
}

/// Before the first confirmation the reported position is zero: no lag can be computed.
fn reported_before_start(confirmed: Lsn) -> bool {
    confirmed == Lsn::ZERO
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
        source_name: ctx.config.name.clone(),
        message,
    }
}

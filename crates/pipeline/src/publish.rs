//! The publisher task: sends batches with a window of acks in flight and turns acknowledged
//! checkpoints into the confirmed LSN, optionally held back by a delay (see docs/durability.md).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tributary_core::Lsn;
use tributary_nats::OrderedPublisher;

use crate::metrics as m;
use crate::outbound::{now_micros, ChunkId, Outbound};

/// Upper bound on messages sent between two ack requests.
const ACK_EVERY: usize = 256;

pub enum Tag {
    Chunk(ChunkId),
    Change {
        sent: Instant,
        commit_time_micros: i64,
    },
    Checkpoint(Lsn),
}

pub struct PublishTask {
    pub source: String,
    pub lag_budget: Duration,
    pub publisher: OrderedPublisher<Tag>,
    pub window: usize,
    pub confirm_delay: Duration,
    pub confirmed: watch::Sender<Lsn>,
    /// Snapshot chunks whose `read` events are acknowledged.
    pub chunks_acked: Option<mpsc::UnboundedSender<ChunkId>>,
}

impl PublishTask {
    /// Runs until the channel closes and everything in flight is acknowledged.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<Outbound>>,
    ) -> Result<(), tributary_nats::NatsError> {
        let published = metrics::counter!(m::PUBLISHED, "source" => self.source.clone());
        let latency = metrics::histogram!(m::PUBLISH_LATENCY, "source" => self.source.clone());
        let lag_seconds = metrics::gauge!(m::LAG_SECONDS, "source" => self.source.clone());
        let confirmed_gauge = metrics::gauge!(m::CONFIRMED_LSN, "source" => self.source.clone());
        let over_budget = metrics::gauge!(m::LAG_OVER_BUDGET, "source" => self.source.clone(), "kind" => "seconds");
        let mut last_warning: Option<Instant> = None;
        let mut delayed: VecDeque<(Instant, Lsn)> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut open = true;
        let mut acked_since_metrics = 0u64;
        let mut since_ack = 0usize;
        loop {
            if !open && self.publisher.is_idle() && delayed.is_empty() {
                break;
            }
            tokio::select! {
                batch = rx.recv(), if open && self.publisher.in_flight() < self.window => {
                    match batch {
                        Some(batch) => self.send(batch, &mut since_ack).await?,
                        None => open = false,
                    }
                }
                acked = self.publisher.next_acked(), if !self.publisher.is_idle() => {
                    let Some(acked) = acked else { continue };
                    for tag in acked?.tags {
                        match tag {
                            Tag::Change { sent, commit_time_micros } => {
                                acked_since_metrics += 1;
                                if acked_since_metrics % 64 == 1 {
                                    latency.record(sent.elapsed().as_secs_f64());
                                    let lag = Duration::from_micros((now_micros() - commit_time_micros).max(0) as u64);
                                    lag_seconds.set(lag.as_secs_f64());
                                    let over = lag > self.lag_budget;
                                    over_budget.set(if over { 1.0 } else { 0.0 });
                                    if over && last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                                        last_warning = Some(Instant::now());
                                        tracing::warn!(source = %self.source, lag_secs = lag.as_secs(), budget_secs = self.lag_budget.as_secs(), "changes reach JetStream later than the lag budget");
                                    }
                                }
                            }
                            Tag::Chunk(id) => {
                                if let Some(tx) = &self.chunks_acked {
                                    let _ = tx.send(id);
                                }
                            }
                            Tag::Checkpoint(lsn) => {
                                published.increment(std::mem::take(&mut acked_since_metrics));
                                if self.confirm_delay.is_zero() {
                                    self.confirm(lsn, &confirmed_gauge);
                                } else {
                                    delayed.push_back((Instant::now(), lsn));
                                }
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    while let Some((at, lsn)) = delayed.front().copied() {
                        if at.elapsed() < self.confirm_delay && open {
                            break;
                        }
                        if at.elapsed() < self.confirm_delay {
                            // Draining on shutdown: positions not yet old enough stay unconfirmed.
                            delayed.clear();
                            break;
                        }
                        delayed.pop_front();
                        self.confirm(lsn, &confirmed_gauge);
                    }
                    if self.publisher.is_idle() && open {
                        lag_seconds.set(0.0);
                        over_budget.set(0.0);
                    }
                }
            }
        }
        published.increment(acked_since_metrics);
        Ok(())
    }

    /// Sends a batch, asking for an ack on the last message before each checkpoint, at the
    /// end of the batch, and at least every `ACK_EVERY` messages.
    async fn send(
        &mut self,
        batch: Vec<Outbound>,
        since_ack: &mut usize,
    ) -> Result<(), tributary_nats::NatsError> {
        let mut items = batch.into_iter().peekable();
        while let Some(item) = items.next() {
            match item {
                Outbound::Change {
                    subject,
                    msg_id,
                    payload,
                    commit_time_micros,
                    ..
                } => {
                    *since_ack += 1;
                    let want_ack = *since_ack >= ACK_EVERY
                        || !matches!(items.peek(), Some(Outbound::Change { .. }));
                    if want_ack {
                        *since_ack = 0;
                    }
                    let tag = Tag::Change {
                        sent: Instant::now(),
                        commit_time_micros,
                    };
                    self.publisher
                        .publish(subject, &msg_id, payload, tag, want_ack)
                        .await?;
                }
                Outbound::Checkpoint { lsn } => self.publisher.push_marker(Tag::Checkpoint(lsn))?,
                Outbound::SnapshotChunk { id } => self.publisher.push_marker(Tag::Chunk(id))?,
            }
        }
        Ok(())
    }

    fn confirm(&self, lsn: Lsn, gauge: &metrics::Gauge) {
        self.confirmed.send_if_modified(|current| {
            if lsn > *current {
                *current = lsn;
                true
            } else {
                false
            }
        });
        gauge.set(lsn.0 as f64);
    }
}

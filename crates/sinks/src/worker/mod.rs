//! One sink: its durable consumer, the lanes, retries, the version guard and dead letters
//! (`dead_letter.rs`).

mod dead_letter;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures::StreamExt;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tributary_config::{AfterDeadLetter, PriorityClass, SinkDelivery, SinksConfig};
use tributary_nats::consumer::open_durable;
use tributary_nats::delivery_watch::{DeliveryWatch, PULL_EXPIRES, PULL_HEARTBEAT};
use tributary_proto::retail::v1::DomainEvent;

use crate::activity::Activity;
use crate::lane::{Lane, LANE_IN_FLIGHT};
use crate::priority::{self, Outstanding, Pressure};
use crate::state::StateStore;
use crate::target::{Outcome, Target};
use crate::{idempotency_key, metrics as m, ApplyError, PartitionConsumer, SinkError};

/// Redelivery deadline of an unacked message; lanes send progress while they retry.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(60);
pub(crate) const LANE_QUEUE: usize = 32;
/// Messages asked for per pull request.
const PULL_BATCH: usize = 1000;
/// Unacked messages allowed beyond what the lanes hold: events handed back to wait for
/// another entity's event (a fulfilment before its order) stay unacked in JetStream, and
/// without room for them a backlog of such events would stop the deliveries of the very
/// events they wait for.
const WAITING_ALLOWANCE: usize = 10_000;

/// The lane's next event; while it waits on an empty queue the lane counts as idle.
async fn next_delivery(
    rx: &mut mpsc::Receiver<Delivery>,
    activity: Option<&Activity>,
) -> Option<Delivery> {
    match rx.try_recv() {
        Ok(d) => Some(d),
        Err(mpsc::error::TryRecvError::Disconnected) => None,
        Err(mpsc::error::TryRecvError::Empty) => {
            let _idle = activity.map(Activity::idle);
            rx.recv().await
        }
    }
}

pub struct SinkWorker {
    pub name: &'static str,
    /// `p07`, or empty when the sink is not partitioned.
    pub partition: String,
    consumer: String,
    /// The class of this consumer's events (None: the sink has one class).
    class: Option<PriorityClass>,
    target: Arc<Target>,
    pressure: Arc<Pressure>,
    delivery: SinkDelivery,
    stream: String,
    dead_letter_stream: String,
    dead_letter_subject: String,
    filters: Vec<String>,
    js: jetstream::Context,
    state: StateStore,
    /// The target's last transient failure, until an event is applied again (`/readyz`).
    failing: std::sync::Mutex<Option<String>>,
}

struct Delivery {
    msg: jetstream::Message,
    event: DomainEvent,
    sequence: u64,
}

impl SinkWorker {
    /// `target` with the pressure its priority classes share (one per sink, all partitions).
    pub fn new(
        name: &'static str,
        (target, pressure): (Arc<Target>, Arc<Pressure>),
        delivery: SinkDelivery,
        cfg: &SinksConfig,
        js: jetstream::Context,
        state: StateStore,
        part: PartitionConsumer,
    ) -> Self {
        let mut delivery = delivery;
        delivery.lanes = delivery.lanes.max(target.min_lanes().min(256));
        SinkWorker {
            name,
            partition: part.label(),
            class: part.class,
            consumer: part.name,
            target,
            pressure,
            delivery,
            stream: cfg.stream.clone(),
            dead_letter_stream: cfg.dead_letter_stream.clone(),
            dead_letter_subject: format!("dlq.sink.{name}"),
            filters: part.filters,
            js,
            state,
            failing: Default::default(),
        }
    }

    /// Why the target fails, while its last attempt failed transiently.
    pub fn target_failure(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_failure(&self, failure: Option<String>) {
        let mut slot = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() || failure.is_some() {
            *slot = failure;
        }
    }

    /// `sink <name>`, or `sink <name> p07` for a partition, with ` low` after the name for
    /// the low class's consumer: the component and HA unit name.
    pub fn component_name(&self) -> String {
        let class = match self.class {
            Some(PriorityClass::Low) => " low",
            _ => "",
        };
        if self.partition.is_empty() {
            format!("sink {}{class}", self.name)
        } else {
            format!("sink {}{class} {}", self.name, self.partition)
        }
    }

    /// Whether this consumer's events wait while the target is under pressure.
    fn deferrable(&self) -> bool {
        self.class == Some(PriorityClass::Low)
    }

    fn class_label(&self) -> &'static str {
        self.class.map_or("all", PriorityClass::as_str)
    }

    /// Opens the consumer at its ack floor ([`open_durable`]), so that after a restart every
    /// unacked event is delivered again at once and in stream order (per-entity order holds
    /// across crashes; events acked above the floor come again and the version guard skips
    /// them).
    async fn open_consumer(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, SinkError> {
        let config = pull::Config {
            durable_name: Some(self.consumer.clone()),
            description: Some(format!("Tributary {}", self.component_name())),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: (self.delivery.lanes * (LANE_QUEUE + LANE_IN_FLIGHT + 1)
                + WAITING_ALLOWANCE) as i64,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            filter_subjects: self.filters.clone(),
            ..Default::default()
        };
        let opened = open_durable(&self.js, stream, config).await?;
        if opened.rewound {
            info!(
                consumer = %self.consumer,
                unacked = opened.unacked,
                "consumer reset to its ack floor"
            );
        }
        Ok(opened.consumer)
    }

    pub(crate) async fn session(
        self: &Arc<Self>,
        fence: &tributary_core::Fence,
        stop: &CancellationToken,
    ) -> Result<(), SinkError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| SinkError::nats(format!("stream {}", self.stream), e))?;
        let mut consumer = self.open_consumer(&stream).await?;
        let mut watch = DeliveryWatch::start(&mut consumer)
            .await
            .map_err(|e| SinkError::nats("consumer info", e))?;
        let replay_until = self
            .state
            .replay_window(self.name)
            .await?
            .map(|w| w.until_sequence)
            .unwrap_or(0);
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| SinkError::nats("pull", e))?;
        info!(stream = %self.stream, consumer = %self.consumer, lanes = self.delivery.lanes, filters = ?self.filters, "sink consuming");

        let lane_stop = stop.child_token();
        let outstanding = Arc::new(Outstanding::default());
        let mut lanes = tokio::task::JoinSet::new();
        let mut senders = Vec::new();
        for _ in 0..self.delivery.lanes {
            let (tx, mut rx) = mpsc::channel::<Delivery>(LANE_QUEUE);
            senders.push(tx);
            let stop = lane_stop.clone();
            let this = self.clone();
            let activity = self.target.activity();
            let fence = fence.clone();
            let outstanding = outstanding.clone();
            lanes.spawn(async move {
                let mut lane = Lane::default();
                let _counted = activity.as_ref().map(|a| a.lane());
                // Low class: events taken off the queue while the target is under pressure.
                let mut held = std::collections::VecDeque::new();
                let mut progressed = tokio::time::Instant::now();
                let class = this.class.unwrap_or(PriorityClass::High);
                loop {
                    let d = match held.pop_front() {
                        Some(d) => d,
                        None => match next_delivery(&mut rx, activity.as_deref()).await {
                            Some(d) => d,
                            None => break,
                        },
                    };
                    if stop.is_cancelled() {
                        break;
                    }
                    if this.deferrable() {
                        let go = priority::wait_turn(
                            &this.pressure,
                            &d,
                            &mut rx,
                            &mut held,
                            &mut progressed,
                            |d: &Delivery| &d.msg,
                            &stop,
                        );
                        if !go.await {
                            break;
                        }
                    }
                    let sequence = d.sequence;
                    let handled = this.handle(d, replay_until, &fence, &stop, &mut lane);
                    match priority::with_class(class, handled).await? {
                        // Throttled: back to the front of the lane, behind the pressure.
                        Some(back) => held.push_front(back),
                        None => outstanding.handled(sequence),
                    }
                    lane.reap().await?;
                }
                // Applied events: their records and acks complete before the lane ends.
                lane.settle().await?;
                Ok::<(), SinkError>(())
            });
        }
        let activity = self.target.activity();
        let mut pending_tick = tokio::time::interval(Duration::from_secs(5));
        let mut lag_tick = tokio::time::interval(Duration::from_secs(1));
        let lag = metrics::gauge!(m::LAG, "sink" => self.name, "class" => self.class_label(), "partition" => self.partition.clone());
        let result = loop {
            // Stop first: a lane that ended because of the stop is not a failure.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                Some(joined) = lanes.join_next() => {
                    break match joined {
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(())) if stop.is_cancelled() => Ok(()),
                        Ok(Ok(())) => Err(SinkError::nats("lane", "ended")),
                        Err(e) => Err(SinkError::nats("lane", e)),
                    };
                }
                _ = lag_tick.tick() => lag.set(outstanding.lag_seconds()),
                _ = pending_tick.tick() => {
                    if let Ok(info) = consumer.info().await {
                        metrics::gauge!(m::PENDING, "sink" => self.name, "partition" => self.partition.clone(), "class" => self.class_label()).set(info.num_pending as f64);
                        if let Err(gap) = watch.check_idle(info) {
                            break Err(SinkError::nats("delivery", gap));
                        }
                    }
                    self.sample_dead_letters().await;
                }
                next = messages.next() => {
                    let Some(msg) = next else { break Err(SinkError::nats("pull", "message stream ended")) };
                    let msg = match msg { Ok(m) => m, Err(e) => break Err(SinkError::nats("pull", e)) };
                    let (sequence, delivery, stored) = msg.info().map(|i| (i.stream_sequence, i.consumer_sequence, (i.published.unix_timestamp_nanos() / 1000) as i64)).unwrap_or((0, 0, 0));
                    // A delivery that went elsewhere: nothing after it may be handled first.
                    if let Err(gap) = watch.received(delivery) {
                        break Err(SinkError::nats("delivery", gap));
                    }
                    let event = match DomainEvent::decode(msg.payload.clone()) {
                        Ok(ev) if ev.meta.is_some() => ev,
                        Ok(_) | Err(_) => {
                            let reason = "payload is not a tributary.retail.v1.DomainEvent with meta";
                            if let Err(e) = self.dead_letter(&msg, "", sequence, reason, "", 1).await { break Err(e) }
                            if let Err(e) = msg.double_ack().await { break Err(SinkError::nats("ack", e)) }
                            continue;
                        }
                    };
                    let key = event.meta.as_ref().map(|m| m.entity_key.clone()).unwrap_or_default();
                    let mut h = DefaultHasher::new();
                    key.hash(&mut h);
                    let lane = (h.finish() % senders.len() as u64) as usize;
                    outstanding.received(sequence, stored);
                    // A full lane holds the dispatcher: backpressure up to the consumer.
                    let sent = match senders[lane].try_send(Delivery { msg, event, sequence }) {
                        Ok(()) => Ok(()),
                        Err(mpsc::error::TrySendError::Full(d)) => {
                            let _blocked = activity.as_deref().map(Activity::dispatcher_blocked);
                            let sent = senders[lane].send(d).await.map_err(drop);
                            watch.busy();
                            sent
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                    };
                    if sent.is_err() {
                        // A lane leaves its queue when the stop comes; the message stays
                        // unacked and is redelivered after the restart.
                        break match stop.is_cancelled() {
                            true => Ok(()),
                            false => Err(SinkError::nats("lane", "closed")),
                        };
                    }
                }
            }
        };
        // Drain: lanes finish the event in hand (an unconfirmed one stays unacked).
        lane_stop.cancel();
        drop(senders);
        while let Some(joined) = lanes.join_next().await {
            if let Ok(Err(e)) = joined {
                warn!(error = %e, "lane stopped with an error");
            }
        }
        result
    }

    /// Applies one event; Err only for NATS failures (the session restarts; the message
    /// stays unacked and comes again). An applied event's record put is sent before the
    /// lane's next event and the message is acked once the put is stored (in `lane`).
    async fn handle(
        &self,
        d: Delivery,
        replay_until: u64,
        fence: &tributary_core::Fence,
        stop: &CancellationToken,
        lane: &mut Lane,
    ) -> Result<Option<Delivery>, SinkError> {
        let meta = d.event.meta.clone().unwrap_or_default();
        let entity = meta.entity.clone();
        let cache_key = format!("{entity}\n{}", meta.entity_key);
        // Only records without a hold are cached: `tributary dlq drop` may release a hold
        // in KV while the bridge runs; nothing else writes a sink's records.
        let record = match lane.cache.get(&cache_key) {
            Some(r) => r.clone(),
            None => self.state.get(self.name, &entity, &meta.entity_key).await?,
        };
        let replaying = d.sequence <= replay_until;
        let repair = crate::repair::repair_of(&d.event, d.msg.headers.as_ref());
        if let Some(r) = &repair {
            if !crate::repair::applies(r, self.name, meta.entity_version, record.version) {
                let reason = if r.target == self.name {
                    "repair_superseded"
                } else {
                    "repair_other_target"
                };
                metrics::counter!(m::SKIPPED, "sink" => self.name, "entity" => entity, "reason" => reason).increment(1);
                lane.ack_later(d.msg);
                return Ok(None);
            }
        } else if meta.entity_version <= record.version && !replaying {
            metrics::counter!(m::SKIPPED, "sink" => self.name, "entity" => entity, "reason" => "stale_version").increment(1);
            lane.ack_later(d.msg);
            return Ok(None);
        }
        let hold = self.delivery.on_dead_letter == AfterDeadLetter::Hold;
        if let Some(holder) = record
            .held_by
            .as_deref()
            .filter(|h| hold && *h != meta.event_id)
        {
            // Parked behind the earlier event, in order: a redrive of the sink's dead letters
            // applies the holder first, then these.
            let reason = format!(
                "held behind event {holder} of this entity, which is in the dead-letter stream (on_dead_letter = \"hold\")"
            );
            self.dead_letter(&d.msg, &meta.event_id, d.sequence, &reason, "", 0)
                .await?;
            metrics::counter!(m::DEAD_LETTERS, "sink" => self.name).increment(1);
            metrics::counter!(m::SKIPPED, "sink" => self.name, "entity" => entity, "reason" => "held").increment(1);
            lane.ack_later(d.msg);
            return Ok(None);
        }
        if self.target.reads_state(&d.event) {
            // The target reads other records of this lane from KV: let them land first.
            lane.settle().await?;
        }
        let key = idempotency_key(self.name, &meta.event_id);
        let mut backoff = Duration::from_millis(self.delivery.min_backoff_ms);
        let max_backoff = Duration::from_millis(self.delivery.max_backoff_ms);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut next = record.clone();
            next.last_repair = repair.as_ref().map(|r| r.reason.clone());
            // HA: a replica that lost the sink's lease applies nothing more.
            fence.check()?;
            let started = Instant::now();
            let apply = self.target.apply(&d.event, &mut next, &key);
            match crate::http::with_fence(fence, apply).await {
                Ok(outcome) => {
                    self.set_failure(None);
                    if !self.deferrable() {
                        self.pressure.high_applied(started.elapsed());
                    }
                    lane.waiting.remove(&meta.event_id);
                    next.version = meta.entity_version;
                    next.sequence = d.sequence;
                    next.held_by = None;
                    let put = self
                        .state
                        .put_pipelined(self.name, &entity, &meta.entity_key, &next)
                        .await?;
                    lane.remember(cache_key, next);
                    let msg = d.msg;
                    lane.in_flight.spawn(async move {
                        put.stored().await?;
                        msg.double_ack()
                            .await
                            .map_err(|e| SinkError::nats("ack", e))
                    });
                    if let Some(r) = repair
                        .as_ref()
                        .filter(|_| !matches!(outcome, Outcome::Ignored(_)))
                    {
                        metrics::counter!(m::REPAIRS, "sink" => self.name).increment(1);
                        info!(entity_key = %meta.entity_key, reason = %r.reason, "repair applied");
                    }
                    match outcome {
                        Outcome::Applied => {
                            metrics::counter!(m::APPLIED, "sink" => self.name, "entity" => entity)
                                .increment(1);
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .map(|d| d.as_micros() as i64)
                                .unwrap_or(0);
                            if meta.event_time_micros > 0 {
                                metrics::histogram!(m::APPLY_LATENCY, "sink" => self.name)
                                    .record((now - meta.event_time_micros).max(0) as f64 / 1e6);
                            }
                        }
                        Outcome::Recorded => {
                            metrics::counter!(m::SKIPPED, "sink" => self.name, "entity" => entity, "reason" => "recorded").increment(1)
                        }
                        Outcome::Ignored(reason) => {
                            metrics::counter!(m::SKIPPED, "sink" => self.name, "entity" => entity, "reason" => reason).increment(1)
                        }
                    }
                    return Ok(None);
                }
                Err(ApplyError::Waiting { reason }) => {
                    let since = *lane
                        .waiting
                        .entry(meta.event_id.clone())
                        .or_insert_with(Instant::now);
                    let max_wait = Duration::from_secs(self.delivery.max_wait_secs);
                    if since.elapsed() >= max_wait {
                        lane.waiting.remove(&meta.event_id);
                        let reason = format!(
                            "{reason}; gave up after waiting {} s (max_wait_secs)",
                            max_wait.as_secs()
                        );
                        warn!(event_id = %meta.event_id, %reason, "dead-lettering an event that waited too long");
                        self.dead_letter(&d.msg, &meta.event_id, d.sequence, &reason, "", attempts)
                            .await?;
                        metrics::counter!(m::DEAD_LETTERS, "sink" => self.name).increment(1);
                        lane.ack_later(d.msg);
                        return Ok(None);
                    }
                    metrics::counter!(m::RETRIES, "sink" => self.name).increment(1);
                    debug!(event_id = %meta.event_id, %reason, "waiting for another entity's event; redelivery later");
                    // Handed back rather than retried here: the event it waits for may be
                    // queued behind it in this very lane.
                    let delay = Duration::from_millis(self.delivery.wait_retry_ms);
                    d.msg
                        .ack_with(AckKind::Nak(Some(delay)))
                        .await
                        .map_err(|e| SinkError::nats("nak", e))?;
                    return Ok(None);
                }
                Err(ApplyError::Definite { reason, body }) => {
                    lane.waiting.remove(&meta.event_id);
                    warn!(event_id = %meta.event_id, %reason, "target refused the event; dead-lettering it");
                    self.dead_letter(&d.msg, &meta.event_id, d.sequence, &reason, &body, attempts)
                        .await?;
                    metrics::counter!(m::DEAD_LETTERS, "sink" => self.name).increment(1);
                    if hold && record.held_by.is_none() {
                        let mut held = record.clone();
                        held.held_by = Some(meta.event_id.clone());
                        // Sent after the lane's earlier puts of this key, so it is the one
                        // stored; awaited, and the record leaves the cache (a drop may
                        // release it in KV).
                        self.state
                            .put(self.name, &entity, &meta.entity_key, &held)
                            .await?;
                        lane.cache.remove(&cache_key);
                    }
                    // Otherwise later events of the entity continue (its version is not
                    // recorded, so they are not held back by this one).
                    lane.ack_later(d.msg);
                    return Ok(None);
                }
                Err(ApplyError::Transient {
                    reason,
                    retry_after,
                    throttled,
                }) => {
                    metrics::counter!(m::RETRIES, "sink" => self.name).increment(1);
                    // Throttling is the target working as agreed: the sink stays ready.
                    if !throttled {
                        self.set_failure(Some(reason.to_string()));
                    }
                    let jitter = backoff.mul_f64(rand::random::<f64>() * 0.25);
                    // The target's hint wins (it knows when it will take requests again).
                    let wait = retry_after.unwrap_or(backoff + jitter);
                    if throttled {
                        metrics::histogram!(m::THROTTLE_WAIT, "sink" => self.name)
                            .record(wait.as_secs_f64());
                    }
                    if throttled {
                        self.pressure.throttled(retry_after);
                        if self.deferrable() {
                            // The low class gives way: the lane holds the event (with ack
                            // progress) until the pressure ends, then tries it again.
                            let _ = d.msg.ack_with(AckKind::Progress).await;
                            return Ok(Some(d));
                        }
                    }
                    if throttled {
                        // The target's flow control (429, THROTTLED, API limits): expected
                        // under load and counted in the throttled-seconds metric, so not a
                        // warning; a failure is.
                        debug!(event_id = %meta.event_id, attempt = attempts, %reason, wait_ms = wait.as_millis() as u64, "throttled by the target; waiting");
                    } else {
                        warn!(event_id = %meta.event_id, attempt = attempts, %reason, wait_ms = wait.as_millis() as u64, "transient failure; retrying");
                    }
                    // Keep the message ours while we wait; the lane's earlier events are
                    // stored and acked meanwhile.
                    let _ = d.msg.ack_with(AckKind::Progress).await;
                    lane.settle().await?;
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
    }
}

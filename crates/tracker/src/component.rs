//! The tracker as a supervised component (`tracker`): one durable consumer on the domain
//! stream, the periodic sweep and the consumer of dead-letter resolutions on its own stream
//! (`resolution.rs`), in one task so that they never race each other; under `[ha]` a work
//! unit like the domain stage (one replica counts), every write and ack behind its fence.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, context::GetStreamErrorKind};
use futures::{FutureExt as _, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument as _};
use tributary_config::Config;
use tributary_core::{BoxFuture, Component, Failure, Fence, FenceCell};
use tributary_nats::consumer::open_durable;
use tributary_nats::delivery_watch::{DeliveryWatch, PULL_EXPIRES, PULL_HEARTBEAT};

use crate::publish::Publisher;
use crate::shared::Shared;
use crate::store::Store;
use crate::TrackerError;

/// The domain entities whose events carry milestones.
const FOLLOWED: [&str; 4] = ["order", "fulfillment", "return", "refund"];
/// Unacked events at most; the tracker handles them one by one.
const MAX_ACK_PENDING: i64 = 512;
/// How often a missing domain stream is looked for.
const STREAM_POLL: Duration = Duration::from_millis(500);

pub struct Tracker {
    shared: Arc<Shared>,
    fence: FenceCell,
}

impl Tracker {
    /// Provisions the tracker's stream and bucket; None when `[tracker]` is absent.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<Tracker>, TrackerError> {
        let Some(cfg) = config.tracker.clone() else {
            return Ok(None);
        };
        crate::metrics::describe();
        let replicas = config.nats.stream.replicas.unwrap_or(1);
        let spec = tributary_nats::StreamSpec {
            settings: config.nats.stream_named(&cfg.stream, None),
            subjects: vec![format!("{}.>", cfg.subject_prefix)],
            component: "tracker".into(),
            name_key: "tracker.stream",
        };
        tributary_nats::ensure_stream(&js, &spec).await?;
        let store = Store::open(&js, &cfg.state_bucket, replicas).await?;
        let shared = Shared {
            domain_stream: cfg.resolved_domain_stream(config.domain.as_ref()),
            domain_prefix: cfg.resolved_domain_prefix(config.domain.as_ref()),
            publisher: Publisher {
                js: js.clone(),
                prefix: cfg.subject_prefix.clone(),
            },
            cfg,
            js,
            store,
        };
        Ok(Some(Tracker {
            shared: Arc::new(shared),
            fence: FenceCell::default(),
        }))
    }

    async fn consume(&self, fence: &Fence, stop: &CancellationToken) -> Result<(), TrackerError> {
        let shared = &self.shared;
        let Some(stream) = domain_stream(shared, stop).await? else {
            return Ok(());
        };
        let config = pull::Config {
            durable_name: Some(shared.cfg.consumer.clone()),
            description: Some("Tributary order-to-cash tracker".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            max_ack_pending: MAX_ACK_PENDING,
            ack_wait: Duration::from_secs(30),
            filter_subjects: FOLLOWED
                .iter()
                .map(|e| format!("{}.{e}.>", shared.domain_prefix))
                .collect(),
            ..Default::default()
        };
        let opened = open_durable(&shared.js, &stream, config).await?;
        if opened.rewound {
            info!(
                unacked = opened.unacked,
                "tracker consumer reset to its ack floor"
            );
        }
        let mut consumer = opened.consumer;
        // Under [ha] a stale owner's waiting pull can take deliveries this one never sees.
        let mut watch = DeliveryWatch::start(&mut consumer)
            .await
            .map_err(|e| TrackerError::nats("consumer info", e))?;
        let mut messages = deliveries(&consumer).await?;
        let mut resolved = crate::resolution::open(shared).await?;
        let mut resolutions = deliveries(&resolved.consumer).await?;
        info!(stream = %shared.domain_stream, consumer = %shared.cfg.consumer, "tracking");
        let mut sweep = tokio::time::interval(Duration::from_secs(shared.cfg.sweep_interval_secs));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = sweep.tick() => {
                    // Events already here first: a backlog must not make a process look stuck.
                    while let Some(next) = messages.next().now_or_never() {
                        let msg = watched(&mut watch, next_message(next)?)?;
                        crate::consume::handle(shared, fence, msg).await?;
                        watch.busy();
                    }
                    let info = consumer
                        .info()
                        .await
                        .map_err(|e| TrackerError::nats("consumer info", e))?;
                    watch
                        .check_idle(info)
                        .map_err(|gap| TrackerError::nats("delivery", gap))?;
                    let resolved_info = resolved
                        .consumer
                        .info()
                        .await
                        .map_err(|e| TrackerError::nats("consumer info", e))?;
                    resolved
                        .watch
                        .check_idle(resolved_info)
                        .map_err(|gap| TrackerError::nats("delivery", gap))?;
                    if info.num_pending == 0 && info.num_ack_pending == 0 {
                        crate::sweep::sweep(shared, fence).await?;
                    } else {
                        metrics::counter!(crate::metrics::SWEEPS_DEFERRED).increment(1);
                    }
                }
                next = messages.next() => {
                    let msg = watched(&mut watch, next_message(next)?)?;
                    crate::consume::handle(shared, fence, msg).await?;
                    watch.busy();
                }
                next = resolutions.next() => {
                    let msg = watched(&mut resolved.watch, next_message(next)?)?;
                    crate::resolution::handle(shared, fence, msg).await?;
                    resolved.watch.busy();
                }
            }
        }
    }
}

/// A consumer's deliveries, pulled 64 at a time.
async fn deliveries(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
) -> Result<pull::Stream, TrackerError> {
    consumer
        .stream()
        .max_messages_per_batch(64)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| TrackerError::nats("pull", e))
}

type Next = Option<Result<jetstream::Message, async_nats::error::Error<pull::MessagesErrorKind>>>;

fn next_message(next: Next) -> Result<jetstream::Message, TrackerError> {
    match next {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(e)) => Err(TrackerError::nats("pull", e)),
        None => Err(TrackerError::nats("pull", "the message stream ended")),
    }
}

/// `msg`, once the watch has seen that no delivery before it went elsewhere.
fn watched(
    watch: &mut DeliveryWatch,
    msg: jetstream::Message,
) -> Result<jetstream::Message, TrackerError> {
    watch
        .check_message(&msg)
        .map_err(|gap| TrackerError::nats("delivery", gap))?;
    Ok(msg)
}

/// The domain stream once it exists (the domain stage or a feed creates it).
async fn domain_stream(
    shared: &Shared,
    stop: &CancellationToken,
) -> Result<Option<jetstream::stream::Stream>, TrackerError> {
    let mut announced = false;
    loop {
        match shared.js.get_stream(&shared.domain_stream).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {
                if !announced {
                    info!(stream = %shared.domain_stream, "waiting for the domain stream");
                    announced = true;
                }
            }
            Err(e) => {
                return Err(TrackerError::nats(
                    format!("stream {}", shared.domain_stream),
                    e,
                ))
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(STREAM_POLL) => {}
        }
    }
}

impl Component for Tracker {
    fn name(&self) -> String {
        "tracker".into()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(
            async move {
                let fence = self.fence.get();
                Ok(self.consume(&fence, stop).await?)
            }
            .instrument(info_span!("tracker")),
        )
    }

    fn set_fence(&self, fence: Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

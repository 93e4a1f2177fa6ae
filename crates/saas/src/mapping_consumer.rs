//! The durable consumer each SaaS feed's domain mapping reads its raw stream with: one message
//! in flight (an entity's events map in stream order), explicit acks after the domain events
//! are stored. A message a killed predecessor left unacked is redelivered at once (the
//! consumer is reset to its ack floor), not after `ack_wait`. A delivery that went to another
//! puller (a replica that lost the feed's lease) ends the session before anything after it
//! is mapped ([`DeliveryWatch`]).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tributary_nats::consumer::open_durable;
use tributary_nats::delivery_watch::{DeliveryWatch, PULL_EXPIRES, PULL_HEARTBEAT};

use crate::SaasError;

/// A feed's mapping consumer, pulling.
pub struct MappingConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    messages: pull::Stream,
    watch: DeliveryWatch,
    tick: tokio::time::Interval,
}

/// How often the consumer's state is compared with what this process received.
const WATCH_TICK: Duration = Duration::from_secs(5);

impl MappingConsumer {
    /// Creates (or finds) the durable `durable` on `stream` for `filter_subject` and starts
    /// pulling from it.
    pub async fn open(
        js: &jetstream::Context,
        stream: &str,
        durable: &str,
        description: &str,
        filter_subject: String,
    ) -> Result<Self, SaasError> {
        let s = js
            .get_stream(stream)
            .await
            .map_err(|e| SaasError::nats(format!("stream {stream}"), e))?;
        let config = pull::Config {
            durable_name: Some(durable.to_string()),
            description: Some(description.to_string()),
            filter_subject,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 1,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        };
        // A message left unacked by a killed predecessor would wait out `ack_wait` (and hold
        // the one slot of `max_ack_pending`): `open_durable` has it redelivered at once.
        let opened = open_durable(js, &s, config).await?;
        if opened.rewound {
            info!(%stream, consumer = %durable, unacked = opened.unacked, "consumer reset to its ack floor");
        }
        let mut consumer = opened.consumer;
        let watch = DeliveryWatch::start(&mut consumer)
            .await
            .map_err(|e| SaasError::nats("consumer info", e))?;
        let messages = consumer
            .stream()
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| SaasError::nats("pull", e))?;
        info!(%stream, consumer = %durable, "{description}");
        Ok(MappingConsumer {
            consumer,
            messages,
            watch,
            tick: tokio::time::interval(WATCH_TICK),
        })
    }

    /// The next message; None once `stop` is cancelled.
    pub async fn next(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Option<jetstream::Message>, SaasError> {
        // The caller handled the previous message until now.
        self.watch.busy();
        let next = loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(None),
                _ = self.tick.tick() => {
                    if let Ok(info) = self.consumer.info().await {
                        self.watch.check_idle(info).map_err(|gap| SaasError::nats("delivery", gap))?;
                    }
                }
                next = self.messages.next() => break next,
            }
        };
        let Some(msg) = next else {
            return Err(SaasError::nats("pull", "message stream ended"));
        };
        let msg = msg.map_err(|e| SaasError::nats("pull", e))?;
        self.watch
            .check_message(&msg)
            .map_err(|gap| SaasError::nats("delivery", gap))?;
        Ok(Some(msg))
    }
}

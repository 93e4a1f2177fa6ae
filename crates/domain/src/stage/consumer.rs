//! Opening the domain stage's consumer of one source stream.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use tracing::info;
use tributary_nats::consumer::open_durable;
use tributary_nats::delivery_watch::DeliveryWatch;

use super::batch::MAX_ACK_PENDING;
use super::DomainStage;
use crate::metrics as m;
use crate::DomainError;

impl DomainStage {
    /// The source's durable consumer, opened the one way every worker opens one
    /// ([`open_durable`]): unacked messages (a kill -9, a restart after an error) come again
    /// at once and in order. Acks are given in stream order, so the ack floor is the last
    /// message acked. The watch that goes with it sees deliveries that went elsewhere.
    pub(super) async fn consumer(
        &self,
        stream: &jetstream::stream::Stream,
        stream_name: &str,
    ) -> Result<(jetstream::consumer::Consumer<pull::Config>, DeliveryWatch), DomainError> {
        let name = &self.cfg.consumer;
        let config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some("Tributary domain stage".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            // One task maps the messages in stream order; this bounds the batches in flight.
            max_ack_pending: MAX_ACK_PENDING,
            // Above the longest batch (a batch ends after a parent wait).
            ack_wait: Duration::from_millis(self.cfg.parent_wait_ms.saturating_mul(3).max(30_000)),
            ..Default::default()
        };
        let opened = open_durable(&self.js, stream, config).await?;
        if opened.rewound {
            info!(consumer = %name, unacked = opened.unacked, "consumer reset to its ack floor");
            metrics::counter!(m::CONSUMER_RESETS, "stream" => stream_name.to_string()).increment(1);
        }
        let mut consumer = opened.consumer;
        let watch = DeliveryWatch::start(&mut consumer)
            .await
            .map_err(|e| DomainError::nats("consumer info", e))?;
        Ok((consumer, watch))
    }
}

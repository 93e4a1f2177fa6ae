//! Dead letters resolved: the KPI "exception resolution time" (docs/order-to-cash.md).
//!
//! ```text
//!  tributary dlq redrive|drop ──► <prefix>.dead_letter.resolved (tracker stream, JSON,
//!   (short-lived CLI)               Nats-Msg-Id per dead letter) ──► then deletes the letter
//!                                           │ durable consumer <tracker.consumer>_dead_letters
//!                                           ▼
//!  tracker: marker `dead_letter.<stream>.<seq>.<parked>` (KV create) ──► histogram ──► ack
//! ```
//!
//! The operator's command cannot export a metric (it exits), so it leaves a [`Resolution`]
//! on the tracker's stream before it deletes the dead letter, and the tracker (one replica
//! under `[ha]`) observes it. A record is counted only when its marker is created: a repeated
//! command (a crash between the record and the delete), a redelivery or a replay of the
//! stream finds the marker and counts nothing.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use tributary_core::Fence;
use tributary_nats::consumer::open_durable;
use tributary_nats::delivery_watch::DeliveryWatch;
use tributary_nats::kv::key_token;

use crate::metrics as m;
use crate::shared::Shared;
use crate::TrackerError;

/// `outcome`s, and the `sink` of the domain stage's dead letters.
pub use crate::metrics::{DOMAIN, DROPPED, REDRIVEN};

/// One dead letter redriven or dropped, as `tributary dlq` records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resolution {
    /// The dead-letter stream (`DLQ_SINKS`, `DLQ_DOMAIN`) and the letter's sequence there.
    pub dead_letter_stream: String,
    pub dead_letter_seq: u64,
    /// The sink that parked it, or `domain` for the domain stage.
    pub sink: String,
    /// The mapping that refused the change (domain dead letters only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mapping: String,
    pub event_id: String,
    /// `redriven` or `dropped`.
    pub outcome: String,
    /// Why it was parked (the dead letter's `Tributary-Reason`).
    #[serde(default)]
    pub reason: String,
    /// The dead letter's stored time, microseconds since the Unix epoch.
    pub parked_at_micros: i64,
    /// When the command resolved it (wall clock of the operator's machine).
    pub resolved_at_micros: i64,
}

impl Resolution {
    /// `<tracker.subject_prefix>.dead_letter.resolved`.
    pub fn subject(prefix: &str) -> String {
        format!("{prefix}.dead_letter.resolved")
    }

    /// One id per dead letter, whatever the outcome and however often the command runs: the
    /// stream's duplicate window drops a second record of it. The parked time tells a letter
    /// from a later one at the same sequence of a re-created stream.
    pub fn msg_id(&self) -> String {
        format!(
            "o2c/dead_letter/{}/{}/{}",
            self.dead_letter_stream, self.dead_letter_seq, self.parked_at_micros
        )
    }

    /// The tracker's KV marker of this dead letter (outside the duplicate window too).
    fn marker(&self) -> String {
        format!(
            "dead_letter.{}.{}.{}",
            key_token(&self.dead_letter_stream),
            self.dead_letter_seq,
            self.parked_at_micros
        )
    }

    /// Parked → resolved; never negative (clocks of two machines).
    pub fn seconds(&self) -> f64 {
        (self.resolved_at_micros - self.parked_at_micros).max(0) as f64 / 1e6
    }
}

/// The tracker's durable consumer of the resolution records, with its delivery watch.
pub struct Consumer {
    pub consumer: jetstream::consumer::Consumer<pull::Config>,
    pub watch: DeliveryWatch,
}

/// Opens `<tracker.consumer>_dead_letters` on the tracker's stream (created at start-up).
pub async fn open(shared: &Shared) -> Result<Consumer, TrackerError> {
    let stream = shared
        .js
        .get_stream(&shared.cfg.stream)
        .await
        .map_err(|e| TrackerError::nats(format!("stream {}", shared.cfg.stream), e))?;
    let config = pull::Config {
        durable_name: Some(format!("{}_dead_letters", shared.cfg.consumer)),
        description: Some("Tributary tracker: dead letters resolved (tributary dlq)".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ack_wait: Duration::from_secs(30),
        filter_subject: Resolution::subject(&shared.cfg.subject_prefix),
        ..Default::default()
    };
    let mut consumer = open_durable(&shared.js, &stream, config).await?.consumer;
    let watch = DeliveryWatch::start(&mut consumer)
        .await
        .map_err(|e| TrackerError::nats("consumer info", e))?;
    Ok(Consumer { consumer, watch })
}

/// Observes one record: counted once per dead letter, then acked.
pub async fn handle(
    shared: &Shared,
    fence: &Fence,
    msg: jetstream::Message,
) -> Result<(), TrackerError> {
    match serde_json::from_slice::<Resolution>(&msg.payload) {
        Ok(r) => {
            fence.check()?;
            let first = shared
                .store
                .create_once(&r.marker(), r.resolved_at_micros.to_string().into_bytes())
                .await?;
            if first {
                let outcome = match r.outcome.as_str() {
                    REDRIVEN => REDRIVEN,
                    _ => DROPPED,
                };
                metrics::histogram!(m::RESOLUTION_SECONDS, "sink" => r.sink.clone(), "outcome" => outcome)
                    .record(r.seconds());
                debug!(stream = %r.dead_letter_stream, seq = r.dead_letter_seq, outcome, "dead letter resolution counted");
            } else {
                debug!(stream = %r.dead_letter_stream, seq = r.dead_letter_seq, "dead letter resolution seen before");
            }
        }
        // Not a record this version wrote: nothing to count, and retrying will not help.
        Err(e) => {
            warn!(subject = %msg.subject, error = %e, "undecodable dead-letter resolution ignored")
        }
    }
    fence.check()?;
    msg.ack()
        .await
        .map_err(|e| TrackerError::nats("ack", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, parked: i64, resolved: i64) -> Resolution {
        Resolution {
            dead_letter_stream: "DLQ_SINKS".into(),
            dead_letter_seq: seq,
            sink: "wms".into(),
            mapping: String::new(),
            event_id: "e1".into(),
            outcome: REDRIVEN.into(),
            reason: String::new(),
            parked_at_micros: parked,
            resolved_at_micros: resolved,
        }
    }

    #[test]
    fn one_id_and_marker_per_dead_letter_whatever_the_resolution_time() {
        let (a, b) = (record(7, 1_000, 5_000_000), record(7, 1_000, 9_000_000));
        assert_eq!(a.msg_id(), b.msg_id());
        assert_eq!(a.marker(), b.marker());
        // The same sequence in a re-created stream is another dead letter.
        assert_ne!(a.marker(), record(7, 2_000, 5_000_000).marker());
        assert_eq!(a.marker(), "dead_letter.DLQ_SINKS.7.1000");
    }

    #[test]
    fn seconds_are_resolved_minus_parked_and_never_negative() {
        assert_eq!(record(1, 1_000_000, 3_500_000).seconds(), 2.5);
        assert_eq!(record(1, 3_000_000, 1_000_000).seconds(), 0.0);
    }
}

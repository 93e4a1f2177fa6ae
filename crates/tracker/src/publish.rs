//! The tracker's own events on `<tracker.subject_prefix>` (stream `tracker.stream`, JSON):
//!
//! | subject | when | `Nats-Msg-Id` |
//! |---|---|---|
//! | `o2c.v1.order.<milestone>` | an order reaches a milestone | `o2c/order/<key>/<milestone>` |
//! | `o2c.v1.return.<milestone>` | a return reaches a milestone | `o2c/return/<key>/<milestone>` |
//! | `o2c.v1.order.stuck` | an order waits past its threshold | `o2c/order/<key>/stuck/<waiting>` |
//! | `o2c.v1.refund.delayed` | a return waits for its refund past the threshold | `o2c/return/<key>/delayed/refund` |
//!
//! Each is published before the record that notes it is written, and its id is stable, so
//! that a crash in between re-publishes the same message, which the stream drops as a
//! duplicate: every milestone and every exception is on the stream once.

use async_nats::jetstream;
use serde::Serialize;

use crate::process::{Kind, Milestone, Process, Waiting};
use crate::TrackerError;

/// A milestone event's payload.
#[derive(Debug, Serialize)]
pub struct MilestoneEvent<'a> {
    pub process: &'static str,
    pub key: &'a str,
    pub order_id: &'a str,
    pub milestone: &'static str,
    /// Business time of the milestone, microseconds since the Unix epoch.
    pub at_micros: i64,
    /// The domain event that showed it.
    pub event_id: &'a str,
}

/// An exception event's payload (`order.stuck`, `refund.delayed`).
#[derive(Debug, Serialize)]
pub struct ExceptionEvent<'a> {
    /// `order_stuck` or `refund_delayed`.
    pub kind: &'static str,
    pub process: &'static str,
    pub key: &'a str,
    pub order_id: &'a str,
    /// `unallocated`, `unshipped` or `refund`.
    pub waiting: &'static str,
    /// Business time since which it waits.
    pub since_micros: i64,
    pub threshold_secs: u64,
    /// Wall-clock time of the sweep that found it.
    pub detected_at_micros: i64,
}

pub struct Publisher {
    pub js: jetstream::Context,
    pub prefix: String,
}

impl Publisher {
    pub fn milestone_subject(&self, kind: Kind, m: Milestone) -> String {
        format!("{}.{}.{}", self.prefix, kind.as_str(), m.as_str())
    }

    pub fn exception_subject(&self, waiting: Waiting) -> String {
        match waiting {
            Waiting::Refund => format!("{}.refund.delayed", self.prefix),
            _ => format!("{}.order.stuck", self.prefix),
        }
    }

    pub async fn milestone(
        &self,
        p: &Process,
        m: Milestone,
        at_micros: i64,
    ) -> Result<(), TrackerError> {
        let event_id = p
            .milestones
            .get(&m)
            .map(|r| r.event_id.as_str())
            .unwrap_or("");
        let body = MilestoneEvent {
            process: p.kind.as_str(),
            key: &p.key,
            order_id: &p.order_id,
            milestone: m.as_str(),
            at_micros,
            event_id,
        };
        let id = format!("o2c/{}/{}/{}", p.kind.as_str(), p.key, m.as_str());
        self.send(self.milestone_subject(p.kind, m), id, &body)
            .await
    }

    pub async fn exception(
        &self,
        p: &Process,
        waiting: Waiting,
        since_micros: i64,
        threshold_secs: u64,
        now_micros: i64,
    ) -> Result<(), TrackerError> {
        let (kind, word) = match waiting {
            Waiting::Refund => (crate::metrics::KIND_REFUND_DELAYED, "delayed"),
            _ => (crate::metrics::KIND_ORDER_STUCK, "stuck"),
        };
        let body = ExceptionEvent {
            kind,
            process: p.kind.as_str(),
            key: &p.key,
            order_id: &p.order_id,
            waiting: waiting.as_str(),
            since_micros,
            threshold_secs,
            detected_at_micros: now_micros,
        };
        let id = format!(
            "o2c/{}/{}/{word}/{}",
            p.kind.as_str(),
            p.key,
            waiting.as_str()
        );
        self.send(self.exception_subject(waiting), id, &body).await
    }

    async fn send<T: Serialize>(
        &self,
        subject: String,
        id: String,
        body: &T,
    ) -> Result<(), TrackerError> {
        let payload = serde_json::to_vec(body).map_err(|e| TrackerError::CorruptState {
            key: id.clone(),
            message: e.to_string(),
        })?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(|e| TrackerError::nats(format!("publish {subject}"), e))?;
        ack.await
            .map_err(|e| TrackerError::nats(format!("ack of {subject} ({id})"), e))?;
        Ok(())
    }
}

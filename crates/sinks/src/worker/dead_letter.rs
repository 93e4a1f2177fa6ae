//! Parking an event in the sink's dead-letter stream, and how many are parked.

use async_nats::jetstream;
use async_nats::HeaderMap;
use futures::StreamExt;

use super::SinkWorker;
use crate::http::truncate;
use crate::SinkError;

impl SinkWorker {
    /// How many of this sink's events sit in the dead-letter stream now (redrive and drop
    /// lower it); None when the stream cannot be read.
    pub(super) async fn dead_letter_depth(&self) -> Option<u64> {
        let stream = self.js.get_stream(&self.dead_letter_stream).await.ok()?;
        let mut subjects = stream
            .info_with_subjects(&self.dead_letter_subject)
            .await
            .ok()?;
        let mut depth = 0u64;
        while let Some(Ok((_, count))) = subjects.next().await {
            depth += count as u64;
        }
        Some(depth)
    }

    /// Publishes the event to `dlq.sink.<sink>` with the reason; deduplicated by
    /// `<sink>/<event id>/<stream sequence>` so that a redelivered message is parked once,
    /// while the same event redriven (`tributary dlq redrive`, a new stream message) is
    /// parked again if the target still refuses it.
    pub(super) async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        event_id: &str,
        sequence: u64,
        reason: &str,
        body: &str,
        attempts: u32,
    ) -> Result<(), SinkError> {
        let clean = |s: &str| truncate(&s.replace(['\r', '\n'], " "), 2000);
        let mut headers = HeaderMap::new();
        let msg_id = if event_id.is_empty() {
            format!("{}/{}:{sequence}", self.name, self.stream)
        } else {
            format!("{}/{event_id}/{sequence}", self.name)
        };
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        headers.insert("Tributary-Sink", self.name);
        headers.insert("Tributary-Reason", clean(reason).as_str());
        headers.insert("Tributary-Target-Response", clean(body).as_str());
        headers.insert("Tributary-Event-Id", event_id);
        headers.insert("Tributary-Attempts", attempts.to_string().as_str());
        headers.insert("Tributary-Stream-Sequence", sequence.to_string().as_str());
        headers.insert("Tributary-Subject", msg.subject.to_string().as_str());
        self.js
            .publish_with_headers(
                self.dead_letter_subject.clone(),
                headers,
                msg.payload.clone(),
            )
            .await
            .map_err(|e| SinkError::nats("dead letter", e))?
            .await
            .map_err(|e| SinkError::nats("dead letter ack", e))?;
        Ok(())
    }
}

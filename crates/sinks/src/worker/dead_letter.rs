//! Parking an event in the sink's dead-letter stream, and how many are parked, since when.

use async_nats::jetstream;
use async_nats::HeaderMap;
use futures::StreamExt;

use super::SinkWorker;
use crate::http::truncate;
use crate::metrics as m;
use crate::SinkError;

impl SinkWorker {
    /// Sets the dead-letter gauges: how many of this sink's events are parked, and how long
    /// the oldest has waited (0 with none). Left as they were when the stream cannot be read.
    pub(super) async fn sample_dead_letters(&self) {
        let Ok(stream) = self.js.get_stream(&self.dead_letter_stream).await else {
            return;
        };
        let Some(depth) = self.dead_letter_depth(&stream).await else {
            return;
        };
        metrics::gauge!(m::DEAD_LETTER_DEPTH, "sink" => self.name).set(depth as f64);
        let age = match depth {
            0 => Some(0.0),
            // The first message of the subject is the oldest: redrive and drop delete.
            _ => stream
                .get_first_raw_message_by_subject(&self.dead_letter_subject, 1)
                .await
                .ok()
                .map(|msg| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0);
                    (now - msg.time.unix_timestamp_nanos() as f64 / 1e9).max(0.0)
                }),
        };
        if let Some(age) = age {
            metrics::gauge!(m::DEAD_LETTER_OLDEST_AGE, "sink" => self.name).set(age);
        }
    }

    /// How many of this sink's events sit in the dead-letter stream now (redrive and drop
    /// lower it); None when the stream cannot be read.
    async fn dead_letter_depth(&self, stream: &jetstream::stream::Stream) -> Option<u64> {
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

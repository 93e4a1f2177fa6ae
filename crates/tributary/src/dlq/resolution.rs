//! The record each redrive or drop leaves for the tracker's KPI "exception resolution time"
//! (`tributary_tracker::resolution`): published on `<tracker.subject_prefix>.dead_letter.resolved`
//! and acknowledged by the tracker's stream *before* the dead letter is deleted, so that a
//! crash in between loses nothing; the command run again publishes the same `Nats-Msg-Id`
//! (dropped as a duplicate) and the tracker's marker counts it once in any case.

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, message::StreamMessage};
use async_nats::HeaderMap;
use time::OffsetDateTime;
use tributary_config::Config;
use tributary_tracker::resolution::{Resolution, DOMAIN};

/// Where the records go; None without `[tracker]` (nothing would count them).
pub(super) struct Recorder {
    js: jetstream::Context,
    stream: String,
    subject: String,
}

impl Recorder {
    pub(super) fn new(config: &Config, js: &jetstream::Context) -> Option<Recorder> {
        let tracker = config.tracker.as_ref()?;
        Some(Recorder {
            js: js.clone(),
            stream: tracker.stream.clone(),
            subject: Resolution::subject(&tracker.subject_prefix),
        })
    }

    /// Fails unless the tracker's stream exists, so that a command that could not record a
    /// resolution stops before it republishes or deletes anything.
    pub(super) async fn check(&self) -> anyhow::Result<()> {
        self.js.get_stream(&self.stream).await.with_context(|| {
            format!(
                "the tracker's stream {} (where dlq records each resolution for the KPI; the \
                 bridge creates it at start-up): nothing was changed",
                self.stream
            )
        })?;
        Ok(())
    }

    /// Records that dead letter `seq` of `dead_letter_stream` (`msg`) was resolved now with
    /// `outcome`; `sink` None for the domain stage's.
    pub(super) async fn record(
        &self,
        dead_letter_stream: &str,
        msg: &StreamMessage,
        sink: Option<&str>,
        outcome: &str,
    ) -> anyhow::Result<()> {
        let seq = msg.sequence;
        let e = super::entry(seq, msg.time, Some(&msg.headers));
        let r = Resolution {
            dead_letter_stream: dead_letter_stream.to_string(),
            dead_letter_seq: seq,
            sink: sink.unwrap_or(DOMAIN).to_string(),
            mapping: e.mapping,
            event_id: e.event_id,
            outcome: outcome.to_string(),
            reason: e.reason,
            parked_at_micros: micros(msg.time),
            resolved_at_micros: micros(OffsetDateTime::now_utc()),
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", r.msg_id().as_str());
        let what = || {
            format!(
                "recording the resolution of dead letter {seq} on {} (stream {}, created by the \
                 bridge's tracker at start-up); the dead letter is left in place",
                self.subject, self.stream
            )
        };
        let ack = self
            .js
            .publish_with_headers(
                self.subject.clone(),
                headers,
                serde_json::to_vec(&r)?.into(),
            )
            .await
            .with_context(what)?
            .await
            .with_context(what)?;
        if ack.stream != self.stream {
            bail!(
                "{} is stored by stream {}, not the tracker's {}: dead letter {seq} left in place",
                self.subject,
                ack.stream,
                self.stream
            );
        }
        Ok(())
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

//! Several events in one `ChangeEventBatch` message (`snapshot_rows_per_message`,
//! `changes_per_message` > 1): JetStream's cost is per stored message, so a batch of events
//! costs the server about what one event does. A run of one event goes out as it is.

use async_nats::Subject;
use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, WireType};

use crate::outbound::Outbound;

/// A batch is sent before it would grow past this, whatever its event count: far below the
/// NATS default `max_payload` (1 MiB) even for wide rows, and big enough that the per-message
/// cost is already spread thin.
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// `ChangeEventBatch.events` is field 1.
const EVENTS_FIELD: u32 = 1;

/// Key (1 byte) and length (up to 10 bytes) around each event in a batch.
const FRAMING: usize = 11;

/// Consecutive events of one subject, sent as one message once full.
pub(crate) struct EventBatch {
    subject: Subject,
    limit: usize,
    events: Vec<Bytes>,
    bytes: usize,
    /// The message's id (`Nats-Msg-Id` when enabled): its last event's, so that the position
    /// read back from the stream's last message is that of the last event stored.
    last_id: String,
    commit_time_micros: i64,
}

impl EventBatch {
    pub(crate) fn new(subject: Subject, limit: usize) -> Self {
        EventBatch {
            subject,
            limit,
            events: Vec::new(),
            bytes: 0,
            last_id: String::new(),
            commit_time_micros: 0,
        }
    }

    pub(crate) fn subject(&self) -> &Subject {
        &self.subject
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Adds one encoded `ChangeEvent`; returns a message when one is ready to send (at most
    /// one per call, since `limit` is at least 2).
    pub(crate) fn push(
        &mut self,
        id: String,
        event: Bytes,
        commit_time_micros: i64,
    ) -> Option<Outbound> {
        let framed = event.len() + FRAMING;
        let sent = (!self.events.is_empty() && self.bytes + framed > MAX_BATCH_BYTES)
            .then(|| self.finish())
            .flatten();
        self.bytes += framed;
        self.events.push(event);
        self.last_id = id;
        self.commit_time_micros = commit_time_micros;
        if sent.is_some() {
            return sent;
        }
        (self.events.len() >= self.limit)
            .then(|| self.finish())
            .flatten()
    }

    /// The events not sent yet as one message (a lone event as itself); `None` when empty.
    pub(crate) fn finish(&mut self) -> Option<Outbound> {
        let msg_id = std::mem::take(&mut self.last_id);
        let events = std::mem::take(&mut self.events);
        let bytes = std::mem::take(&mut self.bytes);
        let (subject, payload) = match events.len() {
            0 => return None,
            1 => (self.subject.clone(), events.into_iter().next()?),
            _ => {
                let mut payload = BytesMut::with_capacity(bytes);
                for event in &events {
                    encode_key(EVENTS_FIELD, WireType::LengthDelimited, &mut payload);
                    encode_varint(event.len() as u64, &mut payload);
                    payload.put_slice(event);
                }
                (batch_subject(&self.subject), payload.freeze())
            }
        };
        Some(Outbound::Change {
            subject,
            msg_id,
            payload,
            commit_time_micros: self.commit_time_micros,
            batchable: false,
            ends_transaction: false,
        })
    }
}

/// `<subject>_batch`: `...orders.insert` → `...orders.insert_batch`.
fn batch_subject(subject: &Subject) -> Subject {
    format!("{subject}_batch").into()
}

/// Merges runs of consecutive batchable changes of one subject within one transaction into
/// batches of at most `limit` events and [`MAX_BATCH_BYTES`].
///
/// Where a batch ends depends only on the changes themselves (subject, transaction end, count
/// and size from the run's start), never on how they arrived: two publishers of the same
/// source — a restarted bridge and its predecessor's messages still in flight, a fenced HA
/// replica — put the same changes at the same stream sequence, which is what keeps the
/// expected-last-sequence chain exactly-once (docs/durability.md). So a run stays open across
/// deliveries until its transaction's last change, another subject or a full batch; that
/// waits for nothing the session does not already wait for (a transaction is confirmed at its
/// commit). A marker met inside a run goes out right after the message that holds the run:
/// it then still stands after every change it stood after.
pub(crate) struct Coalescer {
    limit: usize,
    run: Option<EventBatch>,
    held: Vec<Outbound>,
}

impl Coalescer {
    pub(crate) fn new(limit: usize) -> Self {
        Coalescer {
            limit,
            run: None,
            held: Vec::new(),
        }
    }

    /// What of `items` (and of the runs left open before) is ready to send, in order.
    pub(crate) fn feed(&mut self, items: Vec<Outbound>) -> Vec<Outbound> {
        if self.limit <= 1 {
            return items;
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Outbound::Change {
                    subject,
                    msg_id,
                    payload,
                    commit_time_micros,
                    batchable: true,
                    ends_transaction,
                } => {
                    if self.run.as_ref().is_some_and(|r| r.subject() != &subject) {
                        self.close(&mut out);
                    }
                    let limit = self.limit;
                    let run = self
                        .run
                        .get_or_insert_with(|| EventBatch::new(subject, limit));
                    if let Some(sent) = run.push(msg_id, payload, commit_time_micros) {
                        out.push(sent);
                        out.append(&mut self.held);
                    }
                    if ends_transaction {
                        self.close(&mut out);
                    }
                }
                marker @ (Outbound::Checkpoint { .. } | Outbound::SnapshotChunk { .. }) => {
                    if self.run.as_ref().is_some_and(|r| !r.is_empty()) {
                        self.held.push(marker);
                    } else {
                        out.push(marker);
                    }
                }
                other => {
                    self.close(&mut out);
                    out.push(other);
                }
            }
        }
        out
    }

    fn close(&mut self, out: &mut Vec<Outbound>) {
        if let Some(sent) = self.run.take().and_then(|mut r| r.finish()) {
            out.push(sent);
        }
        out.append(&mut self.held);
    }
}

#[cfg(test)]
#[path = "batching_tests.rs"]
mod tests;

//! Pipelined publishing that keeps order, never leaves a gap, and asks for few acks.
//!
//! Every message carries `Nats-Expected-Last-Sequence` = its predecessor's sequence, and
//! `Nats-Msg-Id` when the caller asks for it ([`OrderedPublisher::with_msg_id`]: the chain
//! alone already refuses a duplicate, see docs/durability.md). That chain is what makes
//! sparse acks sound: a message is stored only if the one before it is the stream's last,
//! so if one publish fails every later one fails too, and an ack for message n proves that
//! n−1, n−2, … are stored. Only the messages the caller marks (the last before a checkpoint,
//! the last of a batch) request an ack; the others go out as plain publishes with the same
//! headers. The stream stays gapless and ordered; on an error the caller restarts from its
//! last confirmed position.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};

use crate::NatsError;

type AckFuture<T> = Pin<Box<dyn Future<Output = (Vec<T>, Result<u64, NatsError>)> + Send>>;

/// What came back for a group of entries, in the order they were pushed: the tags of every
/// message the ack covers, then the tag of the acked message (or of a marker).
pub struct Acked<T> {
    pub tags: Vec<T>,
    /// Stream sequence of the acked message; None for a marker.
    pub sequence: Option<u64>,
}

pub struct OrderedPublisher<T> {
    js: jetstream::Context,
    client: async_nats::Client,
    next_sequence: u64,
    inflight: FuturesOrdered<AckFuture<T>>,
    /// Tags of messages sent without an ack request, waiting for the next acked one.
    unacked: Vec<T>,
    in_flight_messages: usize,
    /// Send `Nats-Msg-Id`: JetStream then also tracks every id in the duplicate window.
    msg_id_header: bool,
}

impl<T: Send + 'static> OrderedPublisher<T> {
    /// `last_sequence`: the stream's last sequence when publishing starts.
    pub fn new(js: jetstream::Context, client: async_nats::Client, last_sequence: u64) -> Self {
        OrderedPublisher {
            js,
            client,
            next_sequence: last_sequence + 1,
            inflight: FuturesOrdered::new(),
            unacked: Vec::new(),
            in_flight_messages: 0,
            msg_id_header: true,
        }
    }

    /// Whether messages carry `Nats-Msg-Id` (default true); `msg_id` still names a message
    /// in errors when they do not.
    pub fn with_msg_id(mut self, on: bool) -> Self {
        self.msg_id_header = on;
        self
    }

    /// Messages sent and not yet covered by an ack.
    pub fn in_flight(&self) -> usize {
        self.in_flight_messages
    }

    /// Whether anything (messages or markers) is waiting.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_empty() && self.unacked.is_empty()
    }

    /// Publishes one message; `want_ack` asks JetStream to acknowledge it (and so everything
    /// before it). The caller must ask for an ack on the last message before any marker.
    pub async fn publish(
        &mut self,
        subject: async_nats::Subject,
        msg_id: &str,
        payload: Bytes,
        tag: T,
        want_ack: bool,
    ) -> Result<(), NatsError> {
        let expected_last = self.next_sequence - 1;
        let subject_err =
            |subject: &async_nats::Subject, e: &dyn std::fmt::Display| NatsError::Publish {
                subject: subject.to_string(),
                message: e.to_string(),
            };
        if !want_ack {
            let mut headers = HeaderMap::new();
            if self.msg_id_header {
                headers.insert(NATS_MESSAGE_ID, msg_id);
            }
            headers.insert(
                NATS_EXPECTED_LAST_SEQUENCE,
                expected_last.to_string().as_str(),
            );
            self.client
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|e| subject_err(&subject, &e))?;
            self.next_sequence += 1;
            self.in_flight_messages += 1;
            self.unacked.push(tag);
            return Ok(());
        }
        let mut message = PublishMessage::build()
            .payload(payload)
            .expected_last_sequence(expected_last);
        if self.msg_id_header {
            message = message.message_id(msg_id);
        }
        let ack = self
            .js
            .send_publish(subject.clone(), message)
            .await
            .map_err(|e| subject_err(&subject, &e))?;
        self.next_sequence += 1;
        let mut tags = std::mem::take(&mut self.unacked);
        tags.push(tag);
        self.in_flight_messages += 1;
        let expected_sequence = self.next_sequence - 1;
        let msg_id = msg_id.to_string();
        let fut = ack.into_future();
        self.inflight.push_back(Box::pin(async move {
            let result = match fut.await {
                Ok(ack) if ack.duplicate => Err(NatsError::Ack(format!(
                    "message {msg_id} was a duplicate of sequence {}: the stream has another writer",
                    ack.sequence
                ))),
                Ok(ack) if ack.sequence != expected_sequence => Err(NatsError::Ack(format!(
                    "message {msg_id} stored at sequence {} instead of {expected_sequence}: the stream has another writer",
                    ack.sequence
                ))),
                Ok(ack) => Ok(ack.sequence),
                Err(e) => Err(NatsError::Ack(e.to_string())),
            };
            (tags, result)
        }));
        Ok(())
    }

    /// An entry without a message: comes back once everything pushed before it is acked.
    pub fn push_marker(&mut self, tag: T) -> Result<(), NatsError> {
        if !self.unacked.is_empty() {
            return Err(NatsError::Ack(
                "a marker follows messages that requested no ack".into(),
            ));
        }
        self.inflight
            .push_back(Box::pin(async move { (vec![tag], Ok(0)) }));
        Ok(())
    }

    /// The next group in order, once acked; None when nothing awaits an ack.
    /// Cancel-safe: a group is only taken when it is ready.
    pub async fn next_acked(&mut self) -> Option<Result<Acked<T>, NatsError>> {
        let (tags, result) = self.inflight.next().await?;
        let sequence = match result {
            Ok(seq) => seq,
            Err(e) => return Some(Err(e)),
        };
        if sequence != 0 {
            self.in_flight_messages -= tags.len().min(self.in_flight_messages);
        }
        Some(Ok(Acked {
            tags,
            sequence: (sequence != 0).then_some(sequence),
        }))
    }
}

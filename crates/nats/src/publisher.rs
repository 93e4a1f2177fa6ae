//! Pipelined publishing that keeps order and never leaves a gap.
//!
//! Every message carries `Nats-Msg-Id` (JetStream drops a re-sent duplicate) and
//! `Nats-Expected-Last-Sequence`: if one publish fails, every later one in the window
//! fails too, so the stream never holds message n+1 without message n. The caller
//! restarts from its last confirmed position and the stream stays gapless and ordered.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};

use crate::NatsError;

type AckFuture<T> = Pin<Box<dyn Future<Output = (T, Result<u64, NatsError>)> + Send>>;

/// What came back for one entry, in the order the entries were pushed.
pub struct Acked<T> {
    pub tag: T,
    /// Stream sequence of the stored message; None for a marker.
    pub sequence: Option<u64>,
}

pub struct OrderedPublisher<T> {
    js: jetstream::Context,
    next_sequence: u64,
    inflight: FuturesOrdered<AckFuture<T>>,
    published: usize,
}

impl<T: Send + 'static> OrderedPublisher<T> {
    /// `last_sequence`: the stream's last sequence when publishing starts.
    pub fn new(js: jetstream::Context, last_sequence: u64) -> Self {
        OrderedPublisher {
            js,
            next_sequence: last_sequence + 1,
            inflight: FuturesOrdered::new(),
            published: 0,
        }
    }

    /// Entries (messages and markers) awaiting their turn.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Messages sent, awaiting acks or acked.
    pub fn published(&self) -> usize {
        self.published
    }

    pub async fn publish(
        &mut self,
        subject: async_nats::Subject,
        msg_id: String,
        payload: Bytes,
        tag: T,
    ) -> Result<(), NatsError> {
        let expected_last = self.next_sequence - 1;
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(&msg_id)
            .expected_last_sequence(expected_last);
        let subject_text = subject.to_string();
        let ack: PublishAckFuture =
            self.js
                .send_publish(subject, message)
                .await
                .map_err(|e| NatsError::Publish {
                    subject: subject_text,
                    message: e.to_string(),
                })?;
        self.next_sequence += 1;
        self.published += 1;
        let fut = ack.into_future();
        self.inflight.push_back(Box::pin(async move {
            let result = match fut.await {
                Ok(ack) if ack.duplicate => Err(NatsError::Ack(format!(
                    "message {msg_id} was a duplicate of sequence {}: the stream has another writer",
                    ack.sequence
                ))),
                Ok(ack) => Ok(ack.sequence),
                Err(e) => Err(NatsError::Ack(e.to_string())),
            };
            (tag, result)
        }));
        Ok(())
    }

    /// An entry without a message: comes back once everything pushed before it is acked.
    pub fn push_marker(&mut self, tag: T) {
        self.inflight
            .push_back(Box::pin(async move { (tag, Ok(0)) }));
    }

    /// The next entry in order, once acked; None when nothing is in flight.
    /// Cancel-safe: an entry is only taken when it is ready.
    pub async fn next_acked(&mut self) -> Option<Result<Acked<T>, NatsError>> {
        let (tag, result) = self.inflight.next().await?;
        Some(result.map(|seq| Acked {
            tag,
            sequence: (seq != 0).then_some(seq),
        }))
    }
}

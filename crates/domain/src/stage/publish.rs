//! Publishing domain events and dead letters: sent in order without waiting, the acks
//! awaited by the batch (see the module doc) before its source messages are acked.

use async_nats::header::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use bytes::Bytes;
use prost::Message as _;
use tracing::warn;
use tributary_proto::retail::v1::{DomainEvent, EventMeta};

use super::DomainStage;
use crate::{DomainError, MapError};

/// A message to publish with its headers.
pub(super) struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl DomainStage {
    /// Sends one message; the returned future resolves with JetStream's ack.
    pub(super) async fn send(&self, out: Outgoing) -> Result<PublishAckFuture, DomainError> {
        let subject = out.subject;
        self.js
            .publish_with_headers(subject.clone(), out.headers, out.payload)
            .await
            .map_err(|e| DomainError::nats(format!("publish to {subject}"), e))
    }
}

/// A domain event with `Nats-Msg-Id`.
pub(super) fn event_message(subject: &str, msg_id: &str, payload: Bytes) -> Outgoing {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    Outgoing {
        subject: subject.to_string(),
        headers,
        payload,
    }
}

/// The dead letter of a change that `mapping` cannot map.
pub(super) fn dead_letter(
    mapping: &str,
    event_id: &str,
    change: Bytes,
    reason: &MapError,
) -> Outgoing {
    warn!(mapping, event_id, reason = %reason, "change cannot be mapped: dead-lettered");
    Outgoing {
        subject: crate::dead_letter::subject(mapping),
        headers: crate::dead_letter::headers(mapping, event_id, &reason.to_string()),
        payload: change,
    }
}

/// `DomainEvent { meta, <member> = entity }`: the generated type encodes the meta, and the
/// entity (built dynamically) is appended as its oneof field; protobuf decoders merge both.
pub(super) fn encode_event(meta: EventMeta, member: u32, entity: &[u8]) -> Bytes {
    let head = DomainEvent {
        meta: Some(meta),
        entity: None,
    };
    let mut buf = Vec::with_capacity(head.encoded_len() + entity.len() + 8);
    head.encode_raw(&mut buf);
    prost::encoding::encode_key(member, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(entity.len() as u64, &mut buf);
    buf.extend_from_slice(entity);
    buf.into()
}

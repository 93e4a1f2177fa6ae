//! Publishing domain events and dead letters, each awaited until JetStream acknowledges it.

use async_nats::header::HeaderMap;
use bytes::Bytes;
use prost::Message as _;
use tracing::warn;
use tributary_proto::retail::v1::{DomainEvent, EventMeta};

use super::DomainStage;
use crate::metrics as m;
use crate::{DomainError, MapError};

impl DomainStage {
    pub(super) async fn publish(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<(), DomainError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        self.publish_with(subject, headers, payload).await
    }

    async fn publish_with(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), DomainError> {
        let err = |e: &dyn std::fmt::Display| DomainError::nats(format!("publish to {subject}"), e);
        self.js
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(|e| err(&e))?
            .await
            .map_err(|e| err(&e))?;
        Ok(())
    }

    pub(super) async fn dead_letter(
        &self,
        mapping: &str,
        event_id: &str,
        change: Bytes,
        reason: &MapError,
    ) -> Result<(), DomainError> {
        warn!(mapping, event_id, reason = %reason, "change cannot be mapped: dead-lettered");
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{event_id}/{mapping}/dlq").as_str(),
        );
        headers.insert("Tributary-Mapping", mapping);
        headers.insert(
            "Tributary-Reason",
            reason.to_string().replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert("Tributary-Source-Event-Id", event_id);
        let subject = format!("dlq.domain.{}", tributary_nats::subject::token(mapping));
        self.publish_with(&subject, headers, change).await?;
        metrics::counter!(m::DEAD_LETTERS, "mapping" => mapping.to_string()).increment(1);
        Ok(())
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

//! The ERP's side: every inventory entity's state as the domain stage stored it (KV bucket
//! `domain.state_bucket`, keys `entity.inventory.<key>`), read as the latest value per key.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, consumer::push, consumer::DeliverPolicy};
use futures::StreamExt as _;
use prost::Message as _;
use tributary_domain::EntityState;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent, InventoryLevel};

use crate::ReconcileError;

/// One SKU-location as the ERP (the owner of stock) has it.
#[derive(Debug, Clone)]
pub struct ErpLevel {
    /// The domain entity key, `<sku>:<location>`.
    pub key: String,
    pub level: InventoryLevel,
    /// The entity's version in the domain state.
    pub version: u64,
    /// The last event, the model of a repair.
    pub event: DomainEvent,
}

/// Every inventory entity with a SKU, by entity key.
pub async fn levels(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<BTreeMap<String, ErpLevel>, ReconcileError> {
    let stream_name = format!("KV_{bucket}");
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| ReconcileError::nats(format!("stream {stream_name}"), e))?;
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            filter_subject: format!("$KV.{bucket}.entity.inventory.>"),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| ReconcileError::nats("inventory state consumer", e))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut out = BTreeMap::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| ReconcileError::nats("inventory state consumer", e))?;
    while pending > 0 {
        let Some(msg) = messages.next().await else {
            return Err(ReconcileError::nats(
                "inventory state consumer",
                "the message stream ended",
            ));
        };
        let msg = msg.map_err(|e| ReconcileError::nats("inventory state", e))?;
        pending -= 1;
        let deleted = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| op.as_str() != "PUT");
        if deleted {
            continue;
        }
        if let Some(level) = decode(msg.subject.as_str(), &msg.payload)? {
            out.insert(level.key.clone(), level);
        }
    }
    Ok(out)
}

/// The level of one stored state; None for one without an inventory event or a SKU.
fn decode(key: &str, payload: &[u8]) -> Result<Option<ErpLevel>, ReconcileError> {
    let corrupt = |message: String| ReconcileError::CorruptState {
        key: key.to_string(),
        message,
    };
    let state: EntityState = serde_json::from_slice(payload).map_err(|e| corrupt(e.to_string()))?;
    let Some(last) = &state.last else {
        return Ok(None);
    };
    let event = DomainEvent::decode(last.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    let (Some(meta), Some(Entity::Inventory(level))) = (&event.meta, &event.entity) else {
        return Ok(None);
    };
    if level.sku.is_empty() {
        return Ok(None);
    }
    Ok(Some(ErpLevel {
        key: meta.entity_key.clone(),
        level: level.clone(),
        version: state.version,
        event: event.clone(),
    }))
}

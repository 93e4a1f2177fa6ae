//! Raw Shopify events → domain events: one durable pull consumer per shop on the raw stream.
//!
//! ```text
//!  SAAS_SHOPIFY ──durable consumer (1 unacked)──► map topic ──► ExternalFeed (KV state, CAS) ──► RETAIL
//!     saas.shopify.<shop>.>            │ unmappable                 │ stale: not published
//!        ▲                             └──► DLQ_DOMAIN               │
//!        └──────────── ack ◄────────────────────────────────────────┘
//! ```
//!
//! A raw event is acked only after its domain event (or dead letter) is stored, or once it is
//! known to be stale or a repeat, so a crash anywhere re-maps it, and the entity state turns
//! the re-mapping into the identical event (dropped by `Nats-Msg-Id`) or nothing.

use std::sync::Arc;

use async_nats::jetstream::AckKind;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tributary_core::{BoxFuture, Component, Failure};
use tributary_domain::{Applied, ExternalEvent, ExternalFeed};
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::retail::v1::SourceRef;

use super::{envelope, mapper, Shop};
use crate::mapping_consumer::MappingConsumer;
use crate::metrics as m;
use crate::SaasError;

pub(super) struct Mapper {
    pub shop: Arc<Shop>,
    pub feed: Arc<ExternalFeed>,
    /// Under `[ha]`: checked before each event is mapped and before its ack.
    pub fence: tributary_core::FenceCell,
}

impl Component for Mapper {
    fn name(&self) -> String {
        format!("shopify mapper {}", self.shop.cfg.name)
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let result = self.consume(stop).await;
            if result.is_err() {
                metrics::counter!(m::ERRORS, "shop" => self.shop.cfg.name.clone()).increment(1);
            }
            Ok(result?)
        })
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

impl Mapper {
    async fn consume(&self, stop: &CancellationToken) -> Result<(), SaasError> {
        let name = &self.shop.cfg.name;
        let durable = format!("tributary-shopify-{}", tributary_nats::subject::token(name));
        let mut consumer = MappingConsumer::open(
            &self.shop.js,
            &self.shop.cfg.stream,
            &durable,
            "Tributary Shopify domain mapping",
            envelope::shop_wildcard(name),
        )
        .await?;
        let fence = self.fence.get();
        while let Some(msg) = consumer.next(stop).await? {
            fence.check()?;
            match self.handle(&msg.subject, &msg.payload).await {
                Ok(outcome) => {
                    metrics::counter!(m::DOMAIN_EVENTS, "shop" => name.clone(), "outcome" => outcome)
                        .increment(1);
                    fence.check()?;
                    msg.ack().await.map_err(|e| SaasError::nats("ack", e))?
                }
                Err(e) => {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Maps one raw event; Err only for transient failures (the message is redelivered).
    async fn handle(&self, subject: &str, payload: &[u8]) -> Result<&'static str, SaasError> {
        let shop = &self.shop.cfg.name;
        let change = match ChangeEvent::decode(payload) {
            Ok(c) => c,
            Err(e) => {
                crate::dead_letter::park(
                    &self.shop.js,
                    &self.shop.cfg.name,
                    "shopify_decode",
                    subject,
                    payload,
                    &e.to_string(),
                )
                .await?;
                return Ok("dead_letter");
            }
        };
        let topic = change.table.as_str();
        let mapping = mapper::mapping_name(topic);
        let json = crate::json_change::payload(&change)
            .ok_or_else(|| "no payload".to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).map_err(|e| e.to_string()));
        let mapped = json.and_then(|v| mapper::map(shop, topic, &v, change.commit_time_micros));
        let mapped = match mapped {
            Ok(Some(m)) => m,
            Ok(None) => return Ok("ignored"),
            Err(reason) => {
                crate::dead_letter::park(
                    &self.shop.js,
                    &self.shop.cfg.name,
                    &mapping,
                    &change.event_id,
                    payload,
                    &reason,
                )
                .await?;
                return Ok("dead_letter");
            }
        };
        let event = ExternalEvent {
            entity: mapped.entity.into(),
            event: mapped.event.into(),
            key: mapped.key,
            system: self.shop.cfg.system.clone(),
            feed: feed_name(shop),
            as_of_micros: mapped.as_of_micros,
            event_id: format!("{shop}:{}@{}/{mapping}", mapped.gid, mapped.as_of_micros),
            mapping: mapping.clone(),
            source_ref: SourceRef {
                source: shop.clone(),
                event_id: change.event_id.clone(),
                commit_lsn: 0,
                ordinal: 0,
                origin: topic.to_string(),
                feed_position: change.origin.clone(),
            },
            body: mapped.body,
        };
        Ok(match self.feed.apply(&event).await? {
            Applied::Published(_) => "published",
            Applied::Stale => "stale",
            Applied::Repeated => "repeated",
        })
    }
}

/// The feed's name in the entity state.
pub(super) fn feed_name(shop: &str) -> String {
    format!("shopify:{shop}")
}

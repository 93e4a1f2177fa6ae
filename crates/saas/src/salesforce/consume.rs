//! Raw Salesforce changes → domain events: one durable pull consumer per feed on the raw
//! stream, one message at a time, acked only after its domain events (or dead letter) are
//! stored — as the Shopify mapper does (`crate::shopify` `consume.rs`), so a crash re-maps the
//! message and the entity state turns the re-mapping into repeats.

use std::sync::Arc;

use async_nats::jetstream::{self, AckKind};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tributary_config::SalesforceCdcConfig;
use tributary_core::{BoxFuture, Component, Failure};
use tributary_domain::{Applied, ExternalEvent, ExternalFeed};
use tributary_proto::cdc::v1::{ChangeEvent, Operation};
use tributary_proto::retail::v1::SourceRef;

use super::{envelope, mapper};
use crate::mapping_consumer::MappingConsumer;
use crate::metrics as m;
use crate::SaasError;

pub(super) struct Mapper {
    pub cfg: SalesforceCdcConfig,
    pub js: jetstream::Context,
    pub feed: Arc<ExternalFeed>,
    /// Under `[ha]`: checked before each event is mapped and before its ack.
    pub fence: tributary_core::FenceCell,
}

impl Component for Mapper {
    fn name(&self) -> String {
        format!("salesforce mapper {}", self.cfg.name)
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let result = self.consume(stop).await;
            if result.is_err() {
                metrics::counter!(m::SAAS_RESTARTS, "feed" => self.cfg.name.clone(), "reason" => "mapper")
                    .increment(1);
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
        let name = &self.cfg.name;
        let durable = format!(
            "tributary-salesforce-{}",
            tributary_nats::subject::token(name)
        );
        let mut consumer = MappingConsumer::open(
            &self.js,
            &self.cfg.stream,
            &durable,
            "Tributary Salesforce domain mapping",
            envelope::feed_wildcard(name),
        )
        .await?;
        let fence = self.fence.get();
        while let Some(msg) = consumer.next(stop).await? {
            fence.check()?;
            match self.handle(&msg.payload).await {
                Ok(outcome) => {
                    metrics::counter!(m::SAAS_DOMAIN_EVENTS, "feed" => name.clone(), "outcome" => outcome)
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

    /// Maps one raw change; Err only for transient failures (the message is redelivered).
    async fn handle(&self, payload: &[u8]) -> Result<&'static str, SaasError> {
        let feed = &self.cfg.name;
        let change = match ChangeEvent::decode(payload) {
            Ok(c) => c,
            Err(e) => {
                crate::dead_letter::park(
                    &self.js,
                    "salesforce",
                    "salesforce_decode",
                    "?",
                    payload,
                    &e.to_string(),
                )
                .await?;
                return Ok("dead_letter");
            }
        };
        let mapping = mapper::mapping_name(&change.table);
        let read_back = change.op == Operation::Read as i32;
        let mapped = crate::json_change::payload(&change)
            .ok_or_else(|| "no payload".to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).map_err(|e| e.to_string()))
            .and_then(|v| mapper::map(&v, read_back, change.commit_time_micros));
        let mapped = match mapped {
            Ok(m) if m.is_empty() => return Ok("ignored"),
            Ok(m) => m,
            Err(reason) => {
                crate::dead_letter::park(
                    &self.js,
                    "salesforce",
                    &mapping,
                    &change.event_id,
                    payload,
                    &reason,
                )
                .await?;
                return Ok("dead_letter");
            }
        };
        let mut outcome = "repeated";
        for mm in mapped {
            let event = ExternalEvent {
                entity: mm.entity.into(),
                event: mm.event.into(),
                key: mm.key,
                system: self.cfg.system.clone(),
                feed: format!("salesforce:{feed}"),
                as_of_micros: mm.as_of_micros,
                event_id: format!("{}@{}/{mapping}", change.event_id, mm.record_id),
                mapping: mapping.clone(),
                source_ref: SourceRef {
                    source: feed.clone(),
                    event_id: change.event_id.clone(),
                    commit_lsn: 0,
                    ordinal: 0,
                    origin: change.table.clone(),
                    feed_position: change.origin.clone(),
                },
                body: mm.body,
            };
            match self.feed.apply(&event).await? {
                Applied::Published(_) => outcome = "published",
                Applied::Stale if outcome != "published" => outcome = "stale",
                _ => {}
            }
        }
        Ok(outcome)
    }
}

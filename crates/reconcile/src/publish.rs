//! What a sweep publishes: one drift event per drifting SKU-location and target on
//! `<prefix>.inventory.drift` (JSON), and with `repair = true` one repair event per drift on
//! the domain stream, which the target's sink applies (`tributary_sinks::repair`).

use async_nats::jetstream;
use async_nats::HeaderMap;
use prost::Message as _;
use serde::Serialize;
use tributary_proto::retail::v1::domain_event::Entity;
use tributary_sinks::repair::{repair_subject, REASON_HEADER, REPAIR_EVENT, TARGET_HEADER};

use crate::erp::ErpLevel;
use crate::report::Drift;
use crate::ReconcileError;

/// The body of a drift event.
#[derive(Debug, Serialize)]
struct DriftEvent<'a> {
    #[serde(flatten)]
    drift: &'a Drift,
    /// Start of the sweep that found it (microseconds since the Unix epoch).
    sweep_micros: i64,
}

pub struct Publisher {
    pub js: jetstream::Context,
    /// `<prefix>.inventory.drift`.
    pub drift_subject: String,
    /// Subject prefix of the domain events (`sinks.subject_prefix`).
    pub domain_prefix: String,
    /// `sinks.partitions`: a repair goes to its entity's partition like any event of it.
    pub partitions: u32,
}

impl Publisher {
    /// Publishes the drift event; its message id makes a repeat of the same sweep a duplicate.
    pub async fn drift(&self, drift: &Drift, sweep_micros: i64) -> Result<(), ReconcileError> {
        let body = serde_json::to_vec(&DriftEvent {
            drift,
            sweep_micros,
        })
        .map_err(|e| ReconcileError::nats("drift event", e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!(
                "inventory-drift/{sweep_micros}/{}/{}",
                drift.target, drift.entity_key
            )
            .as_str(),
        );
        self.send(self.drift_subject.clone(), headers, body).await
    }

    /// Publishes a repair of `erp`'s level for `target`, at the version compared.
    pub async fn repair(
        &self,
        erp: &ErpLevel,
        drift: &Drift,
        sweep_micros: i64,
    ) -> Result<(), ReconcileError> {
        let event_id = format!("repair/{sweep_micros}/{}/{}", drift.target, erp.key);
        let mut event = erp.event.clone();
        let meta = event.meta.get_or_insert_with(Default::default);
        meta.event_id = event_id.clone();
        meta.event = REPAIR_EVENT.into();
        meta.entity_version = erp.version;
        meta.mapping = "reconcile.inventory".into();
        // No business time of its own: the apply latency histogram leaves it out.
        meta.event_time_micros = 0;
        event.entity = Some(Entity::Inventory(erp.level.clone()));
        let reason = format!(
            "inventory drift: {} showed {} for {} at {}, the ERP {} (sweep {sweep_micros}, version {})",
            drift.target, drift.found, drift.sku, drift.location, drift.erp, erp.version
        );
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id.as_str());
        headers.insert(TARGET_HEADER, drift.target.as_str());
        headers.insert(REASON_HEADER, reason.as_str());
        let subject = tributary_core::partition::partitioned_subject(
            &repair_subject(&self.domain_prefix, "inventory"),
            &erp.key,
            self.partitions,
        );
        self.send(subject, headers, event.encode_to_vec()).await
    }

    async fn send(
        &self,
        subject: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<(), ReconcileError> {
        let what = format!("publish {subject}");
        self.js
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(|e| ReconcileError::nats(what.clone(), e))?
            .await
            .map_err(|e| ReconcileError::nats(what, e))?;
        Ok(())
    }
}

//! ERP inbox target: storefront orders, refunds and return requests / receipts written into
//! the ERP's PostgreSQL database through an inbox table, which the ERP processes itself
//! (docs/order-to-cash.md).
//!
//! ```text
//!  order.placed / order.status_changed / refund.created  (system of record in `systems`)
//!  return.requested / return.received / fulfillment.updated (systems in `entity_systems`)
//!     ─► row {event_id, event_type, entity_key, entity_version, source_system, payload jsonb}
//!     ─► batcher (rows of many lanes) ─► one transaction, ON CONFLICT (event_id) DO NOTHING
//!     ─► the ERP's trigger on the inbox: sales order, stock allocation, credit memo
//!          └─ raises ─► that row alone is dead-lettered with SQLSTATE and message
//! ```
//!
//! The inbox must not be published to a source (checked at start): the bridge would read its
//! own writes back. What the ERP makes of them (sales orders, their status) is published as
//! usual and comes back as `system_of_record = "erp"` events, which this sink skips.

mod inbox;
mod payload;

use std::sync::Arc;
use std::time::Duration;

use tributary_config::{ErpSinkConfig, SourceConfig};
use tributary_postgres::ConnectParams;
use tributary_proto::retail::v1::DomainEvent;

use crate::activity::Activity;
use crate::batch::{BatchOptions, Batcher};
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::{ApplyError, SinkError};

pub struct ErpTarget {
    cfg: ErpSinkConfig,
    batches: Batcher<inbox::Row>,
}

fn connect_params(cfg: &ErpSinkConfig) -> Result<ConnectParams, SinkError> {
    let password = match &cfg.connection.password {
        Some(secret) => Some(
            secret
                .resolve()
                .map_err(|e| SinkError::config("sinks.erp.connection.password", e.to_string()))?,
        ),
        None => None,
    };
    Ok(ConnectParams::from_config(
        &cfg.connection,
        password,
        "tributary-sink-erp",
    ))
}

impl ErpTarget {
    /// Connects, checks the inbox (columns, not published to any of `sources`) and starts
    /// the batcher.
    pub async fn new(cfg: &ErpSinkConfig, sources: &[SourceConfig]) -> Result<Self, SinkError> {
        let (schema, table) = cfg.table_parts();
        let inbox = inbox::Inbox::new(connect_params(cfg)?, &schema, &table);
        let publications: Vec<(String, String)> = sources
            .iter()
            .map(|s| (s.publication.clone(), s.name.clone()))
            .collect();
        inbox.preflight(&schema, &table, &publications).await?;
        let batches = Batcher::spawn(
            Arc::new(inbox),
            BatchOptions {
                sink: "erp",
                size: cfg.batch_size,
                linger: Duration::from_millis(cfg.batch_linger_ms),
                concurrency: 1,
                queue: cfg.batch_size.max(cfg.delivery.lanes) * 2,
            },
        );
        Ok(ErpTarget {
            cfg: cfg.clone(),
            batches,
        })
    }

    pub fn filter_subjects(cfg: &ErpSinkConfig, prefix: &str) -> Vec<String> {
        cfg.events.iter().map(|e| format!("{prefix}.{e}")).collect()
    }

    /// Two batches' worth of lanes: one transaction gathers while the other commits.
    pub fn min_lanes(&self) -> usize {
        self.cfg.batch_size * 2
    }

    pub(crate) fn activity(&self) -> Option<Arc<Activity>> {
        Some(self.batches.activity())
    }

    pub async fn apply(
        &self,
        event: &DomainEvent,
        _record: &mut EntityRecord,
        _idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        let Some(meta) = event.meta.as_ref() else {
            return Ok(Outcome::Ignored("no meta"));
        };
        let systems = self
            .cfg
            .entity_systems
            .get(&meta.entity)
            .unwrap_or(&self.cfg.systems);
        if !systems.contains(&meta.system_of_record) {
            // The ERP's own orders and returns come back this way: never written into its inbox.
            return Ok(Outcome::Ignored("other system of record"));
        }
        let Some(payload) = payload::of(event) else {
            return Ok(Outcome::Ignored("not an order, return, refund or shipment"));
        };
        self.batches
            .submit(inbox::Row {
                event_id: meta.event_id.clone(),
                event_type: format!("{}.{}", meta.entity, meta.event),
                entity_key: meta.entity_key.clone(),
                entity_version: i64::try_from(meta.entity_version).unwrap_or(i64::MAX),
                system: meta.system_of_record.clone(),
                payload: payload.to_string(),
            })
            .await?;
        Ok(Outcome::Applied)
    }
}

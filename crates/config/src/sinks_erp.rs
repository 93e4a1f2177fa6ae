//! `[sinks.erp]`: the ERP inbox sink's settings (docs/order-to-cash.md).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{ConnectionConfig, SinkDelivery};

/// `[sinks.erp]`: storefront orders and refunds written into the ERP's PostgreSQL database
/// through an inbox table, in transactions of several events, idempotent by event id; the
/// ERP's own processing (a trigger or job on the inbox) turns them into sales orders and
/// credit memos (docs/order-to-cash.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpSinkConfig {
    /// The ERP database (the keys of `[sources.connection]`); the role needs INSERT on the
    /// inbox table only.
    pub connection: ConnectionConfig,
    /// The inbox table, optionally schema-qualified. It must have the columns `event_id`
    /// (primary key or unique), `event_type`, `entity_key`, `entity_version`,
    /// `source_system` and `payload` (jsonb), and must not be in the publication of a
    /// source reading this database (checked at start): the bridge's own writes would come
    /// back as source events.
    #[serde(default = "default_inbox_table")]
    pub table: String,
    /// Events written, as `<entity>.<event>` (the sink's filter subjects).
    #[serde(default = "default_erp_events")]
    pub events: Vec<String>,
    /// Systems of record whose events are written (`meta.system_of_record`); events of
    /// other systems — the ERP's own orders among them — are skipped.
    #[serde(default = "default_erp_systems")]
    pub systems: Vec<String>,
    /// Systems of record per entity, for the entities listed here instead of `systems`:
    /// return requests from the CRM (Salesforce Cases) and receipts from the warehouse,
    /// shipments from the warehouse. The ERP's own records are never written back.
    #[serde(default = "default_erp_entity_systems")]
    pub entity_systems: BTreeMap<String, Vec<String>>,
    /// Events per inbox transaction (1 – 1000).
    #[serde(default = "default_erp_batch_size")]
    pub batch_size: usize,
    /// The longest an event waits for others to join its transaction (ms).
    #[serde(default = "default_erp_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// `[sinks.erp.delivery]`.
    #[serde(default)]
    pub delivery: SinkDelivery,
    /// `[sinks.erp.priority]`.
    #[serde(default)]
    pub priority: crate::SinkPriority,
}

fn default_inbox_table() -> String {
    "tributary_inbox".into()
}
fn default_erp_events() -> Vec<String> {
    [
        "order.placed",
        "order.status_changed",
        "refund.created",
        "return.requested",
        "return.received",
        "fulfillment.updated",
    ]
    .map(String::from)
    .to_vec()
}
fn default_erp_systems() -> Vec<String> {
    vec!["shopify".into()]
}
fn default_erp_entity_systems() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        ("fulfillment".to_string(), vec!["wms".to_string()]),
        (
            "return".to_string(),
            ["salesforce", "wms"].map(String::from).to_vec(),
        ),
    ])
}
fn default_erp_batch_size() -> usize {
    50
}
fn default_erp_batch_linger_ms() -> u64 {
    5
}

impl ErpSinkConfig {
    /// `(schema, table)` of `table` (schema `public` when not qualified).
    pub fn table_parts(&self) -> (String, String) {
        match self.table.split_once('.') {
            Some((schema, table)) => (schema.to_string(), table.to_string()),
            None => ("public".to_string(), self.table.clone()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        let ident = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        let (schema, table) = self.table_parts();
        if !ident(&schema) || !ident(&table) {
            return Err(crate::ConfigError::invalid(
                "sinks.erp.table",
                format!(
                    "{:?} is not a table name (`table` or `schema.table`, letters, digits and _)",
                    self.table
                ),
            ));
        }
        if self.events.is_empty() {
            return Err(crate::ConfigError::invalid("sinks.erp.events", "is empty"));
        }
        if let Some(bad) = self.events.iter().find(|e| {
            !e.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !b.contains('.') && !e.contains(['*', '>', ' '])
            })
        }) {
            return Err(crate::ConfigError::invalid(
                "sinks.erp.events",
                format!("{bad:?} is not `<entity>.<event>` (e.g. \"order.placed\")"),
            ));
        }
        if self.systems.is_empty() {
            return Err(crate::ConfigError::invalid("sinks.erp.systems", "is empty"));
        }
        if self.batch_size == 0 || self.batch_size > 1000 {
            return Err(crate::ConfigError::invalid(
                "sinks.erp.batch_size",
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}

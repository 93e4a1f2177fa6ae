//! `[reconcile.inventory]`: the periodic inventory reconciliation compares the ERP's stock
//! (the domain stage's entity state) with the WMS's and the storefront's, read through their
//! APIs, and reports (optionally repairs) the SKU-locations that disagree
//! (docs/order-to-cash.md, "Inventory drift"). Without this block none runs.
//!
//! ```toml
//! [reconcile.inventory]
//! interval_secs = 300          # one sweep every 5 minutes
//! requests_per_second = 2      # reads of each target API, at most
//! repair = false               # true: re-apply the ERP's level where a target drifted
//! ```

use serde::Deserialize;

use crate::ConfigError;

/// `[reconcile]`: reconciliations between the systems; one kind for now.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    #[serde(default)]
    pub inventory: Option<InventoryReconcileConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryReconcileConfig {
    /// Seconds between two sweeps (the first runs at start).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Requests per second to each target API at most, below their rate limits (the WMS
    /// limits per key; Shopify's cost bucket is also followed from its answers).
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second: u32,
    /// Page size of the target reads (WMS inventory pages, Shopify connections).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Re-apply the ERP's level through the sink of a target that drifted, with a reason
    /// the sink records. Off: detect and report only.
    #[serde(default)]
    pub repair: bool,
    /// Stream of the drift events; the tracker's by default (`o2c.v1.>`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subject prefix of the stream; drift events go to `<prefix>.inventory.drift`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// KV bucket holding the last sweep's result (what `tributary inventory drift` shows).
    #[serde(default = "default_state_bucket")]
    pub state_bucket: String,
}

fn default_interval_secs() -> u64 {
    300
}

fn default_requests_per_second() -> u32 {
    2
}

fn default_page_size() -> u32 {
    100
}

fn default_stream() -> String {
    "O2C".into()
}

fn default_subject_prefix() -> String {
    "o2c.v1".into()
}

fn default_state_bucket() -> String {
    "tributary_reconcile".into()
}

impl InventoryReconcileConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_positive(&[
            ("reconcile.inventory.interval_secs", self.interval_secs),
            (
                "reconcile.inventory.requests_per_second",
                u64::from(self.requests_per_second),
            ),
            ("reconcile.inventory.page_size", u64::from(self.page_size)),
        ])?;
        ConfigError::check_subject_prefix(
            "reconcile.inventory.subject_prefix",
            &self.subject_prefix,
        )
    }

    /// The subject of drift events.
    pub fn drift_subject(&self) -> String {
        format!("{}.inventory.drift", self.subject_prefix)
    }
}

#[cfg(test)]
mod tests {
    const BASE: &str = "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\n[tracker]\n[sinks.wms]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n";

    #[test]
    fn defaults_detect_only() {
        let config = crate::parse(&format!("{BASE}[reconcile.inventory]\n")).expect("valid");
        let r = config.reconcile.inventory.expect("inventory");
        assert!(!r.repair);
        assert_eq!(r.drift_subject(), "o2c.v1.inventory.drift");
        assert_eq!((r.interval_secs, r.requests_per_second), (300, 2));
        let none = crate::parse(BASE).expect("valid");
        assert!(none.reconcile.inventory.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (line, key) in [
            ("interval_secs = 0", "reconcile.inventory.interval_secs"),
            (
                "requests_per_second = 0",
                "reconcile.inventory.requests_per_second",
            ),
            (
                "subject_prefix = \"a.>\"",
                "reconcile.inventory.subject_prefix",
            ),
        ] {
            let err =
                crate::parse(&format!("{BASE}[reconcile.inventory]\n{line}\n")).expect_err(line);
            assert!(err.to_string().contains(key), "{line}: {err}");
        }
    }
}

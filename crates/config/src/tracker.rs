//! `[tracker]`: the order-to-cash process tracker follows every order and return through
//! its milestones from the domain events and publishes milestones and exceptions
//! (docs/order-to-cash.md). Without this block no tracker runs.
//!
//! ```toml
//! [tracker]
//! unallocated_after_secs = 1800    # placed, not confirmed: order.stuck
//! unshipped_after_secs = 86400     # confirmed, not shipped: order.stuck
//! refund_delayed_after_secs = 604800
//! ```

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// The stream of domain events the tracker follows; default: `domain.stream`, else `RETAIL`.
    #[serde(default)]
    pub domain_stream: Option<String>,
    /// Subject prefix of the domain events; default: `domain.subject_prefix`, else `retail.v1`.
    #[serde(default)]
    pub domain_prefix: Option<String>,
    /// The stream the tracker publishes milestones and exceptions on.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subject prefix of those events (`<prefix>.order.<milestone>`, `<prefix>.order.stuck`, …).
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The KV bucket holding one record per order and per return.
    #[serde(default = "default_state_bucket")]
    pub state_bucket: String,
    /// Name of the durable consumer on the domain stream.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// How often the sweep looks for orders and returns past a threshold.
    #[serde(default = "default_sweep_interval_secs")]
    pub sweep_interval_secs: u64,
    /// An order placed this long ago (business time) and neither confirmed nor cancelled is
    /// stuck unallocated (`order.stuck`, stage `unallocated`).
    #[serde(default = "default_unallocated_after_secs")]
    pub unallocated_after_secs: u64,
    /// An order confirmed this long ago and neither shipped nor cancelled is stuck unshipped
    /// (`order.stuck`, stage `unshipped`).
    #[serde(default = "default_unshipped_after_secs")]
    pub unshipped_after_secs: u64,
    /// A return requested this long ago and not refunded is `refund.delayed`.
    #[serde(default = "default_refund_delayed_after_secs")]
    pub refund_delayed_after_secs: u64,
}

fn default_stream() -> String {
    "O2C".into()
}

fn default_subject_prefix() -> String {
    "o2c.v1".into()
}

fn default_state_bucket() -> String {
    "tributary_tracker".into()
}

fn default_consumer() -> String {
    "tributary_tracker".into()
}

fn default_sweep_interval_secs() -> u64 {
    30
}

fn default_unallocated_after_secs() -> u64 {
    1800
}

fn default_unshipped_after_secs() -> u64 {
    86_400
}

fn default_refund_delayed_after_secs() -> u64 {
    7 * 86_400
}

impl TrackerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::check_positive(&[
            ("tracker.sweep_interval_secs", self.sweep_interval_secs),
            (
                "tracker.unallocated_after_secs",
                self.unallocated_after_secs,
            ),
            ("tracker.unshipped_after_secs", self.unshipped_after_secs),
            (
                "tracker.refund_delayed_after_secs",
                self.refund_delayed_after_secs,
            ),
        ])?;
        ConfigError::check_subject_prefix("tracker.subject_prefix", &self.subject_prefix)
    }

    /// The domain stream followed.
    pub fn resolved_domain_stream(&self, domain: Option<&crate::DomainConfig>) -> String {
        self.domain_stream
            .clone()
            .or_else(|| domain.map(|d| d.stream.clone()))
            .unwrap_or_else(|| "RETAIL".into())
    }

    /// The domain events' subject prefix.
    pub fn resolved_domain_prefix(&self, domain: Option<&crate::DomainConfig>) -> String {
        self.domain_prefix
            .clone()
            .or_else(|| domain.map(|d| d.subject_prefix.clone()))
            .unwrap_or_else(|| "retail.v1".into())
    }
}

#[cfg(test)]
mod tests {
    const BASE: &str = "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\n";

    #[test]
    fn a_tracker_alone_is_a_configuration_with_defaults() {
        let config = crate::parse(&format!("{BASE}[tracker]\n")).expect("valid");
        let t = config.tracker.expect("tracker");
        assert_eq!(
            (t.stream.as_str(), t.subject_prefix.as_str()),
            ("O2C", "o2c.v1")
        );
        assert_eq!(t.resolved_domain_stream(None), "RETAIL");
        assert_eq!(t.unallocated_after_secs, 1800);
    }

    #[test]
    fn bad_thresholds_name_their_key() {
        for (line, key) in [
            ("sweep_interval_secs = 0", "tracker.sweep_interval_secs"),
            ("unshipped_after_secs = 0", "tracker.unshipped_after_secs"),
            ("subject_prefix = \"o2c.>\"", "tracker.subject_prefix"),
        ] {
            let err = crate::parse(&format!("{BASE}[tracker]\n{line}\n")).expect_err(line);
            assert!(err.to_string().contains(key), "{line}: {err}");
        }
    }
}

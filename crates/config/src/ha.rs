//! `[ha]`: several replicas of the bridge share the work units through leases in a NATS KV
//! bucket (docs/ha.md). Without this block one process runs everything, as before.
//!
//! ```toml
//! [ha]
//! instance_id = "bridge-0"     # default: the host name (the pod's name in Kubernetes)
//! lease_ttl_ms = 10000         # failover after a crash: about this plus a poll
//! replicas = 3                 # of the lease bucket; default: the streams' replicas
//! ```

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// This replica's id, unique among the replicas; default: the host name.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The KV bucket of leases and heartbeats.
    #[serde(default = "default_lease_bucket")]
    pub lease_bucket: String,
    /// How long a lease lives without renewal. A holder renews every third of it and stops its
    /// units after four fifths without a successful renew; another replica takes over once it
    /// has expired on the server.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// Replicas of the lease bucket (1–5); default: `nats.streams.replicas` or 1.
    #[serde(default)]
    pub replicas: Option<usize>,
    /// How long a unit may drain when it is handed over or stopped before it is aborted.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

fn default_lease_bucket() -> String {
    "tributary_leases".into()
}

fn default_lease_ttl_ms() -> u64 {
    10_000
}

fn default_drain_timeout_ms() -> u64 {
    5_000
}

impl HaConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(3_000..=120_000).contains(&self.lease_ttl_ms) {
            return Err(ConfigError::invalid(
                "ha.lease_ttl_ms",
                format!(
                    "{} is outside 3000–120000 (renewals every third of it must fit)",
                    self.lease_ttl_ms
                ),
            ));
        }
        if let Some(id) = &self.instance_id {
            let ok = !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(ConfigError::invalid(
                    "ha.instance_id",
                    format!("{id:?} must be 1–128 letters, digits, '-', '_' or '.'"),
                ));
            }
        }
        let bucket_ok = !self.lease_bucket.is_empty()
            && self
                .lease_bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !bucket_ok {
            return Err(ConfigError::invalid(
                "ha.lease_bucket",
                format!(
                    "{:?} must be letters, digits, '_' or '-'",
                    self.lease_bucket
                ),
            ));
        }
        if let Some(r) = self.replicas {
            if !(1..=5).contains(&r) {
                return Err(ConfigError::invalid(
                    "ha.replicas",
                    format!("{r} is outside 1–5"),
                ));
            }
        }
        if self.drain_timeout_ms == 0 || self.drain_timeout_ms > 600_000 {
            return Err(ConfigError::invalid(
                "ha.drain_timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        Ok(())
    }
}

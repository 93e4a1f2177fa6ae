//! Replica heartbeats: `member.<instance>` keys in the lease bucket, written every TTL/3 and left
//! to expire (the bucket's `max_age`) when a replica dies.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lease::LeaseStore;
use crate::HaError;

const MEMBER_PREFIX: &str = "member.";

/// A replica's heartbeat record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberInfo {
    pub instance: String,
    /// When the replica started (Unix ms, its clock).
    pub started_at_ms: u64,
}

/// The default instance id: the host name (a pod's name in Kubernetes), else "tributary".
pub fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tributary".into())
}

impl LeaseStore {
    /// Writes this replica's heartbeat.
    pub(crate) async fn heartbeat(&self, started_at_ms: u64) -> Result<(), HaError> {
        let key = member_key(self.instance());
        let info = MemberInfo {
            instance: self.instance().to_string(),
            started_at_ms,
        };
        let value = serde_json::to_vec(&info).map_err(|source| HaError::Record {
            key: key.clone(),
            source,
        })?;
        self.kv()
            .put(&key, value.into())
            .await
            .map_err(|e| HaError::kv(&key, "heartbeat", e))?;
        Ok(())
    }

    /// Removes this replica's heartbeat (on a clean stop, so that others rebalance at once).
    pub(crate) async fn leave(&self) -> Result<(), HaError> {
        let key = member_key(self.instance());
        self.kv()
            .delete(&key)
            .await
            .map_err(|e| HaError::kv(&key, "leave", e))
    }

    /// The live replicas (heartbeat younger than the TTL), sorted by instance id.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, HaError> {
        let keys = self.keys_with_prefix(MEMBER_PREFIX).await?;
        let mut out = Vec::new();
        for key in &keys {
            let entry = self
                .kv()
                .entry(key.as_str())
                .await
                .map_err(|e| HaError::kv(key, "get", e))?;
            if let Some(e) = entry {
                if e.operation != async_nats::jetstream::kv::Operation::Put {
                    continue;
                }
                let info: MemberInfo =
                    serde_json::from_slice(&e.value).map_err(|source| HaError::Record {
                        key: key.clone(),
                        source,
                    })?;
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(out)
    }
}

fn member_key(instance: &str) -> String {
    format!("{MEMBER_PREFIX}{}", tributary_nats::kv::key_token(instance))
}

/// How often heartbeats and the ownership loop run for a TTL.
pub(crate) fn tick(ttl: Duration) -> Duration {
    (ttl / 3)
        .min(Duration::from_millis(500))
        .max(Duration::from_millis(100))
}

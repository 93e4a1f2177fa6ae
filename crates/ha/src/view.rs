//! A read-only view of the replica group for `tributary status`: members and lease holders,
//! read from the bucket without creating it.

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};

use crate::lease::LeaseInfo;
use crate::members::MemberInfo;
use crate::HaError;

/// Who is in the group and who owns what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupView {
    pub bucket: String,
    /// Live replicas (heartbeat younger than the TTL).
    pub members: Vec<MemberInfo>,
    /// Held leases: unit, holder, since (Unix ms), fencing token.
    pub leases: Vec<LeaseView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseView {
    pub unit: String,
    pub instance: String,
    pub acquired_at_ms: u64,
    pub revision: u64,
}

/// Reads the group; None when the bucket does not exist (no replica ever ran with `[ha]`).
pub async fn read_group(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<Option<GroupView>, HaError> {
    let Ok(kv) = js.get_key_value(bucket).await else {
        return Ok(None);
    };
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(|e| HaError::kv(bucket, "keys", e))?
        .try_collect()
        .await
        .map_err(|e| HaError::kv(bucket, "keys", e))?;
    let mut view = GroupView {
        bucket: bucket.to_string(),
        members: Vec::new(),
        leases: Vec::new(),
    };
    for key in keys {
        let Some(entry) = kv
            .entry(key.as_str())
            .await
            .map_err(|e| HaError::kv(&key, "get", e))?
        else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let record = |e: serde_json::Error| HaError::Record {
            key: key.clone(),
            source: e,
        };
        if key.starts_with("member.") {
            view.members
                .push(serde_json::from_slice::<MemberInfo>(&entry.value).map_err(record)?);
        } else if key.starts_with("unit.") {
            let info: LeaseInfo = serde_json::from_slice(&entry.value).map_err(record)?;
            view.leases.push(LeaseView {
                unit: info.unit,
                instance: info.instance,
                acquired_at_ms: info.acquired_at_ms,
                revision: entry.revision,
            });
        }
    }
    view.members.sort_by(|a, b| a.instance.cmp(&b.instance));
    view.leases.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok(Some(view))
}

//! The version guard: per sink and entity, the last entity version applied and the target's
//! bookkeeping for that entity (e.g. the WMS order id), in NATS KV.
//!
//! A sink is the only writer of its own keys and applies one entity's events in one lane,
//! so plain puts suffice. The record is written after the target confirmed the write and
//! before the message is acked: a crash in between re-applies the event with the same
//! idempotency key, which the target answers from its idempotency store.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use crate::SinkError;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EntityRecord {
    /// Last `entity_version` applied (0: none).
    pub version: u64,
    /// Stream sequence of that event.
    #[serde(default)]
    pub sequence: u64,
    /// Target-specific state of the entity.
    #[serde(default)]
    pub data: serde_json::Value,
    /// With `on_dead_letter = "hold"`: the id of the dead-lettered event the entity's later
    /// events wait behind, until it is redriven and applies (or is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

/// A replay in progress: events up to `until_sequence` are applied even when the version
/// guard has seen newer ones, so that replaying reproduces one clean application.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayWindow {
    pub until_sequence: u64,
}

#[derive(Clone)]
pub struct StateStore {
    kv: kv::Store,
}

pub use tributary_nats::kv::key_token;

impl StateStore {
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, SinkError> {
        let kv = tributary_nats::kv::open_bucket(
            js,
            bucket,
            "Tributary sinks: last entity version applied per sink",
            replicas,
        )
        .await
        .map_err(|e| SinkError::nats(format!("KV bucket {bucket}"), e))?;
        Ok(StateStore { kv })
    }

    fn entity_key(sink: &str, entity: &str, key: &str) -> String {
        format!("{sink}.{}.{}", key_token(entity), key_token(key))
    }

    pub async fn get(
        &self,
        sink: &str,
        entity: &str,
        key: &str,
    ) -> Result<EntityRecord, SinkError> {
        let k = Self::entity_key(sink, entity, key);
        match self.kv.get(&k).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| SinkError::nats(format!("KV {k}"), format!("corrupt record: {e}"))),
            Ok(None) => Ok(EntityRecord::default()),
            Err(e) => Err(SinkError::nats(format!("KV get {k}"), e)),
        }
    }

    pub async fn put(
        &self,
        sink: &str,
        entity: &str,
        key: &str,
        record: &EntityRecord,
    ) -> Result<(), SinkError> {
        let k = Self::entity_key(sink, entity, key);
        let bytes = serde_json::to_vec(record).map_err(|e| SinkError::nats(&k, e))?;
        self.kv
            .put(&k, bytes.into())
            .await
            .map_err(|e| SinkError::nats(format!("KV put {k}"), e))?;
        Ok(())
    }

    pub async fn replay_window(&self, sink: &str) -> Result<Option<ReplayWindow>, SinkError> {
        let k = format!("{sink}._replay");
        match self.kv.get(&k).await {
            Ok(Some(bytes)) => Ok(serde_json::from_slice(&bytes).ok()),
            Ok(None) => Ok(None),
            Err(e) => Err(SinkError::nats(format!("KV get {k}"), e)),
        }
    }

    pub async fn set_replay_window(
        &self,
        sink: &str,
        window: &ReplayWindow,
    ) -> Result<(), SinkError> {
        let k = format!("{sink}._replay");
        let bytes = serde_json::to_vec(window).map_err(|e| SinkError::nats(&k, e))?;
        self.kv
            .put(&k, bytes.into())
            .await
            .map_err(|e| SinkError::nats(format!("KV put {k}"), e))?;
        Ok(())
    }
}

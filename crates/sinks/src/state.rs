//! The version guard: per sink and entity, the last entity version applied and the target's
//! bookkeeping for that entity (e.g. the WMS order id), in NATS KV.
//!
//! A sink is the only writer of its own keys and applies one entity's events in one lane,
//! so plain puts suffice. The record is written after the target confirmed the write and
//! before the message is acked: a crash in between re-applies the event with the same
//! idempotency key, which the target answers from its idempotency store.
//!
//! Lanes write with [`StateStore::put_pipelined`]: the put is sent at once (so one key's puts
//! reach the server in the order the lane made them) and its ack is awaited later, before the
//! event's message is acked.

use async_nats::jetstream::{self, context::PublishAckFuture, kv};
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
    /// The reason of the repair (inventory reconciliation) that wrote this record; cleared
    /// by the entity's next normal event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repair: Option<String>,
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
    js: jetstream::Context,
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
            "sinks",
            replicas,
        )
        .await?;
        Ok(StateStore { kv, js: js.clone() })
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
                .map_err(|source| SinkError::CorruptState { key: k, source }),
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

    /// Sends the put and returns its ack, to be awaited before the event is acked. Puts of
    /// one key sent by one task reach the server in order (one connection), so the last one
    /// sent is the one stored.
    pub(crate) async fn put_pipelined(
        &self,
        sink: &str,
        entity: &str,
        key: &str,
        record: &EntityRecord,
    ) -> Result<PendingPut, SinkError> {
        let k = Self::entity_key(sink, entity, key);
        let bytes = serde_json::to_vec(record).map_err(|e| SinkError::nats(&k, e))?;
        if self.kv.use_jetstream_prefix {
            // A JetStream API prefix (another account or domain): the plain put knows it.
            self.kv
                .put(&k, bytes.into())
                .await
                .map_err(|e| SinkError::nats(format!("KV put {k}"), e))?;
            return Ok(PendingPut { ack: None, key: k });
        }
        let subject = format!(
            "{}{k}",
            self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix)
        );
        let ack = self
            .js
            .publish(subject, bytes.into())
            .await
            .map_err(|e| SinkError::nats(format!("KV put {k}"), e))?;
        Ok(PendingPut {
            ack: Some(ack),
            key: k,
        })
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

/// A put sent to the server whose ack has not been read yet.
pub(crate) struct PendingPut {
    ack: Option<PublishAckFuture>,
    key: String,
}

impl PendingPut {
    /// Waits until the server has stored the record.
    pub(crate) async fn stored(self) -> Result<(), SinkError> {
        if let Some(ack) = self.ack {
            ack.await
                .map_err(|e| SinkError::nats(format!("KV put {}", self.key), e))?;
        }
        Ok(())
    }
}

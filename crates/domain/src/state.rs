//! Durable state in NATS KV: per entity its version, the last source position applied per
//! mapping, the last event (to re-publish after a crash) and, for entities with ownership
//! rules, the merged entity; and the parent rows that child mappings read.
//!
//! Entity state is updated with compare-and-set on the KV revision, so that two sources
//! feeding one entity (ERP and POS customers) never hand out the same version twice.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::DomainError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntityState {
    pub version: u64,
    /// `<mapping>` -> (commit LSN, ordinal) of the last change applied.
    pub positions: BTreeMap<String, (u64, u32)>,
    /// Systems that have written this entity (an owner's fields are protected once it has).
    #[serde(default)]
    pub systems: std::collections::BTreeSet<String>,
    /// The merged entity message (ownership), encoded.
    #[serde(default)]
    pub merged: Option<Vec<u8>>,
    /// The last event published for this entity, re-sent as is after a crash.
    #[serde(default)]
    pub last: Option<LastEvent>,
    /// The domain stage writes an entity's state once per batch of changes: the events of
    /// that batch before `last`, in order, re-sent as is after a crash like `last`. An
    /// entity's state is written only after the events of its previous write were acked, so
    /// a redelivered change whose event is in neither `recent` nor `last` was published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<LastEvent>,
}

impl EntityState {
    /// The event `msg_id` recorded by the last write (`recent` or `last`), if any.
    pub fn sent(&self, msg_id: &str) -> Option<&LastEvent> {
        self.recent
            .iter()
            .chain(self.last.iter())
            .find(|l| l.msg_id == msg_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastEvent {
    pub msg_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
    /// Who wrote it: `domain:<source>` (a domain stage task) or `feed:<feed>` (an external
    /// feed); empty in states written before this field existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub writer: String,
}

impl EntityState {
    /// Sets the events of a write by `writer`: `events` become `recent` + `last`. The
    /// previous write's events stay in `recent` when another writer made them (it may not
    /// have published them yet; at most [`MAX_FOREIGN_EVENTS`]); a writer's own earlier
    /// events were acked before it writes again.
    pub fn record_events(&mut self, writer: &str, events: impl IntoIterator<Item = LastEvent>) {
        let mut recent: Vec<LastEvent> = std::mem::take(&mut self.recent)
            .into_iter()
            .chain(self.last.take())
            .filter(|e| e.writer != writer)
            .collect();
        if recent.len() > MAX_FOREIGN_EVENTS {
            recent.drain(..recent.len() - MAX_FOREIGN_EVENTS);
        }
        recent.extend(events);
        self.last = recent.pop();
        self.recent = recent;
    }
}

/// Other writers' events an entity's state keeps at most (see [`EntityState::record_events`]).
pub const MAX_FOREIGN_EVENTS: usize = 32;

pub struct StateStore {
    kv: kv::Store,
    bucket: String,
}

pub use tributary_nats::kv::key_token;

impl StateStore {
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<StateStore, DomainError> {
        let kv = tributary_nats::kv::open_bucket(
            js,
            bucket,
            "Tributary domain stage: entity versions, owned fields, parent rows",
            replicas,
        )
        .await
        .map_err(|e| DomainError::nats(format!("KV bucket {bucket}"), e))?;
        Ok(StateStore {
            kv,
            bucket: bucket.to_string(),
        })
    }

    pub fn entity_key(entity: &str, key: &str) -> String {
        format!("entity.{}.{}", key_token(entity), key_token(key))
    }

    pub fn row_key(source: &str, table: &str, columns: &[String], key: &[String]) -> String {
        format!(
            "row.{}.{}.{}.{}",
            key_token(source),
            key_token(table),
            key_token(&columns.join(",")),
            key_token(&key.join("\u{1f}"))
        )
    }

    /// The entity's state and its KV revision (0 when new).
    pub async fn load_entity(
        &self,
        entity: &str,
        key: &str,
    ) -> Result<(EntityState, u64), DomainError> {
        let k = Self::entity_key(entity, key);
        let entry = self
            .kv
            .entry(&k)
            .await
            .map_err(|e| DomainError::nats(format!("KV get {k}"), e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let state =
                    serde_json::from_slice(&e.value).map_err(|err| DomainError::CorruptState {
                        key: k,
                        message: err.to_string(),
                    })?;
                Ok((state, e.revision))
            }
            _ => Ok((EntityState::default(), 0)),
        }
    }

    /// Stores the state if the entity is still at `revision`: its new revision, or None
    /// when another writer came first (the caller reloads and recomputes).
    pub async fn save_entity(
        &self,
        entity: &str,
        key: &str,
        state: &EntityState,
        revision: u64,
    ) -> Result<Option<u64>, DomainError> {
        let k = Self::entity_key(entity, key);
        let bytes: Bytes = serde_json::to_vec(state)
            .map_err(|e| DomainError::CorruptState {
                key: k.clone(),
                message: e.to_string(),
            })?
            .into();
        let result = if revision == 0 {
            self.kv.create(&k, bytes).await.map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    crate::error::BoxError::from(e),
                )
            })
        } else {
            self.kv.update(&k, bytes, revision).await.map_err(|e| {
                (
                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                    crate::error::BoxError::from(e),
                )
            })
        };
        match result {
            Ok(revision) => Ok(Some(revision)),
            Err((true, _)) => Ok(None),
            Err((false, source)) => Err(DomainError::Nats {
                what: format!("KV {} {k}", self.bucket),
                source,
            }),
        }
    }

    /// Stores a parent row under its key (see [`StateStore::row_key`]).
    pub async fn put_row_at(&self, k: &str, change: Bytes) -> Result<(), DomainError> {
        self.kv
            .put(k, change)
            .await
            .map_err(|e| DomainError::nats(format!("KV put {k}"), e))?;
        Ok(())
    }

    pub async fn get_row_at(&self, k: &str) -> Result<Option<Bytes>, DomainError> {
        self.kv
            .get(k)
            .await
            .map_err(|e| DomainError::nats(format!("KV get {k}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, writer: &str) -> LastEvent {
        LastEvent {
            msg_id: id.into(),
            subject: "s".into(),
            payload: Vec::new(),
            writer: writer.into(),
        }
    }

    #[test]
    fn a_write_keeps_other_writers_events_and_drops_its_own_earlier_ones() {
        let mut state = EntityState::default();
        state.record_events("domain:erp", [ev("a", "domain:erp"), ev("b", "domain:erp")]);
        assert_eq!(state.recent.len(), 1);
        assert!(state.sent("a").is_some() && state.sent("b").is_some());
        // Another writer: the ERP's events may be unpublished yet, they stay.
        state.record_events("feed:shop", [ev("x", "feed:shop")]);
        assert!(state.sent("a").is_some() && state.sent("b").is_some());
        assert_eq!(state.last.as_ref().map(|l| l.msg_id.as_str()), Some("x"));
        // The ERP again: its own earlier events were acked before; the feed's stays.
        state.record_events("domain:erp", [ev("c", "domain:erp")]);
        assert!(state.sent("a").is_none() && state.sent("b").is_none());
        assert!(state.sent("x").is_some() && state.sent("c").is_some());
        // Old states (no writer recorded) count as another writer's, bounded.
        for i in 0..100 {
            state.record_events(&format!("feed:{i}"), [ev(&i.to_string(), "")]);
        }
        assert!(state.recent.len() <= MAX_FOREIGN_EVENTS);
        assert!(state.sent("99").is_some());
    }

    #[test]
    fn states_without_recent_or_writer_still_decode() {
        let old = br#"{"version":3,"positions":{"m":[1,0]},"last":{"msg_id":"e/m","subject":"s","payload":[1]}}"#;
        let state: EntityState = serde_json::from_slice(old).expect("an old state decodes");
        assert!(state.sent("e/m").is_some());
        assert!(state.recent.is_empty());
    }
}

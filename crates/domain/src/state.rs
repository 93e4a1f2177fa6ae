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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastEvent {
    pub msg_id: String,
    pub subject: String,
    pub payload: Vec<u8>,
}

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

    fn entity_key(entity: &str, key: &str) -> String {
        format!("entity.{}.{}", key_token(entity), key_token(key))
    }

    fn row_key(source: &str, table: &str, columns: &[String], key: &[String]) -> String {
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

    /// Stores the state if the entity is still at `revision`; false when another writer
    /// came first (the caller reloads and recomputes).
    pub async fn save_entity(
        &self,
        entity: &str,
        key: &str,
        state: &EntityState,
        revision: u64,
    ) -> Result<bool, DomainError> {
        let k = Self::entity_key(entity, key);
        let bytes: Bytes = serde_json::to_vec(state)
            .map_err(|e| DomainError::CorruptState {
                key: k.clone(),
                message: e.to_string(),
            })?
            .into();
        let result = if revision == 0 {
            self.kv.create(&k, bytes).await.map(|_| ()).map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    e.to_string(),
                )
            })
        } else {
            self.kv
                .update(&k, bytes, revision)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match result {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, message)) => Err(DomainError::Nats {
                what: format!("KV {} {k}", self.bucket),
                message,
            }),
        }
    }

    pub async fn put_row(
        &self,
        source: &str,
        table: &str,
        columns: &[String],
        key: &[String],
        change: Bytes,
    ) -> Result<(), DomainError> {
        let k = Self::row_key(source, table, columns, key);
        self.kv
            .put(&k, change)
            .await
            .map_err(|e| DomainError::nats(format!("KV put {k}"), e))?;
        Ok(())
    }

    pub async fn get_row(
        &self,
        source: &str,
        table: &str,
        columns: &[String],
        key: &[String],
    ) -> Result<Option<Bytes>, DomainError> {
        let k = Self::row_key(source, table, columns, key);
        self.kv
            .get(&k)
            .await
            .map_err(|e| DomainError::nats(format!("KV get {k}"), e))
    }
}

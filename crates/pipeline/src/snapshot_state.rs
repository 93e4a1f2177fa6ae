//! Durable snapshot progress in a NATS KV bucket: which chunks of which tables are published,
//! so that a restarted bridge resumes from the last finished chunk.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tributary_postgres::snapshot_catalog::ChunkRange;

pub const BUCKET: &str = "tributary_snapshots";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotState {
    /// The slot's consistent point: the commit LSN that `read` events carry.
    pub consistent_point: String,
    pub status: Status,
    /// Incremented by every run: part of `read` event ids, so that a chunk partly published
    /// before a crash is published again in full rather than rejected as duplicates.
    #[serde(default)]
    pub attempt: u32,
    pub tables: BTreeMap<String, TableProgress>,
}

impl SnapshotState {
    pub fn new(consistent_point: tributary_core::Lsn) -> Self {
        SnapshotState {
            consistent_point: consistent_point.to_string(),
            status: Status::InProgress,
            attempt: 0,
            tables: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TableProgress {
    pub chunks: Vec<ChunkSpec>,
    pub done: BTreeSet<usize>,
    pub rows: u64,
    pub estimated_rows: u64,
    /// Why the table could not be copied; the other tables and the stream go on.
    pub failed: Option<String>,
}

impl TableProgress {
    pub fn finished(&self) -> bool {
        self.failed.is_some() || self.done.len() == self.chunks.len()
    }
}

/// A chunk's bounds, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChunkSpec {
    Key { from: i64, to: Option<i64> },
    Pages { from: u64, to: Option<u64> },
    All,
}

impl From<&ChunkRange> for ChunkSpec {
    fn from(r: &ChunkRange) -> Self {
        match *r {
            ChunkRange::Key { from, to } => ChunkSpec::Key { from, to },
            ChunkRange::Pages { from, to } => ChunkSpec::Pages { from, to },
            ChunkRange::All => ChunkSpec::All,
        }
    }
}

impl From<&ChunkSpec> for ChunkRange {
    fn from(c: &ChunkSpec) -> Self {
        match *c {
            ChunkSpec::Key { from, to } => ChunkRange::Key { from, to },
            ChunkSpec::Pages { from, to } => ChunkRange::Pages { from, to },
            ChunkSpec::All => ChunkRange::All,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The bucket did not answer (NATS restarting, a leader election): retried.
    #[error("snapshot state bucket {BUCKET}: {0}")]
    Kv(#[source] BoxError),
    #[error("snapshot state of {source_name} is unreadable: {error}")]
    Corrupt {
        source_name: String,
        #[source]
        error: serde_json::Error,
    },
}

impl tributary_core::Classify for StateError {
    fn class(&self) -> tributary_core::ErrorClass {
        match self {
            StateError::Kv(_) => tributary_core::ErrorClass::TRANSIENT,
            StateError::Corrupt { .. } => tributary_core::ErrorClass::CORRUPT_STATE,
        }
    }
}

fn kv_err(e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Kv(Box::new(e))
}

pub struct StateStore {
    kv: kv::Store,
    key: String,
}

impl StateStore {
    pub async fn open(
        js: &jetstream::Context,
        source: &str,
        replicas: usize,
    ) -> Result<StateStore, StateError> {
        let kv = tributary_nats::kv::open_bucket(
            js,
            BUCKET,
            "Tributary snapshot progress per source",
            "snapshot",
            replicas,
        )
        .await
        .map_err(kv_err)?;
        Ok(StateStore {
            kv,
            key: source.replace(['.', '*', '>', ' '], "_"),
        })
    }

    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }

    pub async fn load(&self) -> Result<Option<SnapshotState>, StateError> {
        let Some(bytes) = self.kv.get(&self.key).await.map_err(kv_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                source_name: self.key.clone(),
                error: e,
            })
    }

    pub async fn save(&self, state: &SnapshotState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(state).map_err(kv_err)?;
        self.kv.put(&self.key, bytes.into()).await.map_err(kv_err)?;
        Ok(())
    }
}

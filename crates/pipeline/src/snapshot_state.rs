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
    /// When the current run started (Unix ms) and how many rows were copied before it: the
    /// run's rate, for `status` (0 in records written by older versions).
    #[serde(default)]
    pub run_started_ms: u64,
    #[serde(default)]
    pub rows_at_run_start: u64,
}

/// A snapshot's pace while it runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SnapshotPace {
    pub rows_per_sec: f64,
    /// Seconds until the estimated rows are copied (None when the estimate is reached).
    pub eta_secs: Option<u64>,
}

impl SnapshotState {
    pub fn new(consistent_point: tributary_core::Lsn) -> Self {
        SnapshotState {
            consistent_point: consistent_point.to_string(),
            status: Status::InProgress,
            attempt: 0,
            tables: BTreeMap::new(),
            run_started_ms: 0,
            rows_at_run_start: 0,
        }
    }

    /// Rows copied so far over every table.
    pub fn rows(&self) -> u64 {
        self.tables.values().map(|t| t.rows).sum()
    }

    /// The current run's rate and the time left by the tables' estimates; None when done,
    /// not started by this version, or too young to tell (under a second).
    pub fn pace(&self, now_ms: u64) -> Option<SnapshotPace> {
        if self.status != Status::InProgress || self.run_started_ms == 0 {
            return None;
        }
        let secs = now_ms.saturating_sub(self.run_started_ms) as f64 / 1000.0;
        if secs < 1.0 {
            return None;
        }
        let rows = self.rows();
        let rows_per_sec = rows.saturating_sub(self.rows_at_run_start) as f64 / secs;
        let remaining: u64 = self
            .tables
            .values()
            .filter(|t| !t.finished())
            .map(|t| t.estimated_rows.saturating_sub(t.rows))
            .sum();
        let eta_secs = (remaining > 0 && rows_per_sec > 0.0)
            .then(|| (remaining as f64 / rows_per_sec).ceil() as u64);
        Some(SnapshotPace {
            rows_per_sec,
            eta_secs,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rows: u64, estimated: u64, started_ms: u64, before: u64) -> SnapshotState {
        let mut s = SnapshotState::new(tributary_core::Lsn(0x100));
        s.tables.insert(
            "public.orders".into(),
            TableProgress {
                chunks: vec![ChunkSpec::All],
                rows,
                estimated_rows: estimated,
                ..TableProgress::default()
            },
        );
        s.run_started_ms = started_ms;
        s.rows_at_run_start = before;
        s
    }

    #[test]
    fn pace_counts_this_runs_rows_and_the_estimate_left() {
        // 600 rows, 100 of them before this run started 10 s ago: 50 rows/s, 400 left.
        let pace = state(600, 1000, 90_000, 100)
            .pace(100_000)
            .expect("running");
        assert_eq!(pace.rows_per_sec, 50.0);
        assert_eq!(pace.eta_secs, Some(8));
    }

    #[test]
    fn no_pace_when_done_unknown_or_too_young() {
        let mut done = state(1000, 1000, 90_000, 0);
        done.status = Status::Done;
        assert_eq!(done.pace(100_000), None);
        assert_eq!(state(10, 1000, 0, 0).pace(100_000), None, "older record");
        assert_eq!(
            state(10, 1000, 99_500, 0).pace(100_000),
            None,
            "under a second"
        );
        let past = state(1200, 1000, 90_000, 0).pace(100_000).expect("running");
        assert_eq!(past.eta_secs, None, "estimate reached");
    }
}

//! The result of one sweep, stored in KV (`tributary inventory drift` shows the last one).

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use crate::ReconcileError;

/// The key of the last sweep's report in the bucket.
const LAST: &str = "inventory.last";

/// What one sweep found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Start of the sweep, microseconds since the Unix epoch; also its id in event ids.
    pub started_micros: i64,
    pub finished_micros: i64,
    /// Whether repairs were sent.
    pub repair: bool,
    /// ERP SKU-locations held by at least one target.
    pub pairs: u64,
    /// Of those, compared in every target holding them (none in flight).
    pub compared: u64,
    /// Of those compared, the ones that agree everywhere.
    pub agreeing: u64,
    /// `agreeing / compared`, 1 when nothing was compared.
    pub accuracy_ratio: f64,
    pub targets: BTreeMap<String, TargetCounts>,
    /// Every drifting SKU-location and target, by entity key then target.
    pub drifts: Vec<Drift>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetCounts {
    pub checked: u64,
    pub drifting: u64,
    pub in_flight: u64,
    /// Sum of |target - ERP| over the drifting ones.
    pub units: u64,
}

/// One SKU-location whose level at one target differs from the ERP's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Drift {
    pub sku: String,
    pub location: String,
    /// The domain entity key (`<sku>:<location>`).
    pub entity_key: String,
    pub target: String,
    /// The ERP's level (what the target should show, in the target's quantity).
    pub erp: i64,
    /// What the target showed.
    pub found: i64,
    /// The domain entity version both the ERP state and the sink's record were at.
    pub version: u64,
    /// A repair event was published for it.
    pub repair_sent: bool,
}

pub struct ReportStore {
    kv: kv::Store,
}

impl ReportStore {
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<ReportStore, ReconcileError> {
        let kv = tributary_nats::kv::open_bucket(
            js,
            bucket,
            "Tributary inventory reconciliation: the last sweep's result",
            "reconcile",
            replicas,
        )
        .await?;
        Ok(ReportStore { kv })
    }

    /// The store if the bucket exists (the operator commands do not create it).
    pub async fn existing(
        js: &jetstream::Context,
        bucket: &str,
    ) -> Result<Option<ReportStore>, ReconcileError> {
        match js.get_key_value(bucket).await {
            Ok(kv) => Ok(Some(ReportStore { kv })),
            Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => Ok(None),
            Err(e) => Err(ReconcileError::nats(format!("KV bucket {bucket}"), e)),
        }
    }

    pub async fn save(&self, report: &Report) -> Result<(), ReconcileError> {
        let bytes = serde_json::to_vec(report).map_err(|e| ReconcileError::CorruptState {
            key: LAST.into(),
            message: e.to_string(),
        })?;
        self.kv
            .put(LAST, bytes.into())
            .await
            .map_err(|e| ReconcileError::nats(format!("KV put {LAST}"), e))?;
        Ok(())
    }

    pub async fn last(&self) -> Result<Option<Report>, ReconcileError> {
        let bytes = self
            .kv
            .get(LAST)
            .await
            .map_err(|e| ReconcileError::nats(format!("KV get {LAST}"), e))?;
        bytes
            .map(|b| {
                serde_json::from_slice(&b).map_err(|e| ReconcileError::CorruptState {
                    key: LAST.into(),
                    message: e.to_string(),
                })
            })
            .transpose()
    }
}

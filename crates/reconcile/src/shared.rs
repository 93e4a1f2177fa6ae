//! What a sweep needs, built once by [`crate::Reconciler::prepare`].

use tributary_config::InventoryReconcileConfig;
use tributary_sinks::{StateStore, StockReader};

use crate::publish::Publisher;
use crate::report::ReportStore;

pub struct Shared {
    pub cfg: InventoryReconcileConfig,
    pub js: async_nats::jetstream::Context,
    /// The domain stage's entity state bucket (the ERP's levels).
    pub domain_bucket: String,
    /// The targets' stock, read through the sinks' endpoints.
    pub reader: StockReader,
    /// The sinks' records (the versions each has applied).
    pub sinks: StateStore,
    pub publisher: Publisher,
    pub reports: ReportStore,
}

/// Wall-clock microseconds since the Unix epoch (a sweep's id and times, never a version).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

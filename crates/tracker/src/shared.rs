//! What the tracker's consumer and its sweep share.

use std::time::Duration;

use tributary_config::TrackerConfig;

use crate::publish::Publisher;
use crate::store::Store;

pub struct Shared {
    pub cfg: TrackerConfig,
    pub js: async_nats::jetstream::Context,
    pub store: Store,
    pub publisher: Publisher,
    /// The domain stream followed and its subject prefix.
    pub domain_stream: String,
    pub domain_prefix: String,
}

impl Shared {
    pub fn threshold(&self, waiting: crate::process::Waiting) -> Duration {
        use crate::process::Waiting;
        Duration::from_secs(match waiting {
            Waiting::Unallocated => self.cfg.unallocated_after_secs,
            Waiting::Unshipped => self.cfg.unshipped_after_secs,
            Waiting::Refund => self.cfg.refund_delayed_after_secs,
        })
    }
}

/// Wall-clock microseconds since the Unix epoch (the sweep's "now").
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

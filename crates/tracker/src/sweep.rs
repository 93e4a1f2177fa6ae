//! The periodic sweep: every record is looked at; a process waiting past its threshold
//! counts in the gauges, and raises its exception once (published, then noted in the record
//! with compare-and-set; a crash in between re-publishes the same `Nats-Msg-Id`).

use tracing::info;
use tributary_core::Fence;

use crate::metrics as m;
use crate::process::Waiting;
use crate::shared::{now_micros, Shared};
use crate::TrackerError;

/// What one sweep counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub unallocated: u64,
    pub unshipped: u64,
    pub refunds_delayed: u64,
    /// Processes past a threshold whose exception is published.
    pub open_exceptions: u64,
    pub published: u64,
}

pub async fn sweep(shared: &Shared, fence: &Fence) -> Result<Counts, TrackerError> {
    let now = now_micros();
    let mut counts = Counts::default();
    for k in shared.store.keys().await? {
        let Some((mut process, revision)) = shared.store.load_at(&k).await? else {
            continue;
        };
        let Some((waiting, since)) = process.waiting() else {
            continue;
        };
        let threshold = shared.threshold(waiting);
        if now - since < threshold.as_micros() as i64 {
            continue;
        }
        match waiting {
            Waiting::Unallocated => counts.unallocated += 1,
            Waiting::Unshipped => counts.unshipped += 1,
            Waiting::Refund => counts.refunds_delayed += 1,
        }
        let flag = waiting.as_str().to_string();
        if process.exceptions.contains_key(&flag) {
            counts.open_exceptions += 1;
            continue;
        }
        fence.check()?;
        shared
            .publisher
            .exception(&process, waiting, since, threshold.as_secs(), now)
            .await?;
        process.exceptions.insert(flag, now);
        fence.check()?;
        // Lost to an event that changed the record meanwhile: the next sweep looks again
        // (and publishes the same message id, dropped as a duplicate within the window).
        if shared.store.save(&process, revision).await?.is_some() {
            counts.open_exceptions += 1;
            counts.published += 1;
            let kind = match waiting {
                Waiting::Refund => m::KIND_REFUND_DELAYED,
                _ => m::KIND_ORDER_STUCK,
            };
            metrics::counter!(m::EXCEPTIONS, "kind" => kind).increment(1);
            info!(process = process.kind.as_str(), key = %process.key, waiting = waiting.as_str(), "exception published");
        } else {
            metrics::counter!(m::STATE_CONFLICTS).increment(1);
        }
    }
    metrics::gauge!(m::ORDERS_UNALLOCATED).set(counts.unallocated as f64);
    metrics::gauge!(m::ORDERS_UNSHIPPED).set(counts.unshipped as f64);
    metrics::gauge!(m::REFUNDS_DELAYED).set(counts.refunds_delayed as f64);
    metrics::gauge!(m::EXCEPTION_QUEUE).set(counts.open_exceptions as f64);
    metrics::counter!(m::SWEEPS).increment(1);
    Ok(counts)
}

//! Fencing: what a work unit asks before every side effect, so that a replica that lost its
//! lease (a crash of the lease renewal, a pause, a partition) stops acting before another
//! replica can have taken the unit over.
//!
//! A [`Fence`] is valid until a deadline on the local monotonic clock (which keeps counting
//! while a process is stopped, so a replica woken after `SIGSTOP` finds its fence expired) and
//! carries a fencing token (the lease's KV revision). Single-process mode uses
//! [`Fence::always`]. A check passes or refuses in two atomic loads and a clock read; the
//! stream's expected-last-sequence, the slot's single reader and the targets' idempotency keys
//! cover the instant between a passed check and the side effect.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::{Classify, ErrorClass};

/// Side effects refused by a fence, by `unit`.
pub const FENCED: &str = "tributary_ha_fenced_total";

/// Refusal of a side effect by a fence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unit {unit}: lease no longer held (token {token}); side effect refused")]
pub struct Fenced {
    pub unit: String,
    pub token: u64,
}

/// What a unit asks before every side effect (publish, acknowledge, confirm, apply).
/// Cheap to clone and to check: two atomics and a clock read.
#[derive(Clone)]
pub struct Fence {
    inner: Arc<FenceInner>,
}

struct FenceInner {
    unit: String,
    base: Instant,
    token: AtomicU64,
    /// Nanoseconds after `base` until which the lease may be acted on.
    valid_until_ns: AtomicU64,
    lost: AtomicBool,
    lost_token: CancellationToken,
}

impl Fence {
    /// A fence for `unit` at fencing token `token`, valid until `valid_until`. Only the lease
    /// holder (crates/ha) creates, extends and revokes fences.
    pub fn new(unit: &str, token: u64, valid_until: Instant) -> Fence {
        let base = Instant::now();
        let fence = Fence {
            inner: Arc::new(FenceInner {
                unit: unit.to_string(),
                base,
                token: AtomicU64::new(token),
                valid_until_ns: AtomicU64::new(0),
                lost: AtomicBool::new(false),
                lost_token: CancellationToken::new(),
            }),
        };
        fence.store_valid_until(valid_until);
        fence
    }

    /// A fence that never expires: single-process mode, where no lease exists.
    pub fn always() -> Fence {
        let fence = Fence::new("", 0, Instant::now());
        fence
            .inner
            .valid_until_ns
            .store(u64::MAX, Ordering::Release);
        fence
    }

    /// Ok(token) while the lease may be acted on; Err once it is lost or has run out.
    pub fn check(&self) -> Result<u64, Fenced> {
        let now = Instant::now().saturating_duration_since(self.inner.base);
        let valid = !self.inner.lost.load(Ordering::Acquire)
            && (now.as_nanos() as u64) < self.inner.valid_until_ns.load(Ordering::Acquire);
        if valid {
            Ok(self.token())
        } else {
            metrics::counter!(FENCED, "unit" => self.inner.unit.clone()).increment(1);
            Err(Fenced {
                unit: self.inner.unit.clone(),
                token: self.token(),
            })
        }
    }

    /// The fencing token: the KV revision of the holder's last write.
    pub fn token(&self) -> u64 {
        self.inner.token.load(Ordering::Acquire)
    }

    /// Whether the lease is known lost (taken over, released or run out in `hold`).
    pub fn is_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Acquire)
    }

    /// Cancelled when the lease is lost: select on it to stop at once.
    pub fn lost(&self) -> CancellationToken {
        self.inner.lost_token.clone()
    }

    /// Until when the lease may be acted on (by the local monotonic clock).
    pub fn valid_until(&self) -> Instant {
        self.inner.base + Duration::from_nanos(self.inner.valid_until_ns.load(Ordering::Acquire))
    }

    fn store_valid_until(&self, until: Instant) {
        let ns = until.saturating_duration_since(self.inner.base).as_nanos() as u64;
        self.inner.valid_until_ns.store(ns, Ordering::Release);
    }

    /// A successful renew: the new token, valid until `until`.
    pub fn extend(&self, token: u64, until: Instant) {
        self.inner.token.store(token, Ordering::Release);
        self.store_valid_until(until);
    }

    /// The lease is gone (taken over, released, run out): every later check refuses.
    pub fn mark_lost(&self) {
        self.inner.lost.store(true, Ordering::Release);
        self.inner.lost_token.cancel();
    }
}

impl Classify for Fenced {
    /// Transient: the unit stops here; the replica that holds the lease now does the work.
    fn class(&self) -> ErrorClass {
        ErrorClass::TRANSIENT
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("unit", &self.inner.unit)
            .field("token", &self.token())
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// The fence a long-lived component uses for its next run: [`Fence::always`] until the
/// runtime hands it a lease's fence (HA mode), read once at the start of each run.
#[derive(Clone, Debug)]
pub struct FenceCell(Arc<std::sync::Mutex<Fence>>);

impl Default for FenceCell {
    fn default() -> Self {
        FenceCell(Arc::new(std::sync::Mutex::new(Fence::always())))
    }
}

impl FenceCell {
    /// The fence for the run about to start.
    pub fn get(&self) -> Fence {
        match self.0.lock() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Hands over a new lease's fence (before the unit's first run under it).
    pub fn set(&self, fence: Fence) {
        match self.0.lock() {
            Ok(mut f) => *f = fence,
            Err(poisoned) => *poisoned.into_inner() = fence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_passes_and_a_lost_fence_refuses() {
        assert!(Fence::always().check().is_ok());
        let f = Fence::new("u", 7, Instant::now() + Duration::from_secs(60));
        assert_eq!(f.check().ok(), Some(7));
        f.extend(9, Instant::now() + Duration::from_secs(60));
        assert_eq!(f.check().ok(), Some(9));
        f.mark_lost();
        assert!(f.check().is_err());
        assert!(f.lost().is_cancelled());
    }

    #[test]
    fn an_expired_fence_refuses_without_anyone_telling_it() {
        let f = Fence::new("u", 1, Instant::now() + Duration::from_millis(20));
        assert!(f.check().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(f.check().map_err(|e| e.token), Err(1));
    }
}

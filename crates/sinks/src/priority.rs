//! Degrade, don't stall: a sink's high class keeps its latency while the target throttles or
//! slows, and its low class waits.
//!
//! ```text
//!  RETAIL ─► consumer tributary-sink-<sink>      (high class: orders, fulfilments, stock …)
//!         │    lanes apply at once; throttles and slow applies ──► Pressure ──┐
//!         └► consumer tributary-sink-<sink>-low  (low class: customers, prices …)    │
//!              lanes ask Pressure before each event ◄───────────────────────────────┘
//!              while it says wait: hold the events (their queues drained, the dispatcher
//!              never blocks), send them ack progress, apply nothing
//!  Shopify:    a low-class request needs its cost plus `reserve` × the bucket to be available
//!              (it fails as throttled otherwise, without a request), so the refill goes to
//!              the high class first.
//! ```
//!
//! Two consumers rather than one with in-memory scheduling: a low backlog held unacked counts
//! against one consumer's `max_ack_pending`, and once it fills that the server would deliver
//! no high-class event either. Per-entity order holds because an entity's events all have one
//! class (the class is a function of the entity), so they are in one consumer and one lane.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, AckKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tributary_config::{PriorityClass, SinkPriority};

/// How often held low-class messages get an ack-progress (well inside `ACK_WAIT`).
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Where the requests of the event a lane applies stand in the target's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    High,
    /// A low-class event none of whose requests has passed the reserve yet: it gives up at
    /// once when the budget is short (nothing of it spent yet).
    Low,
    /// A low-class event whose first request passed: its later ones (a customer update after
    /// its lookup) wait for the budget above the reserve instead, so that what it already
    /// spent is not spent again on the next attempt.
    LowAdmitted,
}

tokio::task_local! {
    static CLASS: Cell<Admission>;
}

/// Runs a lane's apply with its class in scope, for a target that budgets requests by class.
pub(crate) async fn with_class<F: std::future::Future>(
    class: PriorityClass,
    apply: F,
) -> F::Output {
    let admission = match class {
        PriorityClass::High => Admission::High,
        PriorityClass::Low => Admission::Low,
    };
    CLASS.scope(Cell::new(admission), apply).await
}

/// The admission of the event this task applies; a batched request (the Shopify inventory
/// documents, sent from the batcher's own task) counts as high.
pub(crate) fn admission() -> Admission {
    CLASS.try_with(Cell::get).unwrap_or(Admission::High)
}

/// A low-class event's request passed the reserve: its later requests wait.
pub(crate) fn admitted() {
    let _ = CLASS.try_with(|c| {
        if c.get() == Admission::Low {
            c.set(Admission::LowAdmitted);
        }
    });
}

/// What the target has been doing, shared by both classes' consumers of one sink.
pub(crate) struct Pressure {
    enabled: bool,
    hold: Duration,
    latency_bound: Option<Duration>,
    /// The low class waits until then.
    until: Mutex<Option<Instant>>,
}

impl Pressure {
    pub(crate) fn new(cfg: Option<&SinkPriority>) -> Self {
        let cfg = cfg.cloned().unwrap_or_default();
        Pressure {
            enabled: cfg.enabled,
            hold: Duration::from_millis(cfg.throttle_hold_ms),
            latency_bound: (cfg.latency_bound_ms > 0)
                .then(|| Duration::from_millis(cfg.latency_bound_ms)),
            until: Mutex::new(None),
        }
    }

    fn extend(&self, by: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let new = Instant::now() + by;
        if until.is_none_or(|u| u < new) {
            *until = Some(new);
        }
    }

    /// The target throttled (any class): the low class waits the hold, or the target's hint
    /// if longer.
    pub(crate) fn throttled(&self, retry_after: Option<Duration>) {
        if self.enabled {
            self.extend(retry_after.unwrap_or_default().max(self.hold));
        }
    }

    /// A high-class event took `took` to apply (its attempt, pacing waits included).
    pub(crate) fn high_applied(&self, took: Duration) {
        if self.enabled && self.latency_bound.is_some_and(|b| took > b) {
            self.extend(self.hold);
        }
    }

    /// How long the low class should still wait (None: go).
    pub(crate) fn low_wait(&self) -> Option<Duration> {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until
            .map(|u| u.saturating_duration_since(Instant::now()))
            .filter(|w| !w.is_zero())
    }
}

/// Holds a low-class lane while the target is under pressure: what the dispatcher queues for
/// the lane meanwhile moves into `held` (in order, so the dispatcher never blocks on this
/// lane), and every held message, `current` first, gets an ack-progress every
/// [`PROGRESS_EVERY`] so that none expires into a redelivery. False when the stop came.
pub(crate) async fn wait_turn<T>(
    pressure: &Pressure,
    current: &T,
    rx: &mut mpsc::Receiver<T>,
    held: &mut VecDeque<T>,
    progressed: &mut Instant,
    msg: impl Fn(&T) -> &jetstream::Message,
    stop: &CancellationToken,
) -> bool {
    let mut deferred = false;
    while let Some(wait) = pressure.low_wait() {
        deferred = true;
        if progressed.elapsed() >= PROGRESS_EVERY {
            for m in std::iter::once(current).chain(held.iter()) {
                // A failed progress costs at most a redelivery, which the version guard skips.
                let _ = msg(m).ack_with(AckKind::Progress).await;
            }
            *progressed = Instant::now();
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            Some(more) = rx.recv() => held.push_back(more),
            _ = tokio::time::sleep(wait.min(PROGRESS_EVERY)) => {}
        }
    }
    if deferred {
        *progressed = Instant::now();
    }
    true
}

/// The events a consumer session has received and not handled yet, by stream sequence,
/// with the time each was stored: the oldest one's age is the class's lag.
#[derive(Default)]
pub(crate) struct Outstanding {
    stored: Mutex<BTreeMap<u64, i64>>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Outstanding {
    pub(crate) fn received(&self, sequence: u64, stored_micros: i64) {
        self.lock().insert(sequence, stored_micros);
    }

    pub(crate) fn handled(&self, sequence: u64) {
        self.lock().remove(&sequence);
    }

    /// Seconds since the oldest unhandled event was stored (0 with none).
    pub(crate) fn lag_seconds(&self) -> f64 {
        // Stream times grow with the sequence: the first entry is the oldest.
        let oldest = self.lock().first_key_value().map(|(_, t)| *t);
        oldest.map_or(0.0, |t| (now_micros() - t).max(0) as f64 / 1e6)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, i64>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttles_and_slow_high_applies_hold_the_low_class() {
        let short = SinkPriority {
            throttle_hold_ms: 20,
            latency_bound_ms: 100,
            ..Default::default()
        };
        let p = Pressure::new(Some(&short));
        assert_eq!(p.low_wait(), None);
        p.throttled(None);
        assert!(p.low_wait().is_some_and(|w| w <= Duration::from_millis(20)));
        p.throttled(Some(Duration::from_secs(5)));
        assert!(
            p.low_wait().is_some_and(|w| w > Duration::from_secs(4)),
            "the hint wins"
        );
        let p = Pressure::new(Some(&short));
        p.high_applied(Duration::from_millis(50));
        assert_eq!(p.low_wait(), None, "fast enough");
        p.high_applied(Duration::from_millis(150));
        assert!(p.low_wait().is_some());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(p.low_wait(), None, "the hold ends");
        let off = Pressure::new(Some(&SinkPriority {
            enabled: false,
            ..Default::default()
        }));
        off.throttled(None);
        assert_eq!(off.low_wait(), None);
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_unhandled_event() {
        let o = Outstanding::default();
        assert_eq!(o.lag_seconds(), 0.0);
        o.received(7, now_micros() - 3_000_000);
        o.received(9, now_micros() - 1_000_000);
        assert!((2.9..4.0).contains(&o.lag_seconds()), "{}", o.lag_seconds());
        o.handled(7);
        assert!(o.lag_seconds() < 2.0);
        o.handled(9);
        assert_eq!(o.lag_seconds(), 0.0);
    }

    #[tokio::test]
    async fn the_class_is_scoped_to_the_apply() {
        assert_eq!(admission(), Admission::High);
        let inside = with_class(PriorityClass::Low, async {
            let first = admission();
            admitted();
            (first, admission())
        })
        .await;
        assert_eq!(inside, (Admission::Low, Admission::LowAdmitted));
        assert_eq!(
            with_class(PriorityClass::High, async {
                admitted();
                admission()
            })
            .await,
            Admission::High
        );
    }
}

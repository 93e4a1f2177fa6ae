//! Fault injection shared by the emulators: the next N requests fail, or a share of all requests.
//!
//! Faults are applied by the request middleware before the emulator's handler runs (except
//! [`Fault::TimeoutAfterApply`], which lets the handler apply the write and then withholds the
//! answer), so a faulted request never changes state unless the fault says so.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// One injected failure. How it looks on the wire depends on the emulator (its error body format).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status (500, 502, 503, 504) without touching state.
    ServerError(u16),
    /// Hold the request this long, then answer 504 without touching state: a client with a
    /// shorter timeout sees a timeout.
    Timeout(Duration),
    /// Apply the request, then hold the answer this long before sending it: the write happened
    /// but a client with a shorter timeout never learns it (the case idempotency keys exist for).
    TimeoutAfterApply(Duration),
    /// Refuse as the service does under its rate limit: Shopify `THROTTLED`, Salesforce 403
    /// `REQUEST_LIMIT_EXCEEDED`, WMS 429 with `Retry-After`.
    RateLimited,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Fault>,
    random: Vec<(Fault, f64)>,
    injected: u64,
}

/// The fault plan of one emulator. Cheap to share; all methods take `&self`.
#[derive(Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    /// The next `n` requests fail with `fault` (queued after faults already pending).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut inner = self.lock();
        inner.queue.extend(std::iter::repeat_n(fault, n));
    }

    /// Every request fails with `fault` with this probability (0.0 – 1.0), after the queue is
    /// empty. Several random faults are tried in the order they were added.
    pub fn fail_randomly(&self, fault: Fault, probability: f64) {
        self.lock()
            .random
            .push((fault, probability.clamp(0.0, 1.0)));
    }

    /// Removes every pending and random fault.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.queue.clear();
        inner.random.clear();
    }

    /// How many requests have been failed so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Queued faults not yet used.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// The fault for the request being handled now, if any.
    pub(crate) fn next(&self) -> Option<Fault> {
        let mut inner = self.lock();
        let fault = inner.queue.pop_front().or_else(|| {
            inner
                .random
                .iter()
                .find(|(_, p)| rand::random::<f64>() < *p)
                .map(|(f, _)| f.clone())
        });
        if fault.is_some() {
            inner.injected += 1;
        }
        fault
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_then_nothing() {
        let f = Faults::default();
        f.fail_next(2, Fault::ServerError(503));
        assert_eq!(f.next(), Some(Fault::ServerError(503)));
        assert_eq!(f.next(), Some(Fault::ServerError(503)));
        assert_eq!(f.next(), None);
        assert_eq!(f.injected(), 2);
        f.fail_randomly(Fault::RateLimited, 1.0);
        assert_eq!(f.next(), Some(Fault::RateLimited));
    }
}

//! Retry policy as data, and the backoff state that follows it.

use std::time::Duration;

/// How a failed attempt is retried: exponential backoff from `initial`, multiplied by
/// `multiplier` per consecutive failure, capped at `max`. A run that lasted `healthy_after`
/// or longer counts as healthy: the next failure starts again from `initial`, so a component
/// that fails once a day is not punished for the failures of last week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: u32,
    pub healthy_after: Duration,
}

impl RetryPolicy {
    /// Components reading from or writing to NATS and the targets: restart quickly, never
    /// wait more than 10 s.
    pub const COMPONENT: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(10),
        multiplier: 2,
        healthy_after: Duration::from_secs(60),
    };

    /// Replication sessions: a PostgreSQL restart takes a while; do not hammer it.
    pub const SOURCE: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(30),
        multiplier: 2,
        healthy_after: Duration::from_secs(60),
    };

    /// Start-up: waiting for a dependency that is restarting.
    pub const STARTUP: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(250),
        max: Duration::from_secs(5),
        multiplier: 2,
        healthy_after: Duration::MAX,
    };

    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            next: self.initial,
        }
    }
}

/// The backoff state of one retried thing.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    next: Duration,
}

impl Backoff {
    /// The wait before the next attempt after an attempt that ran for `ran_for` and failed;
    /// `hint` is the error's `retry_after` (waited at least, even above `max`, since the
    /// other side asked for it). Advances the backoff.
    pub fn after_failure(&mut self, ran_for: Duration, hint: Option<Duration>) -> Duration {
        if ran_for >= self.policy.healthy_after {
            self.reset();
        }
        let delay = self.next;
        self.next = delay
            .saturating_mul(self.policy.multiplier.max(1))
            .min(self.policy.max);
        match hint {
            Some(h) if h > delay => h,
            _ => delay,
        }
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.policy.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
        multiplier: 2,
        healthy_after: Duration::from_secs(60),
    };

    #[test]
    fn doubles_up_to_the_cap_and_resets_after_a_healthy_run() {
        let mut b = P.backoff();
        let short = Duration::from_secs(1);
        let waits: Vec<u128> = (0..5)
            .map(|_| b.after_failure(short, None).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(
            b.after_failure(Duration::from_secs(60), None).as_millis(),
            100
        );
        assert_eq!(b.after_failure(short, None).as_millis(), 200);
    }

    #[test]
    fn a_longer_hint_is_honoured() {
        let mut b = P.backoff();
        let short = Duration::ZERO;
        assert_eq!(
            b.after_failure(short, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        // A shorter hint does not shorten the backoff.
        assert_eq!(
            b.after_failure(short, Some(Duration::from_millis(1))),
            Duration::from_millis(200)
        );
    }
}

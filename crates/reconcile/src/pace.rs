//! Reads of a target API, paced below its rate limit (`requests_per_second`) and retried
//! when it throttles or fails transiently (its `Retry-After` wins), a few times at most.

use std::future::Future;
use std::time::{Duration, Instant};

use tributary_sinks::ApplyError;

use crate::ReconcileError;

/// Attempts of one read before the sweep gives up on the target.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

pub struct Pace {
    every: Duration,
    next: Instant,
}

impl Pace {
    pub fn new(requests_per_second: u32) -> Pace {
        Pace {
            every: Duration::from_secs_f64(1.0 / f64::from(requests_per_second.max(1))),
            next: Instant::now(),
        }
    }

    /// Runs `read` when the pace allows, retrying throttling and transient failures.
    pub async fn read<T, F, Fut>(
        &mut self,
        target: &'static str,
        mut read: F,
    ) -> Result<T, ReconcileError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApplyError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            tokio::time::sleep_until(self.next.into()).await;
            self.next = Instant::now() + self.every;
            match read().await {
                Ok(v) => return Ok(v),
                Err(ApplyError::Transient {
                    reason,
                    retry_after,
                    ..
                }) => {
                    if attempt >= ATTEMPTS {
                        return Err(ReconcileError::Target {
                            target,
                            reason: format!("{reason} (after {attempt} attempts)"),
                        });
                    }
                    tracing::debug!(target, %reason, attempt, "stock read failed; retrying");
                    self.next = Instant::now() + retry_after.unwrap_or(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    return Err(ReconcileError::Target {
                        target,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled() -> ApplyError {
        ApplyError::Transient {
            reason: "429".into(),
            retry_after: Some(Duration::from_millis(20)),
            throttled: true,
        }
    }

    #[tokio::test]
    async fn throttling_is_waited_out_and_a_refusal_is_not_retried() {
        let mut pace = Pace::new(1000);
        let mut calls = 0;
        let started = Instant::now();
        let got = pace
            .read("wms", || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(throttled())
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .expect("the third attempt");
        assert_eq!(got, 3);
        // Two Retry-After waits of 20 ms.
        assert!(started.elapsed() >= Duration::from_millis(40));

        let mut calls = 0;
        let refused = pace
            .read("shopify", || {
                calls += 1;
                async {
                    Err::<(), _>(ApplyError::Definite {
                        reason: "401".into(),
                        body: String::new(),
                    })
                }
            })
            .await;
        assert!(matches!(
            refused,
            Err(ReconcileError::Target {
                target: "shopify",
                ..
            })
        ));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let gave_up = pace
            .read("wms", || {
                calls += 1;
                async { Err::<(), _>(throttled()) }
            })
            .await;
        assert!(matches!(gave_up, Err(ReconcileError::Target { .. })));
        assert_eq!(calls, ATTEMPTS);
    }
}

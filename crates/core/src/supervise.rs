//! The one restart loop of the bridge, and the one start-up wait.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{Classify, Component, ErrorClass, Failure, RetryPolicy};

/// Restarts of a component after a transient error, by `component`.
pub const COMPONENT_RESTARTS: &str = "tributary_component_restarts_total";

/// Registers the descriptions of this module's metrics.
pub fn describe_metrics() {
    metrics::describe_counter!(
        COMPONENT_RESTARTS,
        "Restarts of a component after a transient error"
    );
}

/// A component stopped on an error that a restart cannot fix (definite or fatal).
#[derive(Debug)]
pub struct Stopped {
    pub component: String,
    pub error: Failure,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.error.class() {
            ErrorClass::Fatal { .. } => "a restart cannot fix this",
            _ => "this needs an operator",
        };
        write!(f, "{} stopped ({why}): {}", self.component, self.error)
    }
}

/// The class of the error the component stopped on (a group of components reports its
/// first stop as its own).
impl Classify for Stopped {
    fn class(&self) -> ErrorClass {
        self.error.class()
    }
}

impl Error for Stopped {
    // The wrapped error's text is part of ours; its causes come next.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

/// Runs `component` until `stop` is cancelled (then `Ok`), restarting it after transient
/// errors with `policy`'s backoff (reset once a run lasted `policy.healthy_after`), counting
/// each restart in [`COMPONENT_RESTARTS`]. A definite or fatal error is logged once, naming
/// the component, and returned: the caller stops the bridge with it (non-zero exit).
/// `Ok(())` from `run` without `stop` cancelled means the component finished its work.
pub async fn supervise(
    component: &dyn Component,
    policy: RetryPolicy,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
    let name = component.name();
    let restarts = metrics::counter!(COMPONENT_RESTARTS, "component" => name.clone());
    let mut backoff = policy.backoff();
    while !stop.is_cancelled() {
        let started = Instant::now();
        let Err(e) = component.run(stop).await else {
            return Ok(());
        };
        let class = e.class();
        let ErrorClass::Transient { retry_after } = class else {
            error!(component = %name, class = class.label(), error = %chain(&e), "component stopped");
            return Err(Stopped {
                component: name,
                error: e,
            });
        };
        if stop.is_cancelled() {
            // An error caused by the shutdown itself (a connection closed under it).
            info!(component = %name, error = %chain(&e), "component ended while stopping");
            return Ok(());
        }
        let wait = backoff.after_failure(started.elapsed(), retry_after);
        warn!(component = %name, error = %chain(&e), retry_in_ms = wait.as_millis() as u64, "component failed; restarting");
        restarts.increment(1);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}

/// Start-up's wait for a dependency: calls `attempt` until it succeeds, retrying transient
/// errors with `policy` (each attempt logged) until `deadline` has passed since the first
/// attempt; then, or at once for a definite or fatal error (bad credentials, a missing
/// publication, invalid configuration), returns the error. `Ok(None)` when `stop` was
/// cancelled while waiting.
pub async fn retry_until<T, E, F, Fut>(
    what: &str,
    deadline: Duration,
    policy: RetryPolicy,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<Option<T>, E>
where
    E: Classify,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let first = Instant::now();
    let mut backoff = policy.backoff();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let started = Instant::now();
        let e = match attempt().await {
            Ok(v) => {
                if attempts > 1 {
                    info!(what, attempts, "available");
                }
                return Ok(Some(v));
            }
            Err(e) => e,
        };
        let ErrorClass::Transient { retry_after } = e.class() else {
            return Err(e);
        };
        let waited = first.elapsed();
        let wait = backoff.after_failure(started.elapsed(), retry_after);
        if waited + wait > deadline {
            error!(what, attempts, waited_secs = waited.as_secs(), error = %chain(&e), "still unavailable at the start-up deadline (startup_timeout_secs)");
            return Err(e);
        }
        warn!(what, attempt = attempts, error = %chain(&e), retry_in_ms = wait.as_millis() as u64, "not available yet; waiting");
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// An error and its causes on one line, each cause once: error types here include their
/// source's text in their own message (and also expose it as `source()`), so a plain join
/// would print it twice (`X: X`).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
#[path = "supervise_tests.rs"]
mod tests;

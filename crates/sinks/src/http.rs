//! The HTTP edge shared by the targets: one client per sink, and the mapping of answers
//! to [`ApplyError`] (transient: retry; definite: dead-letter).

use std::time::Duration;

use reqwest::{Response, StatusCode};

use crate::ApplyError;

pub fn client(timeout: Duration) -> Result<reqwest::Client, crate::SinkError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::SinkError::config("sinks", format!("HTTP client: {e}")))
}

/// A request that did not produce an answer (connection refused, timeout) is transient.
pub fn send_error(e: reqwest::Error) -> ApplyError {
    ApplyError::transient(format!("request failed: {e}"))
}

/// `Retry-After` in seconds (fractions allowed, as the WMS emulator sends them).
pub fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Classifies a non-success status: 429, 5xx, 408 and authentication problems (a rotated
/// key must pause the sink, not dead-letter every event) are transient; other 4xx definite.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> ApplyError {
    let reason = format!("HTTP {}: {}", status.as_u16(), truncate(body, 300));
    if status == StatusCode::TOO_MANY_REQUESTS {
        return ApplyError::Transient {
            reason,
            retry_after,
            throttled: true,
        };
    }
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
    {
        return ApplyError::Transient {
            reason,
            retry_after,
            throttled: false,
        };
    }
    ApplyError::definite(reason, body)
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

tokio::task_local! {
    /// The fence of the lane applying the current event (under `[ha]`).
    static LANE_FENCE: tributary_core::Fence;
}

/// Runs a lane's apply with its fence in scope, so that the last check before each write
/// request happens right before it is sent: an apply can wait long after the lane's own
/// check (pacing, a read first, a batch gathering), and a replica paused in that wait must
/// not send a write once it wakes without the lease.
pub(crate) async fn with_fence<F: std::future::Future>(
    fence: &tributary_core::Fence,
    apply: F,
) -> F::Output {
    LANE_FENCE.scope(fence.clone(), apply).await
}

/// The fence of the lane this task applies for, if any (a batched item carries it along).
pub(crate) fn lane_fence() -> Option<tributary_core::Fence> {
    LANE_FENCE.try_with(Clone::clone).ok()
}

/// Checks the lane's fence before a write request; a refusal is transient for the lane, whose
/// next attempt stops at its own fence check.
pub(crate) fn check_fence(fence: Option<&tributary_core::Fence>) -> Result<(), ApplyError> {
    let own = lane_fence();
    match fence.or(own.as_ref()) {
        Some(f) => f
            .check()
            .map(|_| ())
            .map_err(|e| ApplyError::transient(e.to_string())),
        None => Ok(()),
    }
}

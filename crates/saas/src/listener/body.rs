//! Reading a request body within the listener's limits, before anything is known about who
//! sent it: the size is checked from `Content-Length` before the first byte is read and again
//! while streaming (a chunked body is cut off at the limit), the whole body must arrive within
//! `body_timeout`, and bytes past each request's first [`FREE_BYTES`] are taken from the
//! listener's body budget, so that concurrent large bodies wait instead of growing the process.
//! Small webhooks (the usual case) never wait for the budget.

use axum::body::{Body, Bytes};
use axum::http::{header::CONTENT_LENGTH, HeaderMap, StatusCode};
use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::Limits;

/// Bytes of each body read without the budget: the connection limit bounds their total.
pub const FREE_BYTES: usize = 64 * 1024;

/// A body read whole; holds its share of the budget until dropped.
pub struct LimitedBody {
    pub bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Why a body was not read; each maps to a status and a metric reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyRejection {
    #[error("the body is larger than the limit")]
    TooLarge,
    #[error("the body did not arrive within the time limit")]
    Timeout,
    #[error("the body ended early or could not be read")]
    Incomplete,
}

impl BodyRejection {
    pub fn status(self) -> StatusCode {
        match self {
            BodyRejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyRejection::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyRejection::Incomplete => StatusCode::BAD_REQUEST,
        }
    }

    /// The `reason` label of the rejection metrics.
    pub fn reason(self) -> &'static str {
        match self {
            BodyRejection::TooLarge => "body_too_large",
            BodyRejection::Timeout => "body_timeout",
            BodyRejection::Incomplete => "body_incomplete",
        }
    }
}

/// Refuses a declared `Content-Length` over the limit without reading any of the body.
pub fn check_declared(limits: &Limits, headers: &HeaderMap) -> Result<(), BodyRejection> {
    match declared_len(headers) {
        Some(n) if n > limits.max_body as u64 => Err(BodyRejection::TooLarge),
        _ => Ok(()),
    }
}

fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads the whole body within the limits (see the module documentation).
pub async fn read(
    limits: &Limits,
    headers: &HeaderMap,
    body: Body,
) -> Result<LimitedBody, BodyRejection> {
    check_declared(limits, headers)?;
    let capacity = declared_len(headers).unwrap_or(0).min(FREE_BYTES as u64) as usize;
    tokio::time::timeout(limits.body_timeout, collect(limits, capacity, body))
        .await
        .unwrap_or(Err(BodyRejection::Timeout))
}

async fn collect(
    limits: &Limits,
    capacity: usize,
    body: Body,
) -> Result<LimitedBody, BodyRejection> {
    let mut buf: Vec<u8> = Vec::with_capacity(capacity);
    let mut budget: Option<OwnedSemaphorePermit> = None;
    let mut charged = 0usize;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| BodyRejection::Incomplete)?;
        let total = buf.len() + chunk.len();
        if total > limits.max_body {
            return Err(BodyRejection::TooLarge);
        }
        if total > buf.capacity() {
            // The budget pays for what is allocated, not only for what is written: growth by
            // doubling (capped at the limit) is charged before it happens.
            let grown = total.max(buf.capacity() * 2).min(limits.max_body);
            let owed = grown.saturating_sub(FREE_BYTES).saturating_sub(charged);
            if owed > 0 {
                // `max_body` is at most 256 MiB (config validation), so `owed` fits in u32.
                let permit = limits
                    .body_budget
                    .clone()
                    .acquire_many_owned(owed as u32)
                    .await
                    .map_err(|_| BodyRejection::Incomplete)?;
                charged += owed;
                match &mut budget {
                    Some(held) => held.merge(permit),
                    None => budget = Some(permit),
                }
            }
            buf.reserve_exact(grown - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(LimitedBody {
        bytes: Bytes::from(buf),
        _budget: budget,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(max_body: usize, budget: usize) -> Limits {
        let mut l = Limits::ops();
        l.max_body = max_body;
        l.body_timeout = Duration::from_millis(200);
        l.body_budget = std::sync::Arc::new(tokio::sync::Semaphore::new(budget));
        l
    }

    fn chunked(parts: Vec<Vec<u8>>) -> Body {
        let stream = futures::stream::iter(parts.into_iter().map(Ok::<_, std::io::Error>));
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_unread() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, "1048577".parse().expect("header value"));
        let got = read(&limits(1 << 20, 1 << 20), &headers, Body::empty()).await;
        assert_eq!(got.err(), Some(BodyRejection::TooLarge));
    }

    #[tokio::test]
    async fn chunked_body_is_cut_at_the_limit() {
        let body = chunked(vec![vec![b'a'; 600_000], vec![b'b'; 600_000]]);
        let got = read(&limits(1 << 20, 1 << 20), &HeaderMap::new(), body).await;
        assert_eq!(got.err(), Some(BodyRejection::TooLarge));
    }

    #[tokio::test]
    async fn body_past_the_budget_waits_then_times_out_and_small_ones_pass() {
        let l = limits(1 << 20, 100_000);
        let held = read(&l, &HeaderMap::new(), chunked(vec![vec![0; 150_000]])).await;
        let held = held.expect("first large body fits the budget");
        assert_eq!(held.bytes.len(), 150_000);
        let second = read(&l, &HeaderMap::new(), chunked(vec![vec![0; 150_000]])).await;
        assert_eq!(second.err(), Some(BodyRejection::Timeout));
        let small = read(&l, &HeaderMap::new(), chunked(vec![vec![1; 1000]])).await;
        assert_eq!(small.map(|b| b.bytes.len()).ok(), Some(1000));
        drop(held);
        let third = read(&l, &HeaderMap::new(), chunked(vec![vec![0; 150_000]])).await;
        assert!(
            third.is_ok(),
            "budget returned when the first body is dropped"
        );
    }
}

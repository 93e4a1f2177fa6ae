//! The steps every webhook receiver shares: header values checked before they reach a NATS
//! subject or header, one HMAC per request kept off the runtime's workers when the body is
//! large, signatures compared in constant time, and the store that answers only after the
//! JetStream ack.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::header::HeaderMap as NatsHeaders;
use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// Bodies up to this size are hashed inline (well under a millisecond).
const INLINE_HASH_BYTES: usize = 64 * 1024;
/// NATS closes a connection whose control line (`PUB <subject> …`) passes 4096 bytes; every
/// subject the receivers build stays far below.
pub const MAX_SUBJECT_BYTES: usize = 256;
/// Longest accepted id header (webhook and event ids are UUIDs or integers in practice).
pub const MAX_ID_BYTES: usize = 128;

/// A header value that is present but unusable: too long or with characters outside its set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("header {0} is too long or has characters outside its set")]
pub struct BadHeader(pub &'static str);

/// Ids, event types and timestamps: letters, digits and `_ - . : + /` (no spaces, no `*`/`>`).
pub fn id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'+' | b'/')
}

/// Host names (`X-Shopify-Shop-Domain`).
pub fn host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')
}

/// The trimmed value of `name`: `Ok(None)` when absent or empty, `Err` when present but longer
/// than `max` bytes or not made of `allowed` bytes.
pub fn header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    max: usize,
    allowed: fn(u8) -> bool,
) -> Result<Option<&'a str>, BadHeader> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| BadHeader(name))?.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > max || !value.bytes().all(allowed) {
        return Err(BadHeader(name));
    }
    Ok(Some(value))
}

/// Decodes one base64 HMAC-SHA256 tag; anything that is not 32 bytes is no signature.
pub fn decode_tag(b64: &str) -> Option<Vec<u8>> {
    if b64.len() > 64 {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|t| t.len() == 32)
}

fn hashers() -> &'static Arc<Semaphore> {
    static HASHERS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    HASHERS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(n.max(1)))
    })
}

/// HMAC-SHA256 over `prefix ‖ body`, once per request whatever the number of candidate
/// signatures. Bodies above 64 KiB are hashed on the blocking pool, at most one per CPU at a
/// time, so that floods of large unauthenticated bodies cannot occupy the runtime's workers
/// (which serve `/healthz` and every other request). None if the hashing task failed.
pub async fn hmac_sha256(
    key: &ring::hmac::Key,
    prefix: &[u8],
    body: &Bytes,
) -> Option<ring::hmac::Tag> {
    let hash = |key: &ring::hmac::Key, prefix: &[u8], body: &[u8]| {
        let mut ctx = ring::hmac::Context::with_key(key);
        ctx.update(prefix);
        ctx.update(body);
        ctx.sign()
    };
    if body.len() <= INLINE_HASH_BYTES {
        return Some(hash(key, prefix, body));
    }
    let _turn = hashers().clone().acquire_owned().await.ok()?;
    let (key, prefix, body) = (key.clone(), prefix.to_vec(), body.clone());
    tokio::task::spawn_blocking(move || hash(&key, &prefix, &body))
        .await
        .ok()
}

/// True when `candidate` equals `tag`, compared in constant time.
pub fn tag_matches(tag: &ring::hmac::Tag, candidate: &[u8]) -> bool {
    tag.as_ref().ct_eq(candidate).into()
}

/// Why a verified webhook was not stored (the `reason` label; answered 503 so the sender
/// retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("subject {0:?} is not publishable")]
    Subject(String),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("no JetStream ack within {0:?}")]
    Timeout(Duration),
}

impl StoreError {
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Subject(_) => "bad_subject",
            StoreError::Publish(_) => "publish_failed",
            StoreError::Timeout(_) => "publish_timeout",
        }
    }
}

/// Publishes with `Nats-Msg-Id` and waits for the ack (within `budget`); true when JetStream
/// already had the message. A subject that could break the shared connection's protocol is
/// refused here, whatever the caller checked.
pub async fn store(
    js: &async_nats::jetstream::Context,
    subject: String,
    mut headers: NatsHeaders,
    msg_id: &str,
    payload: Bytes,
    budget: Duration,
) -> Result<bool, StoreError> {
    let publishable = !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_BYTES
        && subject
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>');
    if !publishable {
        return Err(StoreError::Subject(subject));
    }
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    let publish = async {
        js.publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| StoreError::Publish(e.to_string()))?
            .await
            .map_err(|e| StoreError::Publish(e.to_string()))
    };
    match tokio::time::timeout(budget, publish).await {
        Ok(Ok(ack)) => Ok(ack.duplicate),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Timeout(budget)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_bounded() {
        let mut h = HeaderMap::new();
        h.insert("x-topic", "orders/create".parse().expect("value"));
        h.insert("x-long", "a".repeat(5000).parse().expect("value"));
        h.insert("x-space", "a b".parse().expect("value"));
        h.insert("x-star", "orders.*".parse().expect("value"));
        assert_eq!(
            header(&h, "x-topic", 64, id_char),
            Ok(Some("orders/create"))
        );
        assert_eq!(header(&h, "x-long", 64, id_char), Err(BadHeader("x-long")));
        assert_eq!(
            header(&h, "x-space", 64, id_char),
            Err(BadHeader("x-space"))
        );
        assert_eq!(header(&h, "x-star", 64, id_char), Err(BadHeader("x-star")));
        assert_eq!(header(&h, "x-missing", 64, id_char), Ok(None));
    }

    #[tokio::test]
    async fn large_and_small_bodies_hash_alike() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
        for len in [10, 1 << 20] {
            let body = Bytes::from(vec![7u8; len]);
            let tag = hmac_sha256(&key, b"id.1.", &body).await.expect("hashed");
            let mut whole = b"id.1.".to_vec();
            whole.extend_from_slice(&body);
            let expected = ring::hmac::sign(&key, &whole);
            assert!(tag_matches(&tag, expected.as_ref()));
            assert!(!tag_matches(&tag, &expected.as_ref()[..31]));
        }
    }
}

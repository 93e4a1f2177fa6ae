//! Outbound webhook delivery with bounded retries, shared by the Shopify and WMS emulators.
//!
//! ```text
//!  emulator ──Delivery{url, headers, raw body}──► WebhookClient ──POST──► receiver
//!                                                   ▲   non-2xx / timeout│
//!                                                   └── backoff, retry ◄─┘  (max_attempts)
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::error::{Result, SandboxError};

pub use crate::util::hmac_sha256_base64;

/// Verifies a base64 HMAC-SHA256 signature over `body` in constant time.
pub fn verify_hmac_sha256_base64(secret: &[u8], body: &[u8], signature_b64: &str) -> bool {
    use base64::Engine;
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).is_ok()
}

/// How deliveries are retried. The default follows Shopify (1 s connect / 5 s total timeout,
/// 8 retries) with the 4-hour backoff window compressed to about 13 s.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (Shopify: 9).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 9,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn once() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// One webhook to deliver: exact bytes and headers.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryOutcome {
    pub attempts: u32,
    /// The last HTTP status, `None` if the last attempt got no answer.
    pub status: Option<u16>,
    /// A 2xx answer was received.
    pub delivered: bool,
}

/// One attempt, for assertions.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub status: Option<u16>,
    pub at: SystemTime,
}

/// Sends [`Delivery`]s with the retry policy and keeps a log of attempts. Clone to share.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    policy: RetryPolicy,
    attempts: Arc<Mutex<Vec<AttemptRecord>>>,
}

impl WebhookClient {
    pub fn new(policy: RetryPolicy) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.request_timeout)
            .build()
            .map_err(SandboxError::Client)?;
        Ok(Self {
            http,
            policy,
            attempts: Arc::default(),
        })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Every attempt made so far.
    pub fn attempts(&self) -> Vec<AttemptRecord> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Delivers with retries on non-2xx answers and transport errors.
    pub async fn deliver(&self, delivery: &Delivery) -> DeliveryOutcome {
        self.deliver_with(delivery, self.policy.max_attempts).await
    }

    /// Delivers with at most `max_attempts` attempts (at least one).
    pub async fn deliver_with(&self, delivery: &Delivery, max_attempts: u32) -> DeliveryOutcome {
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .post(&delivery.url)
                .header("content-type", "application/json")
                .body(delivery.body.clone());
            for (k, v) in &delivery.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let status = req.send().await.ok().map(|r| r.status().as_u16());
            self.attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(AttemptRecord {
                    url: delivery.url.clone(),
                    headers: delivery.headers.clone(),
                    status,
                    at: SystemTime::now(),
                });
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            if delivered || attempt >= max_attempts.max(1) {
                return DeliveryOutcome {
                    attempts: attempt,
                    status,
                    delivered,
                };
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let sig = hmac_sha256_base64(b"secret", b"{\"a\":1}");
        assert!(verify_hmac_sha256_base64(b"secret", b"{\"a\":1}", &sig));
        assert!(!verify_hmac_sha256_base64(b"other", b"{\"a\":1}", &sig));
        assert!(!verify_hmac_sha256_base64(
            b"secret",
            b"{\"a\":1}",
            "not base64!"
        ));
    }
}

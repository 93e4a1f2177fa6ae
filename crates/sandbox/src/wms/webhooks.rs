//! Signed WMS lifecycle webhooks, Standard Webhooks style (as ShipBob signs them):
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`.
//! Delivered at least once, with optional duplicates, random delays (out of order) and bad
//! signatures.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};

use super::{lock, Wms};
use crate::util::{hmac_sha256_base64, now_millis, now_rfc3339};
use crate::webhooks::{verify_hmac_sha256_base64, Delivery, DeliveryOutcome, RetryPolicy};

/// Where lifecycle webhooks go and which delivery faults to add.
#[derive(Clone, Debug)]
pub struct WmsWebhookOptions {
    pub url: String,
    pub secret: String,
    pub policy: RetryPolicy,
    /// Share of events delivered twice (same `webhook-id`).
    pub duplicate_rate: f64,
    /// Random delay before each delivery, up to this (events overtake each other).
    pub max_delay: Duration,
    /// Share of deliveries with a wrong signature (one attempt, no retry).
    pub bad_signature_rate: f64,
}

impl WmsWebhookOptions {
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            policy: RetryPolicy::default(),
            duplicate_rate: 0.0,
            max_delay: Duration::ZERO,
            bad_signature_rate: 0.0,
        }
    }
}

/// One emitted event and what happened to its deliveries.
#[derive(Clone, Debug)]
pub struct WmsEvent {
    pub id: String,
    /// `order.allocated`, `order.shipped`, `order.delivered`, `order.exception`, `order.cancelled`, `inventory.updated`.
    pub kind: String,
    pub body: Value,
    pub outcomes: Vec<DeliveryOutcome>,
}

/// `v1,<base64 signature>` over `<id>.<timestamp>.<body>`.
pub fn sign_standard_webhook(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    format!("v1,{}", hmac_sha256_base64(secret, &signed))
}

/// Checks a `webhook-signature` header (space-separated `v1,<sig>` entries) in constant time.
pub fn verify_standard_webhook(
    secret: &[u8],
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| verify_hmac_sha256_base64(secret, &signed, sig))
}

impl Wms {
    /// Records an event and delivers it (in the background) if a webhook URL is configured.
    pub(crate) fn emit(&self, kind: &str, data: Value) {
        let id = self.with_state(|s| s.next_id("evt"));
        let body = json!({"id": id, "type": kind, "created_at": now_rfc3339(), "data": data});
        lock(&self.inner.events).push(WmsEvent {
            id: id.clone(),
            kind: kind.to_string(),
            body: body.clone(),
            outcomes: vec![],
        });
        let Some(opts) = lock(&self.inner.opts).webhook.clone() else {
            return;
        };
        let raw = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let copies = if rand::random::<f64>() < opts.duplicate_rate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let bad = rand::random::<f64>() < opts.bad_signature_rate;
            let delay = opts.max_delay.mul_f64(rand::rng().random::<f64>());
            let ts = (now_millis() / 1000).to_string();
            let secret: &[u8] = if bad {
                b"wrong-secret"
            } else {
                opts.secret.as_bytes()
            };
            let delivery = Delivery {
                url: opts.url.clone(),
                headers: vec![
                    ("webhook-id".into(), id.clone()),
                    ("webhook-timestamp".into(), ts.clone()),
                    (
                        "webhook-signature".into(),
                        sign_standard_webhook(secret, &id, &ts, &raw),
                    ),
                    ("x-wms-event-type".into(), kind.to_string()),
                ],
                body: raw.clone(),
            };
            let wms = self.clone();
            let client = lock(&self.inner.client).clone();
            let event_id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let attempts = if bad { 1 } else { client.policy().max_attempts };
                let outcome = client.deliver_with(&delivery, attempts).await;
                if let Some(e) = lock(&wms.inner.events)
                    .iter_mut()
                    .find(|e| e.id == event_id)
                {
                    e.outcomes.push(outcome);
                }
            });
        }
    }
}

//! `POST /webhooks/shopify/<shop>`: verify, store in JetStream, then answer.
//!
//! ```text
//!  Shopify ──POST raw body──► HMAC-SHA256 (constant time) ─401─► nothing stored
//!                                 │ ok
//!                                 ▼
//!                 publish saas.shopify.<shop>.<topic>, Nats-Msg-Id = <shop>:<event id>
//!                                 │ await the JetStream ack (duplicate: already stored)
//!                                 ▼
//!                             200 ◄── only now; an error or timeout → 503 (Shopify retries)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderMap as NatsHeaders;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use prost::Message as _;
use tracing::{debug, warn};

use super::envelope::{self, RawEvent};
use super::Shop;
use crate::listener::verify::{self, host_char, id_char, BadHeader, MAX_ID_BYTES};
use crate::listener::{body, Limits};
use crate::metrics as m;
use crate::time::{now_micros, parse_rfc3339_micros};

/// Shopify gives up on a delivery after 5 s; the ack must come well before.
const ACK_BUDGET: Duration = Duration::from_millis(4000);
/// Longest accepted topic (the longest Shopify topics are about 50 bytes).
const MAX_TOPIC_BYTES: usize = 100;

struct Receiver {
    shops: BTreeMap<String, Arc<Shop>>,
    limits: Limits,
}

pub(super) fn router(shops: Vec<Arc<Shop>>, limits: Limits) -> Router {
    let shops = shops.into_iter().map(|s| (s.cfg.name.clone(), s)).collect();
    Router::new()
        .route("/webhooks/shopify/{shop}", post(receive))
        .with_state(Arc::new(Receiver { shops, limits }))
}

/// Verifies a base64 HMAC-SHA256 tag over `body` in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(tag) = verify::decode_tag(header) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).is_ok()
}

fn reject(shop: &str, reason: &'static str, status: StatusCode) -> (StatusCode, &'static str) {
    metrics::counter!(m::WEBHOOKS_REJECTED, "shop" => shop.to_string(), "reason" => reason)
        .increment(1);
    debug!(shop, reason, "webhook rejected");
    (status, reason)
}

/// The headers that end up in the subject, the `Nats-Msg-Id` and the envelope, checked before
/// any of them is used (and before the body is read).
struct Delivery<'a> {
    topic: &'a str,
    event_id: Option<&'a str>,
    domain: &'a str,
    webhook_id: &'a str,
    triggered: Option<&'a str>,
}

fn delivery(headers: &HeaderMap) -> Result<Delivery<'_>, BadHeader> {
    Ok(Delivery {
        topic: verify::header(headers, "x-shopify-topic", MAX_TOPIC_BYTES, |b| {
            b.is_ascii_alphanumeric() || b == b'_' || b == b'/'
        })?
        .unwrap_or(""),
        event_id: verify::header(headers, "x-shopify-event-id", MAX_ID_BYTES, id_char)?,
        domain: verify::header(headers, "x-shopify-shop-domain", 255, host_char)?.unwrap_or(""),
        webhook_id: verify::header(headers, "x-shopify-webhook-id", MAX_ID_BYTES, id_char)?
            .unwrap_or(""),
        triggered: verify::header(headers, "x-shopify-triggered-at", 64, id_char)?,
    })
}

async fn receive(
    State(rx): State<Arc<Receiver>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    raw_body: Body,
) -> (StatusCode, &'static str) {
    let Some(shop) = rx.shops.get(&name) else {
        crate::listener::rejected("shopify", "unknown_path");
        return (StatusCode::NOT_FOUND, "unknown shop");
    };
    let d = delivery(&headers);
    let topic = d.as_ref().map_or("", |d| d.topic);
    metrics::counter!(m::WEBHOOKS_RECEIVED, "shop" => name.clone(), "topic" => m::topic_label(topic))
        .increment(1);
    let Some(signature) = headers.get("x-shopify-hmac-sha256") else {
        return reject(&name, "missing_signature", StatusCode::UNAUTHORIZED);
    };
    let Some(tag) = signature.to_str().ok().and_then(verify::decode_tag) else {
        return reject(&name, "bad_signature", StatusCode::UNAUTHORIZED);
    };
    let Ok(d) = d else {
        return reject(&name, "bad_header", StatusCode::BAD_REQUEST);
    };
    let body = match body::read(&rx.limits, &headers, raw_body).await {
        Ok(b) => b,
        Err(e) => return reject(&name, e.reason(), e.status()),
    };
    let verified = verify::hmac_sha256(&shop.key, b"", &body.bytes).await;
    if !verified.is_some_and(|t| verify::tag_matches(&t, &tag)) {
        return reject(&name, "bad_signature", StatusCode::UNAUTHORIZED);
    }
    let (Some(event_id), false) = (d.event_id, topic.is_empty()) else {
        return reject(&name, "missing_header", StatusCode::BAD_REQUEST);
    };
    if let Some(expected) = &shop.cfg.shop_domain {
        if !d.domain.eq_ignore_ascii_case(expected) {
            return reject(&name, "wrong_shop", StatusCode::BAD_REQUEST);
        }
    }
    let Ok(text) = std::str::from_utf8(&body.bytes) else {
        return reject(&name, "bad_body", StatusCode::BAD_REQUEST);
    };
    if serde_json::from_str::<serde_json::Value>(text).is_err() {
        return reject(&name, "bad_body", StatusCode::BAD_REQUEST);
    }
    let now = now_micros();
    let triggered = d.triggered.and_then(parse_rfc3339_micros).unwrap_or(now);
    let raw = RawEvent {
        event_id: format!("{name}:{event_id}"),
        shop: &name,
        shop_domain: d.domain,
        topic,
        body: text,
        triggered_at_micros: triggered,
        origin: format!("webhook:{}", d.webhook_id),
        reconciled: false,
    };
    let change = envelope::change_event(&raw);
    let subject = envelope::subject(&name, topic);
    let stored = store(&shop.js, &subject, &raw.event_id, change.encode_to_vec()).await;
    match stored {
        Ok(duplicate) => {
            if duplicate {
                metrics::counter!(m::WEBHOOKS_DUPLICATE, "shop" => name.clone()).increment(1);
            } else {
                metrics::counter!(m::WEBHOOKS_STORED, "shop" => name.clone(), "topic" => m::topic_label(topic))
                    .increment(1);
                metrics::gauge!(m::WEBHOOK_LAG, "shop" => name.clone())
                    .set((now - triggered) as f64 / 1e6);
            }
            (StatusCode::OK, "ok")
        }
        Err(e) => {
            warn!(shop = %name, error = %e, "webhook not stored; Shopify will retry");
            reject(&name, e.reason(), StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Publishes with `Nats-Msg-Id` and waits for the ack; true when JetStream already had it.
pub(super) async fn store(
    js: &async_nats::jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: Vec<u8>,
) -> Result<bool, verify::StoreError> {
    verify::store(
        js,
        subject.to_string(),
        NatsHeaders::new(),
        msg_id,
        Bytes::from(payload),
        ACK_BUDGET,
    )
    .await
}

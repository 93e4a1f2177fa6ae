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
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use prost::Message as _;
use tracing::{debug, warn};

use super::envelope::{self, RawEvent};
use super::Shop;
use crate::metrics as m;
use crate::time::{now_micros, parse_rfc3339_micros};

/// Shopify gives up on a delivery after 5 s; the ack must come well before.
const ACK_BUDGET: Duration = Duration::from_millis(4000);
/// Large orders make large payloads; axum's default limit (2 MiB) is too tight.
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(super) fn router(shops: Vec<Arc<Shop>>) -> Router {
    let shops: BTreeMap<String, Arc<Shop>> =
        shops.into_iter().map(|s| (s.cfg.name.clone(), s)).collect();
    Router::new()
        .route("/webhooks/shopify/{shop}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(shops))
}

/// Verifies a base64 HMAC-SHA256 tag over `body` in constant time (`ring::hmac::verify`).
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).is_ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn reject(shop: &str, reason: &'static str, status: StatusCode) -> (StatusCode, &'static str) {
    metrics::counter!(m::WEBHOOKS_REJECTED, "shop" => shop.to_string(), "reason" => reason)
        .increment(1);
    debug!(shop, reason, "webhook rejected");
    (status, reason)
}

async fn receive(
    State(shops): State<Arc<BTreeMap<String, Arc<Shop>>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let Some(shop) = shops.get(&name) else {
        return (StatusCode::NOT_FOUND, "unknown shop");
    };
    let topic = header(&headers, "x-shopify-topic").unwrap_or("");
    metrics::counter!(m::WEBHOOKS_RECEIVED, "shop" => name.clone(), "topic" => m::topic_label(topic))
        .increment(1);
    let Some(signature) = header(&headers, "x-shopify-hmac-sha256") else {
        return reject(&name, "missing_signature", StatusCode::UNAUTHORIZED);
    };
    if !verify_signature(&shop.secret, &body, signature) {
        return reject(&name, "bad_signature", StatusCode::UNAUTHORIZED);
    }
    let (Some(event_id), false) = (header(&headers, "x-shopify-event-id"), topic.is_empty()) else {
        return reject(&name, "missing_header", StatusCode::BAD_REQUEST);
    };
    let domain = header(&headers, "x-shopify-shop-domain").unwrap_or("");
    if let Some(expected) = &shop.cfg.shop_domain {
        if !domain.eq_ignore_ascii_case(expected) {
            return reject(&name, "wrong_shop", StatusCode::BAD_REQUEST);
        }
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return reject(&name, "bad_body", StatusCode::BAD_REQUEST);
    };
    if serde_json::from_str::<serde_json::Value>(text).is_err() {
        return reject(&name, "bad_body", StatusCode::BAD_REQUEST);
    }
    let now = now_micros();
    let triggered = header(&headers, "x-shopify-triggered-at")
        .and_then(parse_rfc3339_micros)
        .unwrap_or(now);
    let webhook_id = header(&headers, "x-shopify-webhook-id").unwrap_or("");
    let raw = RawEvent {
        event_id: format!("{name}:{event_id}"),
        shop: &name,
        shop_domain: domain,
        topic,
        body: text,
        triggered_at_micros: triggered,
        origin: format!("webhook:{webhook_id}"),
        reconciled: false,
    };
    let change = envelope::change_event(&raw);
    let subject = envelope::subject(&name, topic);
    match tokio::time::timeout(
        ACK_BUDGET,
        store(&shop.js, &subject, &raw.event_id, change.encode_to_vec()),
    )
    .await
    {
        Ok(Ok(duplicate)) => {
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
        Ok(Err(e)) => {
            warn!(shop = %name, error = %e, "webhook not stored; Shopify will retry");
            reject(&name, "publish_failed", StatusCode::SERVICE_UNAVAILABLE)
        }
        Err(_) => {
            warn!(shop = %name, "JetStream ack not within the budget; Shopify will retry");
            reject(&name, "publish_timeout", StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Publishes with `Nats-Msg-Id` and waits for the ack; true when JetStream already had it.
pub(super) async fn store(
    js: &async_nats::jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: Vec<u8>,
) -> Result<bool, String> {
    let mut headers = NatsHeaders::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    let ack = js
        .publish_with_headers(subject.to_string(), headers, payload.into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(ack.duplicate)
}

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

use async_nats::header::HeaderMap as NatsHeaders;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tracing::debug;

use super::envelope::{self, RawEvent};
use super::Shop;
use crate::listener::receiver::{self, Feed, Reject, Signed};
use crate::listener::verify::{self, host_char, id_char, BadHeader, MAX_ID_BYTES};
use crate::listener::Limits;
use crate::metrics as m;
use crate::time::{now_micros, parse_rfc3339_micros};

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

/// One shop's side of the shared receiver.
struct ShopFeed<'a> {
    name: &'a str,
    shop: &'a Shop,
    limits: &'a Limits,
}

/// What the envelope needs from the headers (owned: the body is read in between).
struct Checked {
    topic: String,
    event_id: Option<String>,
    domain: String,
    webhook_id: String,
    triggered: Option<String>,
}

impl Feed for ShopFeed<'_> {
    type Checked = Checked;

    fn key(&self) -> &ring::hmac::Key {
        &self.shop.key
    }

    fn limits(&self) -> &Limits {
        self.limits
    }

    fn js(&self) -> &async_nats::jetstream::Context {
        &self.shop.js
    }

    fn check(&self, headers: &HeaderMap) -> Result<Signed<Checked>, Reject> {
        let Some(signature) = headers.get("x-shopify-hmac-sha256") else {
            return Err(Reject("missing_signature", StatusCode::UNAUTHORIZED));
        };
        let Some(tag) = signature.to_str().ok().and_then(verify::decode_tag) else {
            return Err(Reject("bad_signature", StatusCode::UNAUTHORIZED));
        };
        let d = delivery(headers).map_err(|_| Reject("bad_header", StatusCode::BAD_REQUEST))?;
        Ok(Signed {
            prefix: Vec::new(),
            candidates: vec![tag],
            checked: Checked {
                topic: d.topic.to_string(),
                event_id: d.event_id.map(str::to_string),
                domain: d.domain.to_string(),
                webhook_id: d.webhook_id.to_string(),
                triggered: d.triggered.map(str::to_string),
            },
        })
    }

    fn admit(&self, d: &Checked) -> Result<(), Reject> {
        if d.event_id.is_none() || d.topic.is_empty() {
            return Err(Reject("missing_header", StatusCode::BAD_REQUEST));
        }
        match &self.shop.cfg.shop_domain {
            Some(expected) if !d.domain.eq_ignore_ascii_case(expected) => {
                Err(Reject("wrong_shop", StatusCode::BAD_REQUEST))
            }
            _ => Ok(()),
        }
    }

    fn envelope(&self, d: Checked, body: &str) -> Result<receiver::Delivery, Reject> {
        let Some(event_id) = d.event_id else {
            return Err(Reject("missing_header", StatusCode::BAD_REQUEST));
        };
        let triggered = d
            .triggered
            .as_deref()
            .and_then(parse_rfc3339_micros)
            .unwrap_or_else(now_micros);
        let raw = RawEvent {
            event_id: format!("{}:{event_id}", self.name),
            shop: self.name,
            shop_domain: &d.domain,
            topic: &d.topic,
            body,
            triggered_at_micros: triggered,
            origin: format!("webhook:{}", d.webhook_id),
            reconciled: false,
        };
        Ok(receiver::Delivery {
            subject: envelope::subject(self.name, &d.topic),
            change: envelope::change_event(&raw),
            msg_id: raw.event_id,
            headers: NatsHeaders::new(),
        })
    }

    fn rejected(&self, reason: &'static str) {
        metrics::counter!(m::WEBHOOKS_REJECTED, "shop" => self.name.to_string(), "reason" => reason)
            .increment(1);
        debug!(shop = self.name, reason, "webhook rejected");
    }

    fn stored(&self, delivery: &receiver::Delivery, duplicate: bool) {
        let shop = self.name.to_string();
        if duplicate {
            metrics::counter!(m::WEBHOOKS_DUPLICATE, "shop" => shop).increment(1);
            return;
        }
        let topic = m::topic_label(&delivery.change.table);
        metrics::counter!(m::WEBHOOKS_STORED, "shop" => shop.clone(), "topic" => topic)
            .increment(1);
        let lag = now_micros() - delivery.change.commit_time_micros;
        metrics::gauge!(m::WEBHOOK_LAG, "shop" => shop).set(lag as f64 / 1e6);
    }

    fn sender(&self) -> &'static str {
        "shop"
    }
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
    let topic = delivery(&headers).map_or("", |d| d.topic);
    metrics::counter!(m::WEBHOOKS_RECEIVED, "shop" => name.clone(), "topic" => m::topic_label(topic))
        .increment(1);
    let feed = ShopFeed {
        name: &name,
        shop,
        limits: &rx.limits,
    };
    receiver::receive(&feed, &headers, raw_body).await
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
        receiver::ACK_BUDGET,
    )
    .await
}

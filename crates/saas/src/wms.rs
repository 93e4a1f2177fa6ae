//! WMS lifecycle webhooks as a source: the order-to-cash loop's way back.
//!
//! ```text
//!  WMS ──POST <path> (webhook-id, webhook-timestamp, webhook-signature: v1,<b64 HMAC>)──►
//!        verify HMAC-SHA256 over "<id>.<timestamp>.<body>" (constant time) ─401─► nothing stored
//!            │ ok
//!            ▼
//!  publish saas.wms.<event type>, Nats-Msg-Id = wms:<webhook-id>, await the JetStream ack
//!            │                                            (an error or timeout → 503, WMS retries)
//!            ▼
//!          200 ◄── only now
//!
//!  SAAS_WMS ──durable consumer (1 unacked)──► map order.* ──► ExternalFeed (KV state, CAS) ──► RETAIL
//!                                                            retail.v1.fulfillment.updated
//! ```
//!
//! The fulfillment event is keyed by the order's `reference_id` (the ERP order number), like the
//! ERP `shipments` mapping, so that the entity's versions stay one sequence whichever system
//! reported the shipment. Its feed time is the WMS order's `updated_at` (plus the lifecycle
//! rank, which orders two steps within the same millisecond): a delayed `allocated` webhook
//! that arrives after `shipped` is stale and never rolls the fulfillment back; a duplicate
//! delivery is dropped by `Nats-Msg-Id` on the raw stream and, later, by the entity state.
//! See docs/sinks.md, "WMS webhooks".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderMap as NatsHeaders;
use async_nats::jetstream::{self, AckKind};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use prost::Message as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};
use tributary_config::{Config, WmsFeed, WmsWebhookSourceConfig};
use tributary_domain::{Applied, ExternalEvent, ExternalFeed};
use tributary_proto::cdc::v1::{ChangeEvent, Operation};
use tributary_proto::retail::v1::{domain_event::Entity, Fulfillment, FulfillmentLine, SourceRef};

use crate::json_change::JsonChange;
use crate::listener::receiver::{self, Delivery, Feed, Reject, Signed};
use crate::listener::verify::{self, MAX_ID_BYTES};
use crate::listener::{self, Limits};
use crate::mapping_consumer::MappingConsumer;
use crate::time::{now_micros, parse_rfc3339_micros};
use crate::SaasError;

/// Longest accepted event type (`order.shipment.exception` is 24 bytes).
const MAX_EVENT_TYPE_BYTES: usize = 64;
/// Raw duplicates (the WMS's retries and duplicate deliveries) are dropped for this long;
/// later ones are caught by the entity state.
pub const RAW_DUPLICATE_WINDOW_SECS: u64 = 24 * 3600;
/// Subject prefix of the raw webhooks.
pub const SUBJECT_PREFIX: &str = "saas.wms";
/// Mapping name (and entity-state slot) of the lifecycle webhooks.
pub const MAPPING: &str = "wms_order_webhook";

pub const WEBHOOKS_RECEIVED: &str = "tributary_wms_webhooks_received_total";
pub const WEBHOOKS_REJECTED: &str = "tributary_wms_webhooks_rejected_total";
pub const WEBHOOKS_STORED: &str = "tributary_wms_webhooks_stored_total";
pub const WEBHOOKS_DUPLICATE: &str = "tributary_wms_webhooks_duplicate_total";
pub const DOMAIN_EVENTS: &str = "tributary_wms_domain_events_total";

struct Endpoint {
    cfg: WmsWebhookSourceConfig,
    key: ring::hmac::Key,
    js: jetstream::Context,
    limits: Limits,
}

/// The `[[wms]]` source: webhook server and the mapper into `RETAIL`.
pub struct WmsWebhookSource {
    endpoint: Arc<Endpoint>,
    listener: TcpListener,
    feed: Arc<ExternalFeed>,
}

/// The signing key: `whsec_<base64>` (Standard Webhooks) is decoded, anything else is used as is.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// Most candidates a `webhook-signature` header may carry (a key rotation needs two); a longer
/// header is refused before any hashing.
pub const MAX_SIGNATURES: usize = 8;

/// The `v1` tags of a `webhook-signature` header (space-separated `v<n>,<base64>` entries):
/// `Err(reason)` when there are more than [`MAX_SIGNATURES`] entries or no usable `v1` one.
pub fn signature_candidates(header: &str) -> Result<Vec<Vec<u8>>, &'static str> {
    let entries: Vec<&str> = header.split_whitespace().take(MAX_SIGNATURES + 1).collect();
    if entries.len() > MAX_SIGNATURES {
        return Err("too_many_signatures");
    }
    let tags: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(verify::decode_tag)
        .collect();
    if tags.is_empty() {
        Err("bad_signature")
    } else {
        Ok(tags)
    }
}

/// Verifies a `webhook-signature` header over `<id>.<timestamp>.<body>`: one HMAC, compared
/// with each candidate in constant time.
pub fn verify_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(candidates) = signature_candidates(header) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{id}.{timestamp}.").as_bytes());
    ctx.update(body);
    let tag = ctx.sign();
    candidates
        .iter()
        .fold(false, |ok, c| ok | verify::tag_matches(&tag, c))
}

/// Checks the `[[wms]]` block (or the deprecated `[sinks.wms.webhooks]`; no I/O).
pub fn validate(feed: WmsFeed<'_>) -> Result<(), SaasError> {
    let (cfg, key) = (feed.cfg, |k: &str| format!("{}.{k}", feed.key));
    if cfg.listen.parse::<SocketAddr>().is_err() {
        return Err(SaasError::config(
            key("listen"),
            format!("{:?} is not an address such as 0.0.0.0:8089", cfg.listen),
        ));
    }
    if !cfg.path.starts_with('/') || cfg.path.contains(['{', '}', '*', ' ']) {
        return Err(SaasError::config(
            key("path"),
            format!("{:?} must be a plain path starting with '/'", cfg.path),
        ));
    }
    if cfg.stream.is_empty() || cfg.stream.contains(['.', '*', '>', ' ']) {
        return Err(SaasError::config(
            key("stream"),
            format!("{:?} is not a stream name", cfg.stream),
        ));
    }
    Ok(())
}

impl WmsWebhookSource {
    /// Validates, resolves the secret, provisions the raw stream, the domain stream and state,
    /// and binds the listener (a taken port fails start-up). None when not configured.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<WmsWebhookSource>, SaasError> {
        let Some(feed) = config.wms_feed() else {
            return Ok(None);
        };
        validate(feed)?;
        if feed.key == tributary_config::DEPRECATED_WMS_KEY {
            warn!(
                "config key `{}` is deprecated: move the table to `[[wms]]` (same keys)",
                feed.key
            );
        }
        let (cfg, key) = (feed.cfg.clone(), |k: &str| format!("{}.{k}", feed.key));
        describe();
        let secret = cfg
            .secret
            .resolve()
            .map_err(|e| SaasError::config(key("secret"), e.to_string()))?;
        if let Some(problem) = tributary_config::webhook_secret_problem(&secret) {
            return Err(SaasError::config(key("secret"), problem));
        }
        for spec in crate::streams::wms(config) {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let domain_cfg = crate::streams::domain_config(config)?;
        let feed =
            ExternalFeed::open(js.clone(), &config.nats, &domain_cfg, "wms_webhooks").await?;
        let addr: SocketAddr = cfg
            .listen
            .parse()
            .map_err(|e| SaasError::config(key("listen"), format!("{e}")))?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            SaasError::config(key("listen"), format!("cannot listen on {addr}: {e}"))
        })?;
        Ok(Some(WmsWebhookSource {
            endpoint: Arc::new(Endpoint {
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &signing_key(&secret)),
                cfg,
                js,
                limits: Limits::webhooks(&config.webhook_server),
            }),
            listener,
            feed: Arc::new(feed),
        }))
    }

    /// The bound webhook address (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves the webhooks and maps them until `stop`; the server finishes the requests in
    /// flight (each answered only after its ack) before returning.
    pub async fn run(self, stop: CancellationToken) -> Result<(), SaasError> {
        let addr = self.listener.local_addr().ok();
        let router = Router::new()
            .route(&self.endpoint.cfg.path, post(receive))
            .fallback(|| async {
                listener::rejected("wms", "unknown_path");
                StatusCode::NOT_FOUND
            })
            .with_state(self.endpoint.clone());
        let server_stop = stop.clone();
        let listener = self.listener;
        let limits = self.endpoint.limits.clone();
        let server = tokio::spawn(
            async move {
                info!(?addr, "WMS webhook server listening");
                listener::serve("wms", listener, router, limits, server_stop).await;
            }
            .instrument(tracing::info_span!("wms_webhooks")),
        );
        let mapper = Mapper {
            endpoint: self.endpoint.clone(),
            feed: self.feed.clone(),
        };
        mapper
            .supervise(stop)
            .instrument(tracing::info_span!("wms_mapper"))
            .await;
        let _ = server.await;
        Ok(())
    }
}

fn describe() {
    metrics::describe_counter!(WEBHOOKS_RECEIVED, "WMS webhooks received");
    metrics::describe_counter!(WEBHOOKS_REJECTED, "WMS webhooks refused, by reason");
    metrics::describe_counter!(WEBHOOKS_STORED, "WMS webhooks stored in JetStream");
    metrics::describe_counter!(WEBHOOKS_DUPLICATE, "WMS webhooks JetStream already had");
    metrics::describe_counter!(DOMAIN_EVENTS, "WMS webhooks mapped, by outcome");
}

/// Event types become a subject token and the envelope's table.
fn event_type_ok(kind: &str) -> bool {
    !kind.is_empty() && kind.len() <= MAX_EVENT_TYPE_BYTES && kind.bytes().all(verify::id_char)
}

/// The headers the envelope needs, checked before the body is read.
struct Checked {
    id: String,
    timestamp: String,
    timestamp_secs: i64,
    type_header: Option<String>,
}

impl Feed for Endpoint {
    type Checked = Checked;

    fn key(&self) -> &ring::hmac::Key {
        &self.key
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn js(&self) -> &jetstream::Context {
        &self.js
    }

    fn check(&self, headers: &HeaderMap) -> Result<Signed<Checked>, Reject> {
        let digits = |b: u8| b.is_ascii_digit();
        let id = verify::header(headers, "webhook-id", MAX_ID_BYTES, verify::id_char);
        let ts = verify::header(headers, "webhook-timestamp", 12, digits);
        let kind = verify::header(
            headers,
            "x-wms-event-type",
            MAX_EVENT_TYPE_BYTES,
            verify::id_char,
        );
        let sig = headers.get("webhook-signature").map(|v| v.to_str());
        let (Ok(Some(id)), Ok(Some(ts)), Some(Ok(sig))) = (id, ts, sig) else {
            return Err(match (id, ts) {
                (Err(_), _) | (_, Err(_)) => Reject("bad_header", StatusCode::BAD_REQUEST),
                _ => Reject("missing_signature", StatusCode::UNAUTHORIZED),
            });
        };
        let Ok(type_header) = kind else {
            return Err(Reject("bad_header", StatusCode::BAD_REQUEST));
        };
        let candidates =
            signature_candidates(sig).map_err(|r| Reject(r, StatusCode::UNAUTHORIZED))?;
        let Ok(timestamp_secs) = ts.parse::<i64>() else {
            return Err(Reject("bad_timestamp", StatusCode::UNAUTHORIZED));
        };
        let tolerance = self.cfg.timestamp_tolerance_secs as i64;
        if tolerance > 0 && (now_micros() / 1_000_000 - timestamp_secs).abs() > tolerance {
            return Err(Reject(
                "timestamp_out_of_tolerance",
                StatusCode::UNAUTHORIZED,
            ));
        }
        Ok(Signed {
            prefix: format!("{id}.{ts}.").into_bytes(),
            candidates,
            checked: Checked {
                id: id.to_string(),
                timestamp: ts.to_string(),
                timestamp_secs,
                type_header: type_header.map(str::to_string),
            },
        })
    }

    fn envelope(&self, c: Checked, body: &str) -> Result<Delivery, Reject> {
        let json: Value =
            serde_json::from_str(body).map_err(|_| Reject("bad_body", StatusCode::BAD_REQUEST))?;
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .or(c.type_header.as_deref())
            .unwrap_or("unknown");
        if !event_type_ok(kind) {
            return Err(Reject("bad_event_type", StatusCode::BAD_REQUEST));
        }
        let subject = format!(
            "{SUBJECT_PREFIX}.{}",
            tributary_nats::subject::token(&kind.replace('.', "_"))
        );
        let mut headers = NatsHeaders::new();
        headers.insert("Webhook-Id", c.id.as_str());
        headers.insert("Webhook-Timestamp", c.timestamp.as_str());
        headers.insert("Wms-Event-Type", kind);
        let msg_id = format!("wms:{}", c.id);
        let change = JsonChange {
            event_id: msg_id.clone(),
            source: &self.cfg.system,
            database: "",
            schema: "wms",
            table: kind,
            op: if kind.ends_with(".created") {
                Operation::Insert
            } else {
                Operation::Update
            },
            payload: body.to_string(),
            commit_micros: c.timestamp_secs.saturating_mul(1_000_000),
            origin: format!("webhook:{}", c.id),
        }
        .into_event();
        Ok(Delivery {
            subject,
            msg_id,
            headers,
            change,
        })
    }

    fn rejected(&self, reason: &'static str) {
        metrics::counter!(WEBHOOKS_REJECTED, "reason" => reason).increment(1);
        debug!(reason, "WMS webhook rejected");
    }

    fn stored(&self, _delivery: &Delivery, duplicate: bool) {
        if duplicate {
            metrics::counter!(WEBHOOKS_DUPLICATE).increment(1);
        } else {
            metrics::counter!(WEBHOOKS_STORED).increment(1);
        }
    }

    fn sender(&self) -> &'static str {
        "WMS"
    }
}

async fn receive(
    State(ep): State<Arc<Endpoint>>,
    headers: HeaderMap,
    raw_body: Body,
) -> (StatusCode, &'static str) {
    metrics::counter!(WEBHOOKS_RECEIVED).increment(1);
    receiver::receive(ep.as_ref(), &headers, raw_body).await
}

/// A lifecycle webhook mapped to a fulfillment (key = the order's `reference_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedWebhook {
    pub key: String,
    pub as_of_micros: i64,
    pub fulfillment: Fulfillment,
}

fn rank(status: &str) -> i64 {
    match status {
        "pending" => 0,
        "allocated" => 1,
        "picked" => 2,
        "shipped" => 3,
        "delivered" => 4,
        "exception" => 5,
        "cancelled" => 6,
        _ => 0,
    }
}

/// Maps a webhook body (`{"id","type","created_at","data":{"order":{…}}}`); `Ok(None)` for
/// event types that are not order lifecycle steps (e.g. `inventory.updated`).
pub fn map_webhook(body: &Value) -> Result<Option<MappedWebhook>, String> {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    if !kind.starts_with("order.") {
        return Ok(None);
    }
    let order = body
        .pointer("/data/order")
        .ok_or("no data.order in the webhook")?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let wms_id = text(order, "id");
    let reference = text(order, "reference_id");
    let key = if reference.is_empty() {
        wms_id.clone()
    } else {
        reference
    };
    if key.is_empty() {
        return Err("the order has neither reference_id nor id".into());
    }
    let status = text(order, "status");
    if status.is_empty() {
        return Err("the order has no status".into());
    }
    let updated = order
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339_micros)
        .or_else(|| {
            body.get("created_at")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339_micros)
        })
        .ok_or("no updated_at / created_at timestamp")?;
    let shipment = order
        .get("shipments")
        .and_then(Value::as_array)
        .and_then(|s| s.last());
    let ship = |k: &str| shipment.map(|s| text(s, k)).unwrap_or_default();
    let lines = order
        .get("products")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| FulfillmentLine {
                    line_id: (i + 1).to_string(),
                    sku: text(p, "sku"),
                    quantity: p.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let fulfillment_id = match ship("id") {
        s if s.is_empty() => format!("WMS-{wms_id}"),
        s => format!("WMS-{s}"),
    };
    let shipped_at_micros = if status == "shipped" { updated } else { 0 };
    Ok(Some(MappedWebhook {
        as_of_micros: updated + rank(&status),
        fulfillment: Fulfillment {
            fulfillment_id,
            order_id: key.clone(),
            lines,
            carrier: ship("carrier"),
            tracking_number: ship("tracking_number"),
            tracking_url: ship("tracking_url"),
            status,
            location: String::new(),
            shipped_at_micros,
        },
        key,
    }))
}

struct Mapper {
    endpoint: Arc<Endpoint>,
    feed: Arc<ExternalFeed>,
}

impl Mapper {
    async fn supervise(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !stop.is_cancelled() {
            match self.consume(&stop).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "WMS webhook mapper failed; restarting");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn consume(&self, stop: &CancellationToken) -> Result<(), SaasError> {
        let mut consumer = MappingConsumer::open(
            &self.endpoint.js,
            &self.endpoint.cfg.stream,
            "tributary-wms-webhooks",
            "Tributary WMS webhook → fulfillment mapping",
            format!("{SUBJECT_PREFIX}.>"),
        )
        .await?;
        while let Some(msg) = consumer.next(stop).await? {
            let webhook_id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Webhook-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            match self.handle(&webhook_id, &msg.payload).await {
                Ok(outcome) => {
                    metrics::counter!(DOMAIN_EVENTS, "outcome" => outcome).increment(1);
                    msg.ack().await.map_err(|e| SaasError::nats("ack", e))?
                }
                Err(e) => {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Maps one stored webhook; Err only for transient failures (redelivered).
    async fn handle(&self, webhook_id: &str, payload: &[u8]) -> Result<&'static str, SaasError> {
        // Stored as the JSON change envelope every SaaS feed shares.
        let mapped = ChangeEvent::decode(payload)
            .map_err(|e| format!("not a change envelope: {e}"))
            .and_then(|change| {
                crate::json_change::payload(&change)
                    .ok_or_else(|| "the change envelope has no payload".to_string())
                    .and_then(|t| serde_json::from_str::<Value>(t).map_err(|e| e.to_string()))
            })
            .and_then(|v| map_webhook(&v));
        let mapped = match mapped {
            Ok(Some(m)) => m,
            Ok(None) => return Ok("ignored"),
            Err(reason) => {
                crate::dead_letter::park(
                    &self.endpoint.js,
                    "wms",
                    MAPPING,
                    &format!("wms:{webhook_id}"),
                    payload,
                    &reason,
                )
                .await?;
                return Ok("dead_letter");
            }
        };
        let system = self.endpoint.cfg.system.clone();
        let event = ExternalEvent {
            entity: "fulfillment".into(),
            event: "updated".into(),
            event_id: format!("wms:{}@{}/{MAPPING}", mapped.key, mapped.as_of_micros),
            key: mapped.key,
            feed: "wms".into(),
            as_of_micros: mapped.as_of_micros,
            mapping: MAPPING.into(),
            source_ref: SourceRef {
                source: system.clone(),
                event_id: format!("wms:{webhook_id}"),
                commit_lsn: 0,
                ordinal: 0,
                origin: "webhook".into(),
                feed_position: format!("webhook:{webhook_id}"),
            },
            system,
            body: Entity::Fulfillment(mapped.fulfillment),
        };
        Ok(match self.feed.apply(&event).await? {
            Applied::Published(_) => "published",
            Applied::Stale => "stale",
            Applied::Repeated => "repeated",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_forgery() {
        let key = b"s3cret";
        let body = br#"{"id":"evt_1"}"#;
        let mut signed = b"evt_1.1700000000.".to_vec();
        signed.extend_from_slice(body);
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), &signed);
        let header = format!(
            "v0,xxx v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
        );
        assert!(verify_signature(key, "evt_1", "1700000000", body, &header));
        assert!(!verify_signature(key, "evt_1", "1700000001", body, &header));
        assert!(!verify_signature(
            b"other",
            "evt_1",
            "1700000000",
            body,
            &header
        ));
        assert!(!verify_signature(
            key,
            "evt_1",
            "1700000000",
            body,
            "v1,!!!"
        ));
    }

    #[test]
    fn more_than_eight_signature_entries_are_refused_unhashed() {
        let entry = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let eight = [entry.as_str(); 8].join(" ");
        let nine = [entry.as_str(); 9].join(" ");
        assert_eq!(signature_candidates(&eight).map(|c| c.len()), Ok(8));
        assert_eq!(signature_candidates(&nine), Err("too_many_signatures"));
        assert_eq!(
            signature_candidates("v1,short v2,xyz"),
            Err("bad_signature")
        );
    }

    #[test]
    fn maps_shipped_and_orders_steps() -> Result<(), String> {
        let body = |status: &str, ts: &str| {
            serde_json::json!({"id": "evt_1", "type": format!("order.{status}"), "created_at": ts,
                "data": {"order": {"id": "wms_1", "reference_id": "SO-1", "status": status,
                "updated_at": ts, "products": [{"sku": "SKU-1", "quantity": 2}],
                "shipments": [{"id": "shp_9", "carrier": "UPS", "tracking_number": "1Z9",
                "tracking_url": "https://t/1Z9", "status": "in_transit"}]}}})
        };
        let shipped =
            map_webhook(&body("shipped", "2026-01-01T00:00:00.000Z"))?.ok_or("not mapped")?;
        assert_eq!(shipped.key, "SO-1");
        assert_eq!(shipped.fulfillment.tracking_number, "1Z9");
        assert_eq!(shipped.fulfillment.carrier, "UPS");
        assert_eq!(shipped.fulfillment.lines.len(), 1);
        let allocated =
            map_webhook(&body("allocated", "2026-01-01T00:00:00.000Z"))?.ok_or("not mapped")?;
        assert!(allocated.as_of_micros < shipped.as_of_micros);
        assert!(map_webhook(&serde_json::json!({"type": "inventory.updated"}))?.is_none());
        Ok(())
    }
}

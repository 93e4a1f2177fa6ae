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
//!                                        map return.received ──► retail.v1.return.received
//! ```
//!
//! The fulfillment event is keyed by the order's `reference_id` (the ERP order number), like the
//! ERP `shipments` mapping, so that the entity's versions stay one sequence whichever system
//! reported the shipment. Its feed time is the WMS order's `updated_at` (plus the lifecycle
//! rank, which orders two steps within the same millisecond): a delayed `allocated` webhook
//! that arrives after `shipped` is stale and never rolls the fulfillment back; a duplicate
//! delivery is dropped by `Nats-Msg-Id` on the raw stream and, later, by the entity state.
//! See docs/saas-sources.md, "WMS webhooks". The receiver (`receive`) is the one Shopify uses;
//! `map` turns the stored envelopes into fulfillments.

mod map;
mod receive;

use std::net::SocketAddr;
use std::sync::Arc;

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
use tributary_nats::StreamSpec;
use tributary_proto::cdc::v1::{ChangeEvent, Operation};
use tributary_proto::retail::v1::{
    domain_event::Entity, Fulfillment, FulfillmentLine, Return, ReturnLine, SourceRef,
};

use crate::json_change::JsonChange;
use crate::listener::receiver::{self, Delivery, Feed, Reject, Signed};
use crate::listener::verify::{self, MAX_ID_BYTES};
use crate::listener::{self, Limits};
use crate::mapping_consumer::MappingConsumer;
use crate::time::{now_micros, parse_rfc3339_micros};
use crate::FeedParts;
use crate::SaasError;

use map::Mapper;
pub use map::{map_webhook, stored_webhook, MappedWebhook};
pub use receive::{signature_candidates, signing_key, verify_signature, MAX_SIGNATURES};

/// Longest accepted event type (`order.shipment.exception` is 24 bytes).
const MAX_EVENT_TYPE_BYTES: usize = 64;
/// Raw duplicates (the WMS's retries and duplicate deliveries) are dropped for this long;
/// later ones are caught by the entity state.
pub const RAW_DUPLICATE_WINDOW_SECS: u64 = 24 * 3600;
/// Subject prefix of the raw webhooks.
pub const SUBJECT_PREFIX: &str = "saas.wms";
/// Mapping name (and entity-state slot) of the lifecycle webhooks.
pub const MAPPING: &str = "wms_order_webhook";
/// Mapping name of received returns (`return.received`).
pub const RETURN_MAPPING: &str = "wms_return_webhook";

pub use crate::metrics::{
    WMS_DOMAIN_EVENTS as DOMAIN_EVENTS, WMS_WEBHOOKS_DUPLICATE as WEBHOOKS_DUPLICATE,
    WMS_WEBHOOKS_RECEIVED as WEBHOOKS_RECEIVED, WMS_WEBHOOKS_REJECTED as WEBHOOKS_REJECTED,
    WMS_WEBHOOKS_STORED as WEBHOOKS_STORED,
};

/// The WMS webhooks' raw stream.
pub fn streams(config: &Config) -> Vec<StreamSpec> {
    let feed = config.wms_feed();
    let raw = crate::stream_spec::Raw {
        window: RAW_DUPLICATE_WINDOW_SECS,
        component: "wms_webhooks",
        name_key: match feed {
            Some(f) if f.key == tributary_config::DEPRECATED_WMS_KEY => "sinks.wms.webhooks.stream",
            _ => "wms.stream",
        },
    };
    let feeds = feed.map(|f| (&f.cfg.stream, format!("{SUBJECT_PREFIX}.>")));
    raw.grouped(&config.nats, feeds)
}

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
        for spec in streams(config) {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let domain_cfg = crate::stream_spec::domain_config(config)?;
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
        let stop = stop.child_token();
        self.parts(&stop).run(stop).await
    }

    /// The webhook server (a receiver, serving until `stop`) and the mapping consumer (a
    /// component).
    pub fn parts(self, stop: &CancellationToken) -> FeedParts {
        let addr = self.listener.local_addr().ok();
        let router = Router::new()
            .route(&self.endpoint.cfg.path, post(receive::receive))
            .fallback(|| async {
                listener::rejected("wms", "unknown_path");
                StatusCode::NOT_FOUND
            })
            .with_state(self.endpoint.clone());
        let server_stop = stop.clone();
        let listener = self.listener;
        let limits = self.endpoint.limits.clone();
        let mut parts = FeedParts::default();
        let name = "webhook listener wms".to_string();
        parts.receivers.push((
            name,
            Box::pin(
                async move {
                    info!(?addr, "WMS webhook server listening");
                    listener::serve("wms", listener, router, limits, server_stop).await;
                }
                .instrument(tracing::info_span!("wms_webhooks")),
            ),
        ));
        parts.components.push(Box::new(Mapper {
            endpoint: self.endpoint.clone(),
            feed: self.feed.clone(),
            fence: Default::default(),
        }));
        parts
    }
}

fn describe() {
    metrics::describe_counter!(WEBHOOKS_RECEIVED, "WMS webhooks received");
    metrics::describe_counter!(WEBHOOKS_REJECTED, "WMS webhooks refused, by reason");
    metrics::describe_counter!(WEBHOOKS_STORED, "WMS webhooks stored in JetStream");
    metrics::describe_counter!(WEBHOOKS_DUPLICATE, "WMS webhooks JetStream already had");
    metrics::describe_counter!(DOMAIN_EVENTS, "WMS webhooks mapped, by outcome");
}

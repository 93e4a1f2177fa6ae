//! Shopify webhook source.
//!
//! ```text
//!  Shopify ──signed POST──► webhook server (axum, one per listen address)
//!                               │ verify HMAC, publish, await ack, then 200
//!                               ▼
//!                         SAAS_SHOPIFY  saas.shopify.<shop>.<topic>   (tributary.cdc.v1.ChangeEvent)
//!                               │ durable consumer per shop
//!                               ▼
//!                         mapper ──► entity state (KV tributary_domain) ──► RETAIL retail.v1.<entity>.<event>
//!  Admin API ◄── reconciliation poll (cursor in KV tributary_saas) ──► SAAS_SHOPIFY (READ events)
//! ```
//!
//! See `docs/saas-sources.md`.

mod admin;
mod consume;
pub mod envelope;
pub mod mapper;
mod paging;
mod reconcile;
mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};
use tributary_config::{Config, ShopifySourceConfig, WebhookServerConfig};
use tributary_domain::ExternalFeed;
use tributary_nats::StreamSpec;

pub use webhook::verify_signature;

use crate::listener::{self, Limits};
use crate::{FeedParts, SaasError};

/// KV bucket of the SaaS feeds' positions (reconciliation cursors).
pub const STATE_BUCKET: &str = "tributary_saas";
/// Redeliveries arrive over hours (Shopify retries for 4 h, deliveries can be a day late):
/// the raw stream drops duplicates for this long; later ones are caught by the entity state.
pub const RAW_DUPLICATE_WINDOW_SECS: u64 = 24 * 3600;

/// The Shopify feeds' raw streams (shops sharing a stream share it).
pub fn streams(config: &Config) -> Vec<StreamSpec> {
    let feeds = config
        .shopify
        .iter()
        .map(|s| (&s.stream, envelope::shop_wildcard(&s.name)));
    let raw = crate::stream_spec::Raw {
        window: RAW_DUPLICATE_WINDOW_SECS,
        component: "shopify",
        name_key: "shopify.stream",
    };
    raw.grouped(&config.nats, feeds)
}

/// One configured shop, resolved.
pub(crate) struct Shop {
    pub cfg: ShopifySourceConfig,
    /// HMAC key of `X-Shopify-Hmac-Sha256` (the app's client secret).
    pub key: ring::hmac::Key,
    pub js: jetstream::Context,
}

/// Every `[[shopify]]` source: webhook servers, mappers and reconciliation polls.
pub struct ShopifySources {
    shops: Vec<Arc<Shop>>,
    listeners: Vec<(TcpListener, Vec<Arc<Shop>>)>,
    limits: WebhookServerConfig,
    feed: Option<Arc<ExternalFeed>>,
    kv: kv::Store,
}

/// Checks the `[[shopify]]` blocks (no I/O).
pub fn validate(config: &Config) -> Result<(), SaasError> {
    let mut names = std::collections::HashSet::new();
    for (i, s) in config.shopify.iter().enumerate() {
        let key = |k: &str| format!("shopify[{i}].{k}");
        let ok = !s.name.is_empty()
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(SaasError::config(
                key("name"),
                format!("{:?} must be letters, digits, '_' and '-'", s.name),
            ));
        }
        if !names.insert(s.name.clone()) {
            return Err(SaasError::config(
                key("name"),
                format!("{:?} is used twice", s.name),
            ));
        }
        if s.listen.parse::<SocketAddr>().is_err() {
            return Err(SaasError::config(
                key("listen"),
                format!("{:?} is not an address such as 0.0.0.0:8088", s.listen),
            ));
        }
        if s.stream.is_empty() || s.stream.contains(['.', '*', '>', ' ']) {
            return Err(SaasError::config(
                key("stream"),
                format!("{:?} is not a stream name", s.stream),
            ));
        }
        if let Some(a) = &s.admin {
            if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
                return Err(SaasError::config(
                    key("admin.url"),
                    format!("{:?} is not an http(s) URL", a.url),
                ));
            }
            if a.page_size == 0 || a.page_size > 250 {
                return Err(SaasError::config(
                    key("admin.page_size"),
                    "must be between 1 and 250",
                ));
            }
        }
    }
    Ok(())
}

impl ShopifySources {
    /// Validates, resolves secrets, provisions the streams and buckets, and binds the webhook
    /// listeners (so a taken port fails start-up). None when no shop is configured.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<ShopifySources>, SaasError> {
        if config.shopify.is_empty() {
            return Ok(None);
        }
        validate(config)?;
        crate::metrics::describe();
        let replicas = config.nats.stream.replicas.unwrap_or(1);
        let mut shops = Vec::new();
        for (i, cfg) in config.shopify.iter().enumerate() {
            let key = format!("shopify[{i}].webhook_secret");
            let secret = cfg
                .webhook_secret
                .resolve()
                .map_err(|e| SaasError::config(&key, e.to_string()))?;
            if let Some(problem) = tributary_config::webhook_secret_problem(&secret) {
                return Err(SaasError::config(key, problem));
            }
            shops.push(Arc::new(Shop {
                cfg: cfg.clone(),
                key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
                js: js.clone(),
            }));
        }
        for spec in streams(config) {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let domain_cfg = crate::stream_spec::domain_config(config)?;
        let feed = if shops.iter().any(|s| s.cfg.domain_events) {
            let feed = ExternalFeed::open(js.clone(), &config.nats, &domain_cfg, "shopify").await?;
            Some(Arc::new(feed))
        } else {
            None
        };
        let kv = tributary_nats::kv::open_bucket(
            &js,
            STATE_BUCKET,
            "Tributary SaaS feeds: reconciliation cursors",
            "shopify",
            replicas,
        )
        .await?;
        let mut by_addr: BTreeMap<SocketAddr, Vec<Arc<Shop>>> = BTreeMap::new();
        for shop in &shops {
            let addr: SocketAddr = shop
                .cfg
                .listen
                .parse()
                .map_err(|e| SaasError::config("shopify.listen", format!("{e}")))?;
            by_addr.entry(addr).or_default().push(shop.clone());
        }
        let mut listeners = Vec::new();
        for (addr, group) in by_addr {
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                SaasError::config("shopify.listen", format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push((listener, group));
        }
        Ok(Some(ShopifySources {
            shops,
            listeners,
            limits: config.webhook_server.clone(),
            feed,
            kv,
        }))
    }

    /// The bound webhook addresses (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves the webhooks and runs the mappers and polls until `stop` (one replica); the
    /// servers stop accepting, finish the requests in flight (each answered only after its
    /// ack), then return.
    pub async fn run(self, stop: CancellationToken) -> Result<(), SaasError> {
        // Cancelled also when one part stops for good, so that the others end too.
        let stop = stop.child_token();
        let result = match self.parts(&stop) {
            Ok(parts) => parts.run(stop).await,
            Err(e) => Err(e),
        };
        // Give a last in-flight ack a moment (graceful shutdown already drained requests).
        tokio::time::sleep(Duration::from_millis(10)).await;
        result
    }

    /// The webhook servers (receivers, serving until `stop`) and, per shop, the mapping
    /// consumer and the reconciliation poller (components).
    pub fn parts(self, stop: &CancellationToken) -> Result<FeedParts, SaasError> {
        let mut parts = FeedParts::default();
        let several = self.listeners.len() > 1;
        for (listener, group) in self.listeners {
            let addr = listener.local_addr().ok();
            let limits = Limits::webhooks(&self.limits);
            let router = webhook::router(group, limits.clone());
            let stop = stop.clone();
            // Named by address only when several shops listen on different ones.
            let name = match (several, addr) {
                (true, Some(a)) => format!("webhook listener shopify {a}"),
                _ => "webhook listener shopify".to_string(),
            };
            parts.receivers.push((
                name,
                Box::pin(
                    async move {
                        info!(?addr, "Shopify webhook server listening");
                        listener::serve("shopify", listener, router, limits, stop).await;
                    }
                    .instrument(tracing::info_span!("shopify_webhooks")),
                ),
            ));
        }
        for shop in &self.shops {
            if let (true, Some(feed)) = (shop.cfg.domain_events, &self.feed) {
                parts.components.push(Box::new(consume::Mapper {
                    shop: shop.clone(),
                    feed: feed.clone(),
                    fence: Default::default(),
                }));
            }
            if let Some(admin) = &shop.cfg.admin {
                parts.components.push(Box::new(reconcile::Reconciler {
                    admin: admin::AdminClient::new(
                        admin,
                        &format!("shopify.{}.admin", shop.cfg.name),
                    )?,
                    shop: shop.clone(),
                    kv: self.kv.clone(),
                    feed: if shop.cfg.domain_events {
                        self.feed.clone()
                    } else {
                        None
                    },
                    fence: Default::default(),
                }));
            }
        }
        Ok(parts)
    }
}

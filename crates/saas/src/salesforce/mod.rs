//! Salesforce Change Data Capture over the Pub/Sub API (gRPC).
//!
//! ```text
//!  token endpoint ◄─ client credentials ─ Auth (one session per org, refreshed on UNAUTHENTICATED)
//!  Pub/Sub API ◄──── Subscribe per topic ─ TopicStream ──► SAAS_SALESFORCE  saas.salesforce.<feed>.<entity>.<change>
//!                      (flow control,        │  replay id ─► KV tributary_saas  salesforce.<feed>.<topic>
//!                       replay from KV)      └─ gap events ─► REST read-back ─► same stream (READ)
//! ```
//!
//! With `domain_events`, a durable consumer per feed maps the raw stream to `customer` and
//! `order` domain events on `RETAIL` through the shared entity state ([`mapper`]).
//! See `docs/saas-sources.md`.

mod auth;
mod batch;
mod consume;
mod crosswalk;
pub mod envelope;
pub mod mapper;
mod position;
mod readback;
mod subscriber;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{ClientTlsConfig, Endpoint};

use tributary_config::{Config, SalesforceAuth};
use tributary_domain::ExternalFeed;
use tributary_nats::StreamSpec;
use tributary_sfpubsub::jwt::JwtSigner;

use crate::FeedParts;
use crate::SaasError;
use subscriber::Feed;

/// Salesforce keeps change events 72 h; a redelivery can come that late after an outage, so
/// the raw stream drops duplicates for as long.
pub const RAW_DUPLICATE_WINDOW_SECS: u64 = 72 * 3600;

/// The Salesforce CDC feeds' raw streams.
pub fn streams(config: &Config) -> Vec<StreamSpec> {
    let feeds = config
        .salesforce_cdc
        .iter()
        .map(|s| (&s.stream, envelope::feed_wildcard(&s.name)));
    let raw = crate::stream_spec::Raw {
        window: RAW_DUPLICATE_WINDOW_SECS,
        component: "salesforce_cdc",
        name_key: "salesforce_cdc.stream",
    };
    raw.grouped(&config.nats, feeds)
}

/// Every `[[salesforce_cdc]]` feed, ready to run.
pub struct SalesforceCdcSources {
    feeds: Vec<Arc<Feed>>,
    domain: Option<Arc<ExternalFeed>>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks the `[[salesforce_cdc]]` blocks (no I/O).
pub fn validate(config: &Config) -> Result<(), SaasError> {
    let mut names = HashSet::new();
    for (i, s) in config.salesforce_cdc.iter().enumerate() {
        let key = |k: &str| format!("salesforce_cdc[{i}].{k}");
        if !valid_name(&s.name) {
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
        for (k, url) in [("login_url", &s.login_url), ("pubsub_url", &s.pubsub_url)] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SaasError::config(
                    key(k),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        if s.topics.is_empty() {
            return Err(SaasError::config(
                key("topics"),
                "at least one topic is required",
            ));
        }
        let mut seen = HashSet::new();
        for (t, topic) in s.topics.iter().enumerate() {
            let ok = topic == "/data/ChangeEvents"
                || (topic.starts_with("/data/")
                    && topic.ends_with("ChangeEvent")
                    && topic.len() > 17);
            if !ok {
                return Err(SaasError::config(
                    format!("salesforce_cdc[{i}].topics[{t}]"),
                    format!("{topic:?} is not a change event channel (/data/ChangeEvents or /data/<Object>ChangeEvent)"),
                ));
            }
            if !seen.insert(topic) {
                return Err(SaasError::config(
                    format!("salesforce_cdc[{i}].topics[{t}]"),
                    format!("{topic:?} is listed twice"),
                ));
            }
        }
        match s.auth {
            SalesforceAuth::ClientCredentials if s.client_secret.is_none() => {
                return Err(SaasError::config(
                    key("client_secret"),
                    "required with auth = \"client_credentials\"",
                ));
            }
            SalesforceAuth::JwtBearer if s.username.is_none() => {
                return Err(SaasError::config(
                    key("username"),
                    "required with auth = \"jwt_bearer\"",
                ));
            }
            SalesforceAuth::JwtBearer if s.private_key.is_none() => {
                return Err(SaasError::config(
                    key("private_key"),
                    "required with auth = \"jwt_bearer\"",
                ));
            }
            _ => {}
        }
        if s.batch_size == 0 || s.batch_size > 100 {
            return Err(SaasError::config(
                key("batch_size"),
                "must be between 1 and 100 (Salesforce's flow-control cap)",
            ));
        }
        if s.stream.is_empty() || s.stream.contains(['.', '*', '>', ' ']) {
            return Err(SaasError::config(
                key("stream"),
                format!("{:?} is not a stream name", s.stream),
            ));
        }
    }
    Ok(())
}

/// Resolves the secrets of the configured OAuth2 flow.
fn grant(i: usize, cfg: &tributary_config::SalesforceCdcConfig) -> Result<auth::Grant, SaasError> {
    let key = |k: &str| format!("salesforce_cdc[{i}].{k}");
    match cfg.auth {
        SalesforceAuth::ClientCredentials => {
            let secret = cfg
                .client_secret
                .as_ref()
                .ok_or_else(|| {
                    SaasError::config(
                        key("client_secret"),
                        "required with auth = \"client_credentials\"",
                    )
                })?
                .resolve()
                .map_err(|e| SaasError::config(key("client_secret"), e.to_string()))?;
            Ok(auth::Grant::ClientCredentials {
                client_id: cfg.client_id.clone(),
                secret,
            })
        }
        SalesforceAuth::JwtBearer => {
            let username = cfg.username.clone().ok_or_else(|| {
                SaasError::config(key("username"), "required with auth = \"jwt_bearer\"")
            })?;
            let pem = cfg
                .private_key
                .as_ref()
                .ok_or_else(|| {
                    SaasError::config(key("private_key"), "required with auth = \"jwt_bearer\"")
                })?
                .resolve()
                .map_err(|e| SaasError::config(key("private_key"), e.to_string()))?;
            let signer = JwtSigner::new(
                &pem,
                &cfg.client_id,
                &username,
                cfg.login_url.trim_end_matches('/'),
            )
            .map_err(|e| SaasError::config(key("private_key"), e.to_string()))?;
            Ok(auth::Grant::JwtBearer(Box::new(signer)))
        }
    }
}

impl SalesforceCdcSources {
    /// Validates, resolves secrets, provisions the raw streams and the position bucket.
    /// None when no feed is configured.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<Self>, SaasError> {
        if config.salesforce_cdc.is_empty() {
            return Ok(None);
        }
        validate(config)?;
        crate::metrics::describe_salesforce();
        let replicas = config.nats.stream.replicas.unwrap_or(1);
        for spec in streams(config) {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let domain = if config.salesforce_cdc.iter().any(|c| c.domain_events) {
            let domain_cfg = crate::stream_spec::domain_config(config)?;
            let feed =
                ExternalFeed::open(js.clone(), &config.nats, &domain_cfg, "salesforce_cdc").await?;
            Some(Arc::new(feed))
        } else {
            None
        };
        let kv = tributary_nats::kv::open_bucket(
            &js,
            crate::shopify::STATE_BUCKET,
            "Tributary SaaS feeds: reconciliation cursors, Salesforce replay ids",
            "salesforce_cdc",
            replicas,
        )
        .await?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| SaasError::http("HTTP client", e))?;
        let mut feeds = Vec::new();
        for (i, cfg) in config.salesforce_cdc.iter().enumerate() {
            let grant = grant(i, cfg)?;
            let mut endpoint = Endpoint::from_shared(cfg.pubsub_url.clone())
                .map_err(|e| {
                    SaasError::config(format!("salesforce_cdc[{i}].pubsub_url"), e.to_string())
                })?
                .http2_keep_alive_interval(std::time::Duration::from_secs(30))
                .keep_alive_while_idle(true);
            if cfg.pubsub_url.starts_with("https://") {
                endpoint = endpoint
                    .tls_config(ClientTlsConfig::new().with_webpki_roots())
                    .map_err(|e| {
                        SaasError::config(format!("salesforce_cdc[{i}].pubsub_url"), e.to_string())
                    })?;
            }
            feeds.push(Arc::new(Feed {
                auth: auth::Auth::new(&cfg.name, http.clone(), &cfg.login_url, grant),
                channel: endpoint.connect_lazy(),
                js: js.clone(),
                kv: kv.clone(),
                schemas: tokio::sync::Mutex::new(HashMap::new()),
                crosswalk: cfg
                    .external_id_field
                    .as_deref()
                    .map(|field| crosswalk::Crosswalk::new(&cfg.name, field, kv.clone())),
                cfg: cfg.clone(),
            }));
        }
        Ok(Some(SalesforceCdcSources { feeds, domain }))
    }

    /// Runs every subscription and mapper until `stop` (one replica).
    pub async fn run(self, stop: CancellationToken) -> Result<(), SaasError> {
        let stop = stop.child_token();
        self.parts().run(stop).await
    }

    /// One component per subscribed topic (its replay position is single-writer) and one
    /// mapping consumer per feed; no receivers (the Pub/Sub API is pulled).
    pub fn parts(self) -> FeedParts {
        let mut parts = FeedParts::default();
        for feed in &self.feeds {
            for topic in &feed.cfg.topics {
                parts.components.push(Box::new(subscriber::TopicUnit {
                    feed: feed.clone(),
                    topic: topic.clone(),
                    fence: Default::default(),
                }));
            }
            if let (true, Some(domain)) = (feed.cfg.domain_events, &self.domain) {
                parts.components.push(Box::new(consume::Mapper {
                    cfg: feed.cfg.clone(),
                    js: feed.js.clone(),
                    feed: domain.clone(),
                    fence: Default::default(),
                }));
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    fn config(extra: &str) -> String {
        format!(
            "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\n[[salesforce_cdc]]\nname = \"org\"\n\
             login_url = \"https://login.salesforce.com\"\nclient_id = \"id\"\nclient_secret = \"s\"\n{extra}"
        )
    }

    fn error_of(extra: &str) -> String {
        match tributary_config::parse(&config(extra)) {
            Err(e) => e.to_string(),
            Ok(c) => match super::validate(&c) {
                Err(e) => e.to_string(),
                Ok(()) => panic!("expected an error for {extra:?}"),
            },
        }
    }

    #[test]
    fn a_salesforce_block_alone_is_valid_with_defaults() {
        let c = tributary_config::parse(&config("")).expect("valid");
        assert!(super::validate(&c).is_ok());
        let s = &c.salesforce_cdc[0];
        assert_eq!(s.topics, ["/data/ChangeEvents"]);
        assert_eq!(s.batch_size, 100);
        assert_eq!(
            s.on_replay_id_expired,
            tributary_config::ReplayIdExpired::Fail
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error_of("batch_size = 0").contains("salesforce_cdc[0].batch_size"));
        assert!(error_of("batch_size = 101").contains("salesforce_cdc[0].batch_size"));
        assert!(error_of("topics = [\"/topic/Foo\"]").contains("salesforce_cdc[0].topics[0]"));
        assert!(error_of("pubsub_url = \"grpc://x\"").contains("salesforce_cdc[0].pubsub_url"));
        assert!(error_of("on_replay_id_expired = \"skip\"").contains("on_replay_id_expired"));
        assert!(error_of("unknown_key = 1").contains("unknown_key"));
        assert!(error_of("auth = \"jwt_bearer\"").contains("salesforce_cdc[0].username"));
        assert!(error_of("auth = \"jwt_bearer\"\nusername = \"u\"")
            .contains("salesforce_cdc[0].private_key"));
    }
}

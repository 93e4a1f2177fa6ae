//! SaaS change feeds: `[[shopify]]` webhook sources, `[[salesforce_cdc]]` Change Data
//! Capture subscriptions and `[[wms]]` lifecycle webhooks
//! (validated by `tributary-saas` at start-up).
//!
//! ```toml
//! [[shopify]]
//! name = "web"                                   # subject token, part of every id
//! shop_domain = "acme.myshopify.com"
//! listen = "0.0.0.0:8088"                        # POST /webhooks/shopify/web (default 127.0.0.1)
//! webhook_secret = { env = "SHOPIFY_WEBHOOK_SECRET" }
//! [shopify.admin]                                # optional: reconciliation poll
//! url = "https://acme.myshopify.com"
//! access_token = { env = "SHOPIFY_ADMIN_TOKEN" }
//!
//! [[wms]]                                        # the WMS's lifecycle webhooks (one feed for now)
//! listen = "0.0.0.0:8089"                        # POST /webhooks/wms (default 127.0.0.1:8089)
//! secret = { env = "WMS_WEBHOOK_SECRET" }
//! ```

use serde::Deserialize;

use crate::Secret;

/// One Shopify shop whose webhooks Tributary receives (`[[shopify]]`; docs/saas-sources.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifySourceConfig {
    /// Source name: letters, digits, `_` and `-`; the webhook path is `/webhooks/shopify/<name>`.
    pub name: String,
    /// `X-Shopify-Shop-Domain` the webhooks must carry (checked when set).
    #[serde(default)]
    pub shop_domain: Option<String>,
    /// Address of the webhook HTTP server; shops sharing an address share one server.
    /// Loopback by default: exposing it (`0.0.0.0:8088`) is an explicit choice (docs/security.md).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The app's client secret: `X-Shopify-Hmac-Sha256` is verified with it. At least 16
    /// bytes with 8 different characters (checked at load; docs/security.md).
    pub webhook_secret: Secret,
    /// JetStream stream of the raw webhook events (`saas.shopify.<name>.<topic>`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// `system_of_record` of the domain events.
    #[serde(default = "default_system")]
    pub system: String,
    /// Map the topics to `tributary.retail.v1` domain events (stream and KV of `[domain]`).
    #[serde(default = "default_true")]
    pub domain_events: bool,
    /// Admin API access for the reconciliation poll; none: webhooks only.
    #[serde(default)]
    pub admin: Option<ShopifyAdminConfig>,
}

/// `[[wms]]`: the endpoint receiving the WMS's Standard-Webhooks-signed lifecycle webhooks
/// (allocated, shipped, delivered, exception, cancelled), mapped to `fulfillment.updated` domain
/// events (docs/saas-sources.md, "WMS webhooks"). Headers: `webhook-id`, `webhook-timestamp`,
/// `webhook-signature: v1,<base64 HMAC-SHA256>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WmsWebhookSourceConfig {
    /// Address of the webhook HTTP server (its own listener); loopback by default.
    #[serde(default = "default_wms_webhook_listen")]
    pub listen: String,
    /// Path the WMS posts to; must start with `/`.
    #[serde(default = "default_wms_webhook_path")]
    pub path: String,
    /// The signing secret shared with the WMS: `webhook-signature` is verified with it.
    /// A `whsec_` prefix (Standard Webhooks) is taken as base64 of the key bytes. At least 16
    /// bytes with 8 different characters (checked at load; docs/security.md).
    pub secret: Secret,
    /// JetStream stream of the raw webhooks (`saas.wms.<event type>`), stored before the 200.
    #[serde(default = "default_wms_webhook_stream")]
    pub stream: String,
    /// `system_of_record` of the fulfillment events.
    #[serde(default = "default_wms_webhook_system")]
    pub system: String,
    /// Deliveries whose `webhook-timestamp` is further than this from now are refused
    /// (replay protection); 0 turns the check off.
    #[serde(default = "default_wms_webhook_tolerance")]
    pub timestamp_tolerance_secs: u64,
}

/// `[webhook_server]`: limits of every webhook listener (the Shopify and WMS ones), so that
/// unauthenticated requests cannot hold connections, memory or the runtime (docs/security.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookServerConfig {
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection is kept.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Time a client has to send a request's whole body once its headers are in.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Largest accepted body; a larger `Content-Length` is refused (413) before reading, a
    /// chunked body is cut off at this size.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Bytes of request bodies beyond the first 64 KiB of each that one listener buffers at
    /// once; requests past it wait (within `body_timeout_ms`).
    #[serde(default = "default_body_memory_bytes")]
    pub body_memory_bytes: usize,
    /// Open connections per listener; more are answered 503 and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for WebhookServerConfig {
    fn default() -> Self {
        WebhookServerConfig {
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            max_body_bytes: default_max_body_bytes(),
            body_memory_bytes: default_body_memory_bytes(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_body_timeout_ms() -> u64 {
    10_000
}
fn default_max_body_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_body_memory_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_max_connections() -> usize {
    256
}

/// Admin GraphQL API used by the reconciliation poll ("updated since" the stored cursor).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyAdminConfig {
    /// Base URL, e.g. `https://acme.myshopify.com`.
    pub url: String,
    /// `X-Shopify-Access-Token`.
    pub access_token: Secret,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Seconds between polls.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_secs: u64,
    /// Records updated in the last this-many seconds are left to their webhooks (next poll).
    #[serde(default = "default_reconcile_lag")]
    pub reconcile_lag_secs: u64,
    /// Records per page (Shopify: at most 250).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Seconds between inventory sweeps (every location's levels read, those updated since
    /// the last sweep recovered); inventory levels have no "updated since" search. 0: none.
    #[serde(default = "default_inventory_sweep_interval")]
    pub inventory_sweep_interval_secs: u64,
}

/// One Salesforce org whose Change Data Capture events Tributary reads over the Pub/Sub API
/// (`[[salesforce_cdc]]`; docs/saas-sources.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceCdcConfig {
    /// Source name: letters, digits, `_` and `-`; part of subjects, ids and KV keys.
    pub name: String,
    /// Where the token is requested (`<login_url>/services/oauth2/token`): the org's My Domain
    /// URL or `https://login.salesforce.com`. Read-backs go to the token's `instance_url`.
    pub login_url: String,
    /// Consumer key of the connected app.
    pub client_id: String,
    /// `client_credentials` (consumer key and secret) or `jwt_bearer` (an RS256 assertion
    /// signed with `private_key` for `username`; the connected app holds the certificate).
    #[serde(default)]
    pub auth: SalesforceAuth,
    /// Consumer secret of the connected app (`auth = "client_credentials"`).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// User the JWT bearer assertion is issued for (`sub`; `auth = "jwt_bearer"`).
    #[serde(default)]
    pub username: Option<String>,
    /// PEM private key (PKCS#8 or PKCS#1 RSA) signing the assertion (`auth = "jwt_bearer"`).
    #[serde(default)]
    pub private_key: Option<Secret>,
    /// Pub/Sub API endpoint (gRPC over HTTP/2; `https://` uses TLS with the webpki roots).
    #[serde(default = "default_pubsub_url")]
    pub pubsub_url: String,
    /// Channels to subscribe to, one Subscribe stream each: `/data/ChangeEvents` or
    /// `/data/<Object>ChangeEvent`. Do not list an object both ways (its events would be
    /// stored twice under different ids).
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Events requested per FetchRequest (flow control; Salesforce allows at most 100).
    #[serde(default = "default_sf_batch")]
    pub batch_size: u32,
    /// Changes whose `changeOrigin` carries `client=<this>` are the bridge's own writes
    /// (the Salesforce sink's `call_options_client`) and are dropped. Unset: none dropped.
    #[serde(default)]
    pub echo_client_id: Option<String>,
    /// Where a topic without a stored replay id starts: `latest` (new events only) or
    /// `earliest` (everything Salesforce still retains, up to 72 h).
    #[serde(default)]
    pub initial_position: SalesforceStart,
    /// What to do when the stored replay id is past Salesforce's retention: `fail` (stop the
    /// bridge with a message; the operator decides), `earliest` (re-read everything retained)
    /// or `latest` (skip to new events; the changes in between are lost).
    #[serde(default)]
    pub on_replay_id_expired: ReplayIdExpired,
    /// JetStream stream of the raw change events (`saas.salesforce.<name>.<object>.<change>`).
    #[serde(default = "default_sf_stream")]
    pub stream: String,
    /// REST API version of the record read-backs after gap events.
    #[serde(default = "default_sf_api_version")]
    pub api_version: String,
    /// A `GAP_OVERFLOW` event (a transaction of more than 100,000 changes) names no records:
    /// the records of its entity with `SystemModstamp` in the last this-many seconds before the
    /// event's commit are re-read through REST.
    #[serde(default = "default_sf_overflow_lookback")]
    pub overflow_lookback_secs: u64,
    /// `system_of_record` of the domain events.
    #[serde(default = "default_sf_system")]
    pub system: String,
    /// The external id field the Salesforce sink writes entity keys to (its
    /// `external_id_field`, e.g. `External_Id__c`). Set: a change that carries it (the
    /// bridge's own echoes included, read before they are dropped) records `record id → key`
    /// in KV, and the record's later changes map to that entity's key instead of
    /// `SF-<record id>`, so an agent's edit of a bridge-written Contact updates the ERP's
    /// customer. Unset: keys are `SF-<record id>`.
    #[serde(default)]
    pub external_id_field: Option<String>,
    /// Map Contact/Account to `customer` and Order to `order` domain events (stream and KV of
    /// `[domain]`).
    #[serde(default = "default_true")]
    pub domain_events: bool,
}

/// `auth` of `[[salesforce_cdc]]`: the OAuth2 flow that obtains the access token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SalesforceAuth {
    #[default]
    ClientCredentials,
    JwtBearer,
}

/// First position of a topic with no stored replay id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SalesforceStart {
    #[default]
    Latest,
    Earliest,
}

/// `on_replay_id_expired` of `[[salesforce_cdc]]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayIdExpired {
    #[default]
    Fail,
    Earliest,
    Latest,
}

fn default_pubsub_url() -> String {
    "https://api.pubsub.salesforce.com:7443".into()
}
fn default_topics() -> Vec<String> {
    vec!["/data/ChangeEvents".into()]
}
fn default_sf_batch() -> u32 {
    100
}
fn default_sf_stream() -> String {
    "SAAS_SALESFORCE".into()
}
fn default_sf_system() -> String {
    "salesforce".into()
}
fn default_sf_api_version() -> String {
    "62.0".into()
}
fn default_listen() -> String {
    "127.0.0.1:8088".into()
}
fn default_stream() -> String {
    "SAAS_SHOPIFY".into()
}
fn default_system() -> String {
    "shopify".into()
}
fn default_true() -> bool {
    true
}
fn default_api_version() -> String {
    "2025-10".into()
}
fn default_reconcile_interval() -> u64 {
    60
}
fn default_reconcile_lag() -> u64 {
    30
}
fn default_page_size() -> u32 {
    100
}
fn default_inventory_sweep_interval() -> u64 {
    3600
}
fn default_sf_overflow_lookback() -> u64 {
    3600
}
fn default_wms_webhook_listen() -> String {
    "127.0.0.1:8089".into()
}
fn default_wms_webhook_path() -> String {
    "/webhooks/wms".into()
}
fn default_wms_webhook_stream() -> String {
    "SAAS_WMS".into()
}
fn default_wms_webhook_system() -> String {
    "wms".into()
}
fn default_wms_webhook_tolerance() -> u64 {
    300
}

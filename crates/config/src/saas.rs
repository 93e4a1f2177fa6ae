//! SaaS change feeds: `[[shopify]]` webhook sources (validated by `tributary-saas` at start-up).
//!
//! ```toml
//! [[shopify]]
//! name = "web"                                   # subject token, part of every id
//! shop_domain = "acme.myshopify.com"
//! listen = "0.0.0.0:8088"                        # POST /webhooks/shopify/web
//! webhook_secret = { env = "SHOPIFY_WEBHOOK_SECRET" }
//! [shopify.admin]                                # optional: reconciliation poll
//! url = "https://acme.myshopify.com"
//! access_token = { env = "SHOPIFY_ADMIN_TOKEN" }
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
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The app's client secret: `X-Shopify-Hmac-Sha256` is verified with it.
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

fn default_listen() -> String {
    "0.0.0.0:8088".into()
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

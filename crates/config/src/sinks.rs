//! Sink workers: apply domain events (stream `RETAIL`) to target systems.
//!
//! ```toml
//! [sinks]
//! dead_letter_stream = "DLQ_SINKS"
//! [sinks.wms]
//! base_url = "https://wms.example.com"
//! api_key = { env = "WMS_API_KEY" }
//! [sinks.shopify]
//! base_url = "https://shop.myshopify.com"
//! access_token = { env = "SHOPIFY_TOKEN" }
//! locations = { DC1 = "gid://shopify/Location/1" }
//! [sinks.salesforce]
//! base_url = "https://mycompany.my.salesforce.com"
//! client_id = "3MVG9…"
//! client_secret = { env = "SF_CLIENT_SECRET" }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{ErpSinkConfig, Secret};

/// `[sinks]`: shared settings and one table per target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Stream holding the domain events the sinks consume.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subject prefix of the domain events (`<prefix>.<entity>.<event>`).
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Partitions of the domain events by entity key (1 – 256): each sink runs one durable
    /// consumer per partition (`tributary-sink-<sink>-p07`), each a work unit under `[ha]`
    /// (docs/ha.md, "Partitioned sinks"). Must equal `domain.partitions`, which makes the
    /// publishers put the partition in the subject. 1: one consumer per sink
    /// (`tributary-sink-<sink>`).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Events a target refused for good go here, on `dlq.sink.<sink>`.
    #[serde(default = "default_dead_letter_stream")]
    pub dead_letter_stream: String,
    /// KV bucket with the last entity version applied per sink and entity (the version guard).
    #[serde(default = "default_state_bucket")]
    pub state_bucket: String,
    #[serde(default)]
    pub wms: Option<WmsSinkConfig>,
    #[serde(default)]
    pub shopify: Option<ShopifySinkConfig>,
    #[serde(default)]
    pub salesforce: Option<SalesforceSinkConfig>,
    #[serde(default)]
    pub erp: Option<ErpSinkConfig>,
}

/// Delivery settings common to every sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkDelivery {
    /// Parallel lanes; events are partitioned by entity key, so one entity's events apply in
    /// order while different entities apply in parallel.
    #[serde(default = "default_lanes")]
    pub lanes: usize,
    /// First retry delay after a transient failure; doubles up to `max_backoff_ms` (with jitter).
    #[serde(default = "default_min_backoff_ms")]
    pub min_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Timeout of one HTTP request to the target.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// After an event of an entity is dead-lettered, its later events either `continue`
    /// (the newest state wins; a redriven older event is then stale and skipped) or `hold`
    /// (they are parked behind it, in order, until it is redriven and applies).
    #[serde(default)]
    pub on_dead_letter: AfterDeadLetter,
    /// An event that needs another entity's event first (a Shopify fulfilment whose order
    /// the sink has no record of yet) is handed back to JetStream and redelivered after this
    /// delay, while the lane goes on with other events.
    #[serde(default = "default_wait_retry_ms")]
    pub wait_retry_ms: u64,
    /// How long such an event waits for the other entity's event before it is dead-lettered
    /// with the reason (counted from the first attempt this process made).
    #[serde(default = "default_max_wait_secs")]
    pub max_wait_secs: u64,
}

/// What happens to an entity's later events once one of its events is dead-lettered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterDeadLetter {
    #[default]
    Continue,
    Hold,
}

impl Default for SinkDelivery {
    fn default() -> Self {
        Self {
            lanes: default_lanes(),
            min_backoff_ms: default_min_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            on_dead_letter: AfterDeadLetter::default(),
            wait_retry_ms: default_wait_retry_ms(),
            max_wait_secs: default_max_wait_secs(),
        }
    }
}

/// `[sinks.wms]`: fulfilment orders in the WMS from order events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WmsSinkConfig {
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Secret,
    /// Order statuses that release an order to the warehouse (`POST /orders` with the lines
    /// collected so far).
    #[serde(default = "default_release_statuses")]
    pub release_statuses: Vec<String>,
    /// Order statuses that cancel the order in the warehouse.
    #[serde(default = "default_cancel_statuses")]
    pub cancel_statuses: Vec<String>,
    #[serde(default = "default_shipping_method")]
    pub shipping_method: String,
    /// The location code (`InventoryLevel.location`) of this warehouse: the ERP's stock
    /// changes there become `POST /inventory/adjustments` of the difference (levels the WMS
    /// itself reported are not sent back). None: stock is not sent to the WMS.
    #[serde(default)]
    pub inventory_location: Option<String>,
    /// Announce the ERP's customer returns (`return.created`) to the warehouse as expected
    /// receipts (`POST /returns`), so that the goods can be received against them.
    #[serde(default = "default_true")]
    pub announce_returns: bool,
    /// `[sinks.<name>.delivery]`.
    #[serde(default)]
    pub delivery: SinkDelivery,
    /// `[sinks.<name>.priority]`: which entities go first under pressure.
    #[serde(default)]
    pub priority: crate::SinkPriority,
    /// Deprecated: the WMS lifecycle webhooks are a source, configured as `[[wms]]`. Still
    /// read (with a warning naming `[[wms]]`) for one release.
    #[serde(default)]
    pub webhooks: Option<crate::WmsWebhookSourceConfig>,
}

/// `[sinks.shopify]`: inventory levels via Admin GraphQL `inventorySetQuantities`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifySinkConfig {
    /// `https://<shop>.myshopify.com`.
    pub base_url: String,
    /// `X-Shopify-Access-Token`.
    pub access_token: Secret,
    #[serde(default = "default_shopify_api_version")]
    pub api_version: String,
    /// Location code of the events (`InventoryLevel.location`) → Shopify location GID.
    /// Levels at locations not listed are not sent.
    #[serde(default)]
    pub locations: BTreeMap<String, String>,
    /// Which quantity is set: `available` (on hand − reserved) or `on_hand`.
    #[serde(default = "default_quantity_name")]
    pub quantity_name: String,
    /// What the sink writes: `inventory` (inventorySetQuantities), `orders` (ERP status and
    /// payment state as `erp_*` custom attributes via orderUpdate, for orders that carry a
    /// `shopify` external id), `fulfillments` (fulfillmentCreate with tracking when the WMS
    /// ships such an order), `prices` (variant prices of `price_list`), `customers`
    /// (customerCreate / customerUpdate).
    #[serde(default = "default_shopify_apply")]
    pub apply: Vec<String>,
    /// The ERP price list whose prices are the storefront's (needed for `prices`).
    #[serde(default)]
    pub price_list: Option<String>,
    /// Whether Shopify e-mails the customer when a fulfilment is created.
    #[serde(default = "default_true")]
    pub notify_customer: bool,
    /// With `orders`: an ERP cancellation (status `cancelled`) of a storefront order cancels it
    /// in Shopify too (`orderCancel`, restocking, no refund: money stays with the payment
    /// flow). Off by default: a cancellation cannot be undone in Shopify.
    #[serde(default)]
    pub cancel_orders: bool,
    /// Inventory events per GraphQL document (1 – 100): the levels that lanes set at the same
    /// time go out as one document of aliased `inventorySetQuantities` fields, each with its
    /// own event's `@idempotent` key (10 cost points per field: 100 is Shopify's single-query
    /// maximum of 1000); 1 sends one document per event. Above 1 the sink runs at least
    /// 2 × `batch_size` lanes (capped at 256).
    #[serde(default = "default_shopify_batch_size")]
    pub batch_size: usize,
    /// How long the first inventory event of a document waits for others (ms).
    #[serde(default = "default_shopify_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// `[sinks.<name>.delivery]`.
    #[serde(default)]
    pub delivery: SinkDelivery,
    /// `[sinks.<name>.priority]`: which entities go first under pressure.
    #[serde(default)]
    pub priority: crate::SinkPriority,
}

/// `[sinks.salesforce]`: customers, orders (status, tracking) and returns upserted by external
/// id through the REST API (sObject Collections, OAuth2 client credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceSinkConfig {
    /// Where the token is requested (`<base_url>/services/oauth2/token`): the org's My Domain
    /// URL or `https://login.salesforce.com`. Data calls go to the token's `instance_url`.
    pub base_url: String,
    /// Consumer key of the connected app (`iss` of a JWT bearer assertion).
    pub client_id: String,
    /// Consumer secret: OAuth2 client credentials flow. Either this or `jwt_private_key`.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// PEM private key (PKCS#8 or PKCS#1 RSA) of the connected app's certificate: OAuth2
    /// JWT bearer flow (RS256 assertion, `iss` = client_id, `sub` = `jwt_username`).
    #[serde(default)]
    pub jwt_private_key: Option<Secret>,
    /// The integration user the JWT bearer token acts as.
    #[serde(default)]
    pub jwt_username: Option<String>,
    /// `aud` of the assertion: `https://login.salesforce.com` (default), `https://test.salesforce.com`
    /// for sandboxes, or the My Domain URL.
    #[serde(default = "default_jwt_audience")]
    pub jwt_audience: String,
    /// Where customers go: `Contact` (default) or `PersonAccount` (Account with person fields,
    /// for B2C orgs with person accounts enabled).
    #[serde(default = "default_customer_object")]
    pub customer_object: String,
    /// REST API version without the `v` (`62.0`).
    #[serde(default = "default_salesforce_api_version")]
    pub api_version: String,
    /// External id field used on every object (Contact, Order, Case).
    #[serde(default = "default_external_id_field")]
    pub external_id_field: String,
    /// `client=` of the `Sforce-Call-Options` header sent on every write; it comes back in
    /// CDC events' `changeOrigin`, so a Salesforce source can drop the bridge's own echoes.
    /// Default: `client_id`.
    #[serde(default)]
    pub call_options_client: Option<String>,
    /// Records per sObject Collections request (1 – 200); 1 sends single upserts
    /// (`PATCH …/sobjects/<Object>/<field>/<value>`).
    #[serde(default = "default_salesforce_batch_size")]
    pub batch_size: usize,
    /// The longest a record waits for others to join its batch (ms). A batch leaves earlier
    /// when it holds `batch_size` records or, under a backlog, as soon as no request is in
    /// flight and no lane can add a record (live events, which may come to an idle lane at any
    /// moment, wait for this).
    #[serde(default = "default_salesforce_batch_linger_ms")]
    pub batch_linger_ms: u64,
    /// The access token is renewed after this age even without a 401 (client credentials
    /// answers carry no expiry; keep it below the org's session timeout).
    #[serde(default = "default_salesforce_token_max_age_secs")]
    pub token_max_age_secs: u64,
    /// Fraction of the daily API limit (`Sforce-Limit-Info`) the sink may use; above it the
    /// sink pauses (throttled) and probes once a minute, leaving the rest to other clients.
    #[serde(default = "default_salesforce_api_usage_ceiling")]
    pub api_usage_ceiling: f64,
    /// ERP order status → Salesforce `Order.Status` picklist value; unmapped statuses are
    /// sent as they are.
    #[serde(default)]
    pub order_status_map: BTreeMap<String, String>,
    /// `[sinks.<name>.delivery]`.
    #[serde(default)]
    pub delivery: SinkDelivery,
    /// `[sinks.<name>.priority]`: which entities go first under pressure.
    #[serde(default)]
    pub priority: crate::SinkPriority,
}

impl SinksConfig {
    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(crate::ConfigError::invalid(
                "sinks.partitions",
                format!("must be between 1 and {MAX_PARTITIONS}"),
            ));
        }
        let check = |key: &str, d: &SinkDelivery| {
            if d.lanes == 0 || d.lanes > 256 {
                return Err(crate::ConfigError::invalid(
                    format!("sinks.{key}.lanes"),
                    "must be between 1 and 256",
                ));
            }
            if d.min_backoff_ms == 0 || d.max_backoff_ms < d.min_backoff_ms {
                return Err(crate::ConfigError::invalid(
                    format!("sinks.{key}.max_backoff_ms"),
                    "min_backoff_ms must be > 0 and max_backoff_ms >= min_backoff_ms",
                ));
            }
            if d.wait_retry_ms == 0 {
                return Err(crate::ConfigError::invalid(
                    format!("sinks.{key}.delivery.wait_retry_ms"),
                    "must be > 0",
                ));
            }
            Ok(())
        };
        if let Some(w) = &self.wms {
            check("wms", &w.delivery)?;
            w.priority.validate("wms")?;
        }
        if let Some(e) = &self.erp {
            check("erp", &e.delivery)?;
            e.priority.validate("erp")?;
            e.validate()?;
        }
        if let Some(s) = &self.shopify {
            check("shopify", &s.delivery)?;
            s.priority.validate("shopify")?;
            if !matches!(s.quantity_name.as_str(), "available" | "on_hand") {
                return Err(crate::ConfigError::invalid(
                    "sinks.shopify.quantity_name",
                    "must be \"available\" or \"on_hand\"",
                ));
            }
            if let Some(bad) = s
                .apply
                .iter()
                .find(|a| !SHOPIFY_APPLY.contains(&a.as_str()))
            {
                return Err(crate::ConfigError::invalid(
                    "sinks.shopify.apply",
                    format!("unknown {bad:?} (one of: {})", SHOPIFY_APPLY.join(", ")),
                ));
            }
            if s.batch_size == 0 || s.batch_size > 100 {
                return Err(crate::ConfigError::invalid(
                    "sinks.shopify.batch_size",
                    "must be between 1 and 100 (10 cost points per field; 1000 is the single query maximum)",
                ));
            }
            if s.apply.iter().any(|a| a == "prices") && s.price_list.is_none() {
                return Err(crate::ConfigError::invalid(
                    "sinks.shopify.price_list",
                    "missing: `apply` lists \"prices\", so the sink needs the storefront's price list",
                ));
            }
        }
        if let Some(sf) = &self.salesforce {
            check("salesforce", &sf.delivery)?;
            sf.priority.validate("salesforce")?;
            if sf.batch_size == 0 || sf.batch_size > 200 {
                return Err(crate::ConfigError::invalid(
                    "sinks.salesforce.batch_size",
                    "must be between 1 and 200 (the sObject Collections limit)",
                ));
            }
            if !(sf.api_usage_ceiling > 0.0 && sf.api_usage_ceiling <= 1.0) {
                return Err(crate::ConfigError::invalid(
                    "sinks.salesforce.api_usage_ceiling",
                    "must be in (0, 1]",
                ));
            }
            match (&sf.client_secret, &sf.jwt_private_key) {
                (Some(_), Some(_)) => {
                    return Err(crate::ConfigError::invalid(
                        "sinks.salesforce.jwt_private_key",
                        "set either client_secret (client credentials) or jwt_private_key (JWT bearer), not both",
                    ))
                }
                (None, None) => {
                    return Err(crate::ConfigError::invalid(
                        "sinks.salesforce.client_secret",
                        "missing: set client_secret (client credentials) or jwt_private_key and jwt_username (JWT bearer)",
                    ))
                }
                (None, Some(_)) if sf.jwt_username.as_deref().is_none_or(str::is_empty) => {
                    return Err(crate::ConfigError::invalid(
                        "sinks.salesforce.jwt_username",
                        "missing: the JWT bearer flow needs the user the token acts as",
                    ))
                }
                _ => {}
            }
            if !matches!(sf.customer_object.as_str(), "Contact" | "PersonAccount") {
                return Err(crate::ConfigError::invalid(
                    "sinks.salesforce.customer_object",
                    "must be \"Contact\" or \"PersonAccount\"",
                ));
            }
            if sf.token_max_age_secs == 0 {
                return Err(crate::ConfigError::invalid(
                    "sinks.salesforce.token_max_age_secs",
                    "must be > 0",
                ));
            }
        }
        Ok(())
    }
}

fn default_salesforce_api_version() -> String {
    "62.0".into()
}
fn default_external_id_field() -> String {
    "External_Id__c".into()
}
fn default_salesforce_batch_size() -> usize {
    200
}
fn default_salesforce_batch_linger_ms() -> u64 {
    20
}
fn default_salesforce_token_max_age_secs() -> u64 {
    3600
}
fn default_salesforce_api_usage_ceiling() -> f64 {
    0.9
}

fn default_partitions() -> u32 {
    1
}
fn default_stream() -> String {
    "RETAIL".into()
}
fn default_subject_prefix() -> String {
    "retail.v1".into()
}
fn default_dead_letter_stream() -> String {
    "DLQ_SINKS".into()
}
fn default_state_bucket() -> String {
    "tributary_sinks".into()
}
fn default_lanes() -> usize {
    8
}
fn default_min_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_wait_retry_ms() -> u64 {
    2_000
}
fn default_max_wait_secs() -> u64 {
    600
}
fn default_release_statuses() -> Vec<String> {
    vec!["confirmed".into()]
}
fn default_cancel_statuses() -> Vec<String> {
    vec!["cancelled".into()]
}
fn default_shipping_method() -> String {
    "standard".into()
}
fn default_shopify_batch_size() -> usize {
    50
}
fn default_shopify_batch_linger_ms() -> u64 {
    2
}
fn default_shopify_api_version() -> String {
    "2026-04".into()
}
fn default_quantity_name() -> String {
    "available".into()
}
fn default_shopify_apply() -> Vec<String> {
    ["inventory", "orders", "fulfillments"]
        .map(String::from)
        .to_vec()
}
/// The most partitions of the domain events (`sinks.partitions`, `domain.partitions`).
pub const MAX_PARTITIONS: u32 = 256;
/// What `[sinks.shopify] apply` can list.
pub const SHOPIFY_APPLY: &[&str] = &["inventory", "orders", "fulfillments", "prices", "customers"];
fn default_true() -> bool {
    true
}
fn default_jwt_audience() -> String {
    "https://login.salesforce.com".into()
}
fn default_customer_object() -> String {
    "Contact".into()
}

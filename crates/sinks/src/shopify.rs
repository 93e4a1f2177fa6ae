//! Shopify target through the Admin GraphQL API: inventory levels, the ERP's order status,
//! fulfilments with tracking, prices and customers (`[sinks.shopify] apply` picks which).
//!
//! ```text
//!  inventory.level_changed ─► location code → location GID (config), SKU → inventory item
//!     (cached from the `products` connection) ─► inventorySetQuantities @idempotent
//!  order.*       (with external id `shopify`) ─► link recorded; erp_* custom attributes via
//!                orderUpdate (other attributes kept)
//!  fulfillment.* (shipped, order linked)      ─► fulfillmentCreate @idempotent with tracking
//!  price.*       (of `price_list`)            ─► productVariantsBulkUpdate (variant price)
//!  customer.*    ─► linked customer, else found by e-mail, else customerCreate @idempotent
//!                   ─► customerUpdate
//!     every request ─► cost bucket pacing ─► userErrors? dead letter : confirmed
//! ```
//!
//! Absolute values everywhere (the ERP owns stock and prices, `changeFromQuantity: null`):
//! the last event of an entity wins, which the version guard and per-entity lanes make the
//! newest one; writes that already took effect (a fulfilment with the same tracking number,
//! unchanged attributes) are recognised and not repeated.
//! Pacing: every answer's `throttleStatus` is remembered; before a request the sink waits
//! until the bucket has refilled enough for it, so it slows down before Shopify throttles.

mod catalog;
mod customers;
mod orders;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tributary_config::ShopifySinkConfig;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

use crate::http;
use crate::state::{EntityRecord, StateStore};
use crate::target::Outcome;
use crate::{metrics as m, ApplyError, SinkError};

const MUTATION_COST: f64 = 10.0;
const SKU_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct ShopifyTarget {
    cfg: ShopifySinkConfig,
    token: String,
    url: String,
    client: reqwest::Client,
    bucket: Mutex<Option<Bucket>>,
    items: tokio::sync::Mutex<SkuCache>,
    /// Where order events leave the order's Shopify GID for its fulfilments.
    state: StateStore,
}

#[derive(Clone, Copy)]
struct Bucket {
    available: f64,
    maximum: f64,
    restore_rate: f64,
    at: Instant,
}

#[derive(Default)]
struct SkuCache {
    items: HashMap<String, Variant>,
    refreshed: Option<Instant>,
}

/// What Shopify knows a SKU as.
#[derive(Clone, Debug)]
struct Variant {
    id: String,
    product: String,
    inventory_item: String,
}

impl ShopifyTarget {
    pub fn new(cfg: &ShopifySinkConfig, state: StateStore) -> Result<Self, SinkError> {
        let token = cfg
            .access_token
            .resolve()
            .map_err(|e| SinkError::config("sinks.shopify.access_token", e.to_string()))?;
        Ok(ShopifyTarget {
            url: format!(
                "{}/admin/api/{}/graphql.json",
                cfg.base_url.trim_end_matches('/'),
                cfg.api_version
            ),
            client: http::client(Duration::from_millis(cfg.delivery.request_timeout_ms))?,
            cfg: cfg.clone(),
            token,
            bucket: Mutex::new(None),
            items: tokio::sync::Mutex::new(SkuCache::default()),
            state,
        })
    }

    /// Order events are read for `fulfillments` too: they carry the link to Shopify's order.
    pub fn filter_subjects(cfg: &ShopifySinkConfig, prefix: &str) -> Vec<String> {
        let wants = |what: &str| cfg.apply.iter().any(|a| a == what);
        let mut out = Vec::new();
        if wants("inventory") {
            out.push(format!("{prefix}.inventory.level_changed"));
        }
        if wants("orders") || wants("fulfillments") {
            out.push(format!("{prefix}.order.>"));
        }
        for (what, entity) in [
            ("fulfillments", "fulfillment"),
            ("prices", "price"),
            ("customers", "customer"),
        ] {
            if wants(what) {
                out.push(format!("{prefix}.{entity}.>"));
            }
        }
        out
    }

    fn applies(&self, what: &str) -> bool {
        self.cfg.apply.iter().any(|a| a == what)
    }

    pub async fn apply(
        &self,
        event: &DomainEvent,
        record: &mut EntityRecord,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        match &event.entity {
            Some(Entity::Inventory(_)) if self.applies("inventory") => {
                self.set_stock(event, idempotency_key).await
            }
            Some(Entity::Order(order)) => self.apply_order(order, record).await,
            Some(Entity::Fulfillment(f)) if self.applies("fulfillments") => {
                self.create_fulfillment(f, idempotency_key).await
            }
            Some(Entity::Price(price)) if self.applies("prices") => self.set_price(price).await,
            Some(Entity::Customer(c)) if self.applies("customers") => {
                self.upsert_customer(c, record, idempotency_key).await
            }
            _ => Ok(Outcome::Ignored("not applied to Shopify")),
        }
    }

    async fn set_stock(
        &self,
        event: &DomainEvent,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        let Some(Entity::Inventory(level)) = &event.entity else {
            return Ok(Outcome::Ignored("not an inventory event"));
        };
        let Some(location) = self.cfg.locations.get(&level.location) else {
            return Ok(Outcome::Ignored("location not mapped"));
        };
        let item = self.variant(&level.sku).await?.inventory_item;
        let quantity = if self.cfg.quantity_name == "on_hand" {
            level.on_hand
        } else if level.available != 0 {
            level.available
        } else {
            level.on_hand - level.reserved
        };
        let event_id = event
            .meta
            .as_ref()
            .map(|m| m.event_id.as_str())
            .unwrap_or("");
        let query = format!(
            "mutation SetStock($input: InventorySetQuantitiesInput!) {{ inventorySetQuantities(input: $input) @idempotent(key: {}) {{ inventoryAdjustmentGroup {{ id }} userErrors {{ field message code }} }} }}",
            quoted(idempotency_key)
        );
        let variables = json!({"input": {
            "name": self.cfg.quantity_name,
            "reason": "correction",
            "referenceDocumentUri": format!("tributary://event/{event_id}"),
            "quantities": [{"inventoryItemId": item, "locationId": location, "quantity": quantity, "changeFromQuantity": null}],
        }});
        let data = self.graphql(&query, variables, MUTATION_COST).await?;
        user_errors(&data["inventorySetQuantities"])?;
        Ok(Outcome::Applied)
    }

    /// What Shopify knows a SKU as; on a miss the cache is refreshed (at most every few
    /// seconds); a SKU Shopify does not know is a definite error.
    async fn variant(&self, sku: &str) -> Result<Variant, ApplyError> {
        let mut cache = self.items.lock().await;
        if let Some(item) = cache.items.get(sku) {
            return Ok(item.clone());
        }
        if cache
            .refreshed
            .is_none_or(|t| t.elapsed() >= SKU_REFRESH_MIN_INTERVAL)
        {
            cache.items = self.load_items().await?;
            cache.refreshed = Some(Instant::now());
        }
        cache.items.get(sku).cloned().ok_or_else(|| {
            ApplyError::definite(
                format!("unknown SKU {sku:?}"),
                "no product variant in Shopify has this SKU",
            )
        })
    }

    async fn load_items(&self) -> Result<HashMap<String, Variant>, ApplyError> {
        let mut items = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let query = "query Items($after: String) { products(first: 100, after: $after) { nodes { id variants(first: 100) { nodes { id sku inventoryItem { id } } } } pageInfo { hasNextPage endCursor } } }";
            let data = self.graphql(query, json!({"after": after}), 102.0).await?;
            let products = &data["products"];
            for p in products["nodes"].as_array().into_iter().flatten() {
                let Some(product) = p["id"].as_str() else {
                    continue;
                };
                for v in p["variants"]["nodes"].as_array().into_iter().flatten() {
                    if let (Some(sku), Some(id), Some(item)) = (
                        v["sku"].as_str(),
                        v["id"].as_str(),
                        v["inventoryItem"]["id"].as_str(),
                    ) {
                        items.insert(
                            sku.to_string(),
                            Variant {
                                id: id.to_string(),
                                product: product.to_string(),
                                inventory_item: item.to_string(),
                            },
                        );
                    }
                }
            }
            match products["pageInfo"]["endCursor"].as_str() {
                Some(c) if products["pageInfo"]["hasNextPage"].as_bool() == Some(true) => {
                    after = Some(c.to_string())
                }
                _ => return Ok(items),
            }
        }
    }

    /// Waits until the cost bucket (as last reported) holds `cost`.
    async fn pace(&self, cost: f64) {
        let wait = {
            let bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket.and_then(|b| {
                let now =
                    (b.available + b.restore_rate * b.at.elapsed().as_secs_f64()).min(b.maximum);
                (now < cost && b.restore_rate > 0.0)
                    .then(|| Duration::from_secs_f64((cost - now) / b.restore_rate))
            })
        };
        if let Some(wait) = wait {
            metrics::counter!(m::THROTTLED_SECONDS, "sink" => "shopify")
                .increment(wait.as_secs_f64().ceil() as u64);
            tokio::time::sleep(wait).await;
            // Others waiting at the same time spend the refill too: claim it.
            let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = bucket.as_mut() {
                b.available = (b.available + b.restore_rate * b.at.elapsed().as_secs_f64())
                    .min(b.maximum)
                    - cost;
                b.at = Instant::now();
            }
        }
    }

    fn remember_bucket(&self, body: &Value) -> Option<Duration> {
        let t = &body["extensions"]["cost"]["throttleStatus"];
        let (Some(available), Some(maximum), Some(restore_rate)) = (
            t["currentlyAvailable"].as_f64(),
            t["maximumAvailable"].as_f64(),
            t["restoreRate"].as_f64(),
        ) else {
            return None;
        };
        *self.bucket.lock().unwrap_or_else(|e| e.into_inner()) = Some(Bucket {
            available,
            maximum,
            restore_rate,
            at: Instant::now(),
        });
        let requested = body["extensions"]["cost"]["requestedQueryCost"]
            .as_f64()
            .unwrap_or(MUTATION_COST);
        (restore_rate > 0.0 && available < requested)
            .then(|| Duration::from_secs_f64((requested - available) / restore_rate))
    }

    /// One GraphQL request; returns `data`, or the classified error.
    async fn graphql(&self, query: &str, variables: Value, cost: f64) -> Result<Value, ApplyError> {
        self.pace(cost).await;
        let resp = self
            .client
            .post(&self.url)
            .header("X-Shopify-Access-Token", &self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(http::send_error)?;
        let status = resp.status();
        let retry_after = http::retry_after(&resp);
        let text = resp.text().await.map_err(http::send_error)?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let refill = body.as_ref().and_then(|b| self.remember_bucket(b));
        // THROTTLED comes as 200 or 429: look at the body first.
        if let Some(errors) = body.as_ref().and_then(|b| b["errors"].as_array()) {
            let code = errors
                .first()
                .and_then(|e| e["extensions"]["code"].as_str())
                .unwrap_or("");
            if code == "THROTTLED" {
                return Err(ApplyError::Transient {
                    reason: "THROTTLED".into(),
                    retry_after: retry_after.or(refill).or(Some(Duration::from_secs(1))),
                    throttled: true,
                });
            }
            if status.is_success() {
                let message = errors
                    .first()
                    .and_then(|e| e["message"].as_str())
                    .unwrap_or("GraphQL error");
                return Err(ApplyError::definite(
                    format!("{code}: {message}"),
                    http::truncate(&text, 4000),
                ));
            }
        }
        if !status.is_success() {
            return Err(http::classify(status, retry_after, &text));
        }
        match body {
            Some(mut b) if b["data"].is_object() => Ok(b["data"].take()),
            _ => Err(ApplyError::transient(format!(
                "Shopify answered {status} without data: {}",
                http::truncate(&text, 300)
            ))),
        }
    }
}

/// A mutation payload's `userErrors`: none is success; an idempotency key still in flight is
/// worth retrying; anything else is the target refusing the event.
fn user_errors(payload: &Value) -> Result<(), ApplyError> {
    let Some(errors) = payload["userErrors"].as_array().filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let code = errors[0]["code"].as_str().unwrap_or("");
    if code == "IDEMPOTENCY_CONCURRENT_REQUEST" {
        return Err(ApplyError::transient("idempotency key in flight"));
    }
    Err(ApplyError::definite(
        format!(
            "userErrors: {}",
            errors[0]["message"].as_str().unwrap_or(code)
        ),
        Value::Array(errors.clone()).to_string(),
    ))
}

/// A GraphQL string literal (for the `@idempotent` key, which is not a variable everywhere).
fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

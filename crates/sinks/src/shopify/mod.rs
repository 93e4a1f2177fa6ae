//! Shopify target through the Admin GraphQL API: inventory levels, the ERP's order status,
//! fulfilments with tracking, prices and customers (`[sinks.shopify] apply` picks which).
//!
//! ```text
//!  inventory.level_changed ─► location code → location GID (config), SKU → inventory item
//!     (cached from the `products` connection) ─► inventorySetQuantities @idempotent, the
//!     levels of concurrent lanes as aliased fields of one document (stock.rs)
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
//! until the bucket has refilled enough for it and claims the cost, so that concurrent lanes
//! do not all spend the same points, and it slows down before Shopify throttles.

mod catalog;
mod customers;
mod levels;
mod lookup;
mod orders;
#[cfg(test)]
mod query_costs;
mod stock;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tributary_config::ShopifySinkConfig;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

use crate::batch::Batcher;
use crate::http;
use crate::outcome::Outcome;
use crate::priority::Admission;
use crate::state::{EntityRecord, StateStore};
use crate::{metrics as m, ApplyError, SinkError};

const MUTATION_COST: f64 = 10.0;
/// The SKU catalogue, one flat connection of variants: products with their nested variants
/// (`products(first: 100) { variants(first: 100) }`) would ask for 20,302 points, over
/// Shopify's 1000-point single query limit.
const ITEMS: &str = "query Items($first: Int!, $after: String) { productVariants(first: $first, after: $after) { nodes { id sku product { id } inventoryItem { id } } pageInfo { hasNextPage endCursor } } }";

/// Variants per page of [`ITEMS`]: 302 points, so that a refresh of the catalogue waits for
/// a third of a 1000-point bucket rather than most of it.
const ITEMS_PAGE: u32 = 100;

/// Requested cost of [`ITEMS`]: productVariants (2 + `first` × (node 1 + product 1 +
/// inventoryItem 1)).
fn items_cost(first: u32) -> f64 {
    2.0 + 3.0 * f64::from(first)
}
const SKU_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// The longest a low-class event's later request waits for the budget above the reserve.
const LOW_MAX_WAIT: Duration = Duration::from_secs(10);

pub struct ShopifyTarget {
    cfg: ShopifySinkConfig,
    api: Arc<Api>,
    items: tokio::sync::Mutex<SkuCache>,
    /// Inventory levels of concurrent lanes, sent as one document (None: `batch_size` 1).
    stock: Option<Batcher<stock::StockWrite>>,
    /// Where order events leave the order's Shopify GID for its fulfilments.
    state: StateStore,
    /// `system_of_record` of the configured Shopify feeds: their order events are the
    /// storefront's own, and mirroring them back would be an echo.
    storefront_systems: Vec<String>,
}

/// The HTTP side, shared by the lanes and the inventory batcher: endpoint, token, client,
/// the cost-bucket pacing.
struct Api {
    token: String,
    url: String,
    client: reqwest::Client,
    bucket: Mutex<Pacer>,
    quantity_name: String,
    /// Share of the bucket a low-class request must leave for the high class
    /// (`[sinks.shopify.priority] reserve`; 0 with priority off).
    low_reserve: f64,
}

#[derive(Clone, Copy)]
struct Bucket {
    available: f64,
    maximum: f64,
    restore_rate: f64,
    at: Instant,
}

impl Bucket {
    /// Points available now by the estimate (refilled since `at`).
    fn now(&self) -> f64 {
        (self.available + self.restore_rate * self.at.elapsed().as_secs_f64()).min(self.maximum)
    }
}

/// The sink's view of the cost bucket, shared by all lanes: the last reported state, less
/// what was claimed since, and the points of requests sent but not yet answered. Every
/// request claims its cost before it is sent; without the claim, lanes that looked at the
/// same estimate at the same time all went ahead and overdrew the bucket together.
#[derive(Default)]
struct Pacer {
    bucket: Option<Bucket>,
    in_flight: f64,
}

/// Gives a request's claim back when its answer (or failure) is in, whichever way the
/// request ends.
struct Claim<'a> {
    pacer: &'a Mutex<Pacer>,
    cost: f64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut p = self.pacer.lock().unwrap_or_else(|e| e.into_inner());
        p.in_flight = (p.in_flight - self.cost).max(0.0);
    }
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
    pub fn new(
        cfg: &ShopifySinkConfig,
        state: StateStore,
        storefront_systems: Vec<String>,
    ) -> Result<Self, SinkError> {
        let token = cfg
            .access_token
            .resolve()
            .map_err(|e| SinkError::config("sinks.shopify.access_token", e.to_string()))?;
        let api = Arc::new(Api {
            url: format!(
                "{}/admin/api/{}/graphql.json",
                cfg.base_url.trim_end_matches('/'),
                cfg.api_version
            ),
            client: http::client(Duration::from_millis(cfg.delivery.request_timeout_ms))?,
            token,
            bucket: Mutex::new(Pacer::default()),
            quantity_name: cfg.quantity_name.clone(),
            low_reserve: if cfg.priority.enabled {
                cfg.priority.reserve
            } else {
                0.0
            },
        });
        let stock = (cfg.batch_size > 1).then(|| stock::batcher(api.clone(), cfg));
        Ok(ShopifyTarget {
            cfg: cfg.clone(),
            api,
            items: tokio::sync::Mutex::new(SkuCache::default()),
            stock,
            state,
            storefront_systems,
        })
    }

    /// Lanes the sink needs at least: a lane waits for its level's document, so twice
    /// `batch_size` lets the next document fill while one is in flight.
    pub fn min_lanes(&self) -> usize {
        if self.stock.is_some() && self.applies("inventory") {
            self.cfg.batch_size * 2
        } else {
            1
        }
    }

    /// The lanes' activity, which the inventory batcher watches (none without batching).
    pub(crate) fn activity(&self) -> Option<std::sync::Arc<crate::activity::Activity>> {
        self.stock.as_ref().map(crate::batch::Batcher::activity)
    }

    /// Order events are read for `fulfillments` too: they carry the link to Shopify's order.
    pub fn filter_subjects(cfg: &ShopifySinkConfig, prefix: &str) -> Vec<String> {
        let wants = |what: &str| cfg.apply.iter().any(|a| a == what);
        let mut out = Vec::new();
        if wants("inventory") {
            out.push(format!("{prefix}.inventory.level_changed"));
            out.push(crate::repair::repair_subject(prefix, "inventory"));
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

    fn is_storefront_record(&self, event: &DomainEvent) -> bool {
        event
            .meta
            .as_ref()
            .is_some_and(|m| self.storefront_systems.contains(&m.system_of_record))
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
            Some(Entity::Order(_) | Entity::Fulfillment(_)) if self.is_storefront_record(event) => {
                // The storefront's own order or fulfilment (the Shopify feed): the ERP's
                // order events carry the link and the status to mirror; these would echo.
                Ok(Outcome::Ignored("the storefront's own record"))
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
        let quantity = self.quantity_of(level);
        let event_id = event
            .meta
            .as_ref()
            .map(|m| m.event_id.as_str())
            .unwrap_or("");
        let write = stock::StockWrite {
            item,
            location: location.clone(),
            quantity,
            event_id: event_id.to_string(),
            key: idempotency_key.to_string(),
        };
        match &self.stock {
            Some(batcher) => batcher.submit(write).await?,
            None => self.api.set_stock_alone(&write).await?,
        }
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
            let first = self.page_within_bucket(ITEMS_PAGE, items_cost);
            let vars = json!({"first": first, "after": after});
            let data = self.graphql(ITEMS, vars, items_cost(first)).await?;
            let variants = &data["productVariants"];
            for v in variants["nodes"].as_array().into_iter().flatten() {
                if let (Some(sku), Some(id), Some(product), Some(item)) = (
                    v["sku"].as_str(),
                    v["id"].as_str(),
                    v["product"]["id"].as_str(),
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
            match variants["pageInfo"]["endCursor"].as_str() {
                Some(c) if variants["pageInfo"]["hasNextPage"].as_bool() == Some(true) => {
                    after = Some(c.to_string())
                }
                _ => return Ok(items),
            }
        }
    }

    /// At most `page` items of a connection whose document costs `cost(page size)` (linear),
    /// fewer when the bucket (as last reported) could never hold that: a claim above the
    /// bucket's size would be THROTTLED however long the sink waited. Every Shopify plan's
    /// bucket holds 1000 points; smaller ones exist in tests.
    fn page_within_bucket(&self, page: u32, cost: fn(u32) -> f64) -> u32 {
        let (fixed, per_item) = (cost(0), cost(1) - cost(0));
        let pacer = self.api.bucket.lock().unwrap_or_else(|e| e.into_inner());
        match pacer.bucket {
            Some(b) if b.maximum < cost(page) => {
                (((b.maximum - fixed) / per_item).floor() as u32).clamp(1, page)
            }
            _ => page,
        }
    }

    /// One GraphQL request of the sink's own (orders, fulfilments, prices, customers,
    /// the SKU catalogue); returns `data`.
    async fn graphql(&self, query: &str, variables: Value, cost: f64) -> Result<Value, ApplyError> {
        self.api.graphql(query, variables, cost).await
    }
}

impl Api {
    /// Waits until the cost bucket (as last reported, less the claims since) holds `cost`,
    /// then claims it. Before the first answer the bucket is unknown and requests go ahead
    /// (a few THROTTLED answers at start-up are possible and retried). A low-class request
    /// (crate::priority) needs `cost` plus the high class's reserve instead, and does not
    /// wait for it: it fails as throttled at once, so that its lane holds the event with ack
    /// progress and the refill goes to the high class.
    async fn pace(&self, cost: f64) -> Result<Claim<'_>, ApplyError> {
        let admission = crate::priority::admission();
        let low = admission != Admission::High && self.low_reserve > 0.0;
        let mut waited = Duration::ZERO;
        loop {
            let wait = {
                let mut p = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let wait = match p.bucket.as_mut() {
                    Some(b) if b.restore_rate > 0.0 => {
                        let now = b.now();
                        let reserve = if low {
                            self.low_reserve * b.maximum
                        } else {
                            0.0
                        };
                        // A document dearer than the whole bucket waits for a full one
                        // (not forever); Shopify takes what it can hold.
                        let need = (cost + reserve).min(b.maximum);
                        if now >= need {
                            b.available = now - cost;
                            b.at = Instant::now();
                            None
                        } else {
                            Some(Duration::from_secs_f64((need - now) / b.restore_rate))
                        }
                    }
                    _ => None,
                };
                if wait.is_none() {
                    p.in_flight += cost;
                }
                wait
            };
            match wait {
                None => break,
                // A low-class event gives way at once before any of its requests is sent,
                // and after waiting LOW_MAX_WAIT for a later one (its lane then holds it with
                // ack progress).
                Some(wait) if low && (admission == Admission::Low || waited >= LOW_MAX_WAIT) => {
                    return Err(ApplyError::Transient {
                        reason: "cost budget below the high class's reserve".into(),
                        retry_after: Some(wait),
                        throttled: true,
                    });
                }
                Some(wait) => {
                    waited += wait;
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if !waited.is_zero() {
            metrics::histogram!(m::THROTTLE_WAIT, "sink" => "shopify").record(waited.as_secs_f64());
        }
        crate::priority::admitted();
        Ok(Claim {
            pacer: &self.bucket,
            cost,
        })
    }

    /// Takes the bucket state of an answer. The points of other requests still in flight
    /// are taken off what Shopify reported (it may not have charged them yet), and the
    /// estimate only ever goes down by an answer, never up: requests overtake each other on
    /// their way, so an answer can predate charges whose claims are already given back; the
    /// claims made since, refilled at the restore rate, are the better figure then. (An
    /// estimate that is too low costs a little burst, never throughput: it refills at the
    /// same rate as the bucket, up to the same maximum.) Shopify charges a document its
    /// requested cost up front and refunds what it did not use (`actualQueryCost`), so the
    /// part of the claim above the actual cost goes back into the estimate: without it the
    /// sink paced itself at the claimed costs and spent half of a store's budget on points
    /// Shopify never took.
    fn remember_bucket(&self, body: &Value, claim: &Claim<'_>) -> Option<Duration> {
        let cost = &body["extensions"]["cost"];
        let refund = cost["actualQueryCost"]
            .as_f64()
            .map_or(0.0, |actual| (claim.cost - actual).max(0.0));
        let t = &cost["throttleStatus"];
        let (Some(available), Some(maximum), Some(restore_rate)) = (
            t["currentlyAvailable"].as_f64(),
            t["maximumAvailable"].as_f64(),
            t["restoreRate"].as_f64(),
        ) else {
            return None;
        };
        {
            let mut p = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let others = (p.in_flight - claim.cost).max(0.0);
            let reported = available - others;
            let estimate = p
                .bucket
                .map_or(reported, |b| (b.now() + refund).min(maximum).min(reported));
            p.bucket = Some(Bucket {
                available: estimate,
                maximum,
                restore_rate,
                at: Instant::now(),
            });
        }
        let requested = cost["requestedQueryCost"].as_f64().unwrap_or(MUTATION_COST);
        (restore_rate > 0.0 && available < requested)
            .then(|| Duration::from_secs_f64((requested - available) / restore_rate))
    }

    /// One GraphQL request; returns the whole answer (`data`, and the `errors` of single
    /// fields), or the failure of the request as a whole: no answer, an HTTP error status,
    /// THROTTLED (the document ran none of its fields).
    async fn request(&self, query: &str, variables: Value, cost: f64) -> Result<Value, ApplyError> {
        let claim = self.pace(cost).await?;
        http::check_fence(None)?;
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
        let refill = body.as_ref().and_then(|b| self.remember_bucket(b, &claim));
        drop(claim);
        // THROTTLED comes as 200 or 429: look at the body first.
        let first_code = body
            .as_ref()
            .and_then(|b| b["errors"][0]["extensions"]["code"].as_str());
        if first_code == Some("THROTTLED") {
            return Err(ApplyError::Transient {
                reason: "THROTTLED".into(),
                retry_after: retry_after.or(refill).or(Some(Duration::from_secs(1))),
                throttled: true,
            });
        }
        if !status.is_success() {
            return Err(http::classify(status, retry_after, &text));
        }
        match body {
            Some(b) if b.is_object() => Ok(b),
            _ => Err(ApplyError::transient(format!(
                "Shopify answered {status} without data: {}",
                http::truncate(&text, 300)
            ))),
        }
    }

    /// One GraphQL request whose every error is the request's; returns `data`.
    async fn graphql(&self, query: &str, variables: Value, cost: f64) -> Result<Value, ApplyError> {
        let mut body = self.request(query, variables, cost).await?;
        if let Some(error) = body["errors"].as_array().and_then(|e| e.first()) {
            return Err(graphql_error(error, &body));
        }
        if body["data"].is_object() {
            Ok(body["data"].take())
        } else {
            Err(ApplyError::transient(format!(
                "Shopify answered without data: {}",
                http::truncate(&body.to_string(), 300)
            )))
        }
    }
}

/// A GraphQL error of a request or of one field (other than THROTTLED, which fails the
/// request): the target refusing it, unless its idempotency key is still in flight.
fn graphql_error(error: &Value, body: &Value) -> ApplyError {
    let code = error["extensions"]["code"].as_str().unwrap_or("");
    let message = error["message"].as_str().unwrap_or("GraphQL error");
    if code == "IDEMPOTENCY_CONCURRENT_REQUEST" {
        return ApplyError::transient("idempotency key in flight");
    }
    ApplyError::definite(
        format!("{code}: {message}"),
        http::truncate(&body.to_string(), 4000),
    )
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

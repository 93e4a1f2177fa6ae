//! The reconciliation poll: recovers webhooks Shopify never delivered.
//!
//! Every `reconcile_interval_secs`, per resource (orders with their fulfilments and refunds,
//! customers): read the records with `updated_at` in (cursor, now − `reconcile_lag_secs`]
//! from the Admin API, page by page. Inventory levels have no "updated since" search: every
//! `inventory_sweep_interval_secs` the levels of every location are read (a sweep) and those
//! updated inside the window are considered. A record whose state the entity state in KV has
//! not seen is published to
//! the raw stream as a `READ` event of the topic its webhook would have had, in the webhook's
//! payload shape. Its domain event gets the same id a webhook of that state gets
//! (`<shop>:<gid>@<updated_at>/<mapping>`), so a late webhook is a repeat (not published).
//! The cursor (KV bucket `tributary_saas`) moves only after the whole window is stored.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use prost::Message as _;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tributary_domain::ExternalFeed;

use super::admin::AdminClient;
use super::consume::feed_name;
use super::envelope::{self, RawEvent};
use super::paging::{self, next_page};
use super::{mapper, webhook, Shop};
use crate::metrics as m;
use crate::time::{format_rfc3339_millis, now_micros, parse_rfc3339_micros};
use crate::SaasError;

pub(super) const ORDERS: &str = "query($first:Int!,$after:String,$query:String,$lines:Int!){orders(first:$first,after:$after,query:$query,sortKey:UPDATED_AT){edges{cursor node{id legacyResourceId name email note tags closed cancelledAt displayFinancialStatus displayFulfillmentStatus customer{id} shippingAddress{address1 address2 city provinceCode zip countryCodeV2} lineItems(first:$lines){nodes{id sku quantity originalUnitPriceSet{shopMoney{amount currencyCode}}} pageInfo{hasNextPage endCursor}} fulfillments{id status trackingInfo{number company url} createdAt updatedAt} refunds{id createdAt totalRefundedSet{shopMoney{amount currencyCode}}} createdAt updatedAt}} pageInfo{hasNextPage endCursor}}}";
pub(super) const LOCATIONS: &str = "query($first:Int!,$after:String){locations(first:$first,after:$after){nodes{id} pageInfo{hasNextPage endCursor}}}";
pub(super) const LOCATION_LEVELS: &str = "query($id:ID!,$first:Int!,$after:String){location(id:$id){inventoryLevels(first:$first,after:$after){nodes{id updatedAt item{id} location{id} quantities(names:[\"available\"]){name quantity}} pageInfo{hasNextPage endCursor}}}}";
pub(super) const CUSTOMERS: &str = "query($first:Int!,$after:String,$query:String){customers(first:$first,after:$after,query:$query,sortKey:UPDATED_AT){edges{cursor node{id email firstName lastName phone note tags createdAt updatedAt}} pageInfo{hasNextPage endCursor}}}";

pub(super) struct Reconciler {
    pub shop: Arc<Shop>,
    pub admin: AdminClient,
    pub kv: kv::Store,
    pub feed: Option<Arc<ExternalFeed>>,
    /// Under `[ha]`: checked before each recovered record is published and before the
    /// cursor moves (one replica polls a shop).
    pub fence: tributary_core::FenceCell,
}

impl tributary_core::Component for Reconciler {
    fn name(&self) -> String {
        format!("shopify reconcile {}", self.shop.cfg.name)
    }

    fn run<'a>(
        &'a self,
        stop: &'a CancellationToken,
    ) -> tributary_core::BoxFuture<'a, Result<(), tributary_core::Failure>> {
        let span = tracing::info_span!("shopify_reconcile", shop = %self.shop.cfg.name);
        Box::pin(tracing::Instrument::instrument(
            async move {
                self.poll_until(stop).await;
                Ok(())
            },
            span,
        ))
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

impl Reconciler {
    /// Polls every interval until `stop`; a failed poll is counted, logged and retried at
    /// the next interval (its cursor did not move).
    async fn poll_until(&self, stop: &CancellationToken) {
        let Some(cfg) = self.shop.cfg.admin.clone() else {
            return;
        };
        let interval = Duration::from_secs(cfg.reconcile_interval_secs.max(1));
        let sweep_every = Duration::from_secs(cfg.inventory_sweep_interval_secs);
        let mut last_sweep: Option<std::time::Instant> = None;
        let name = self.shop.cfg.name.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let sweep = cfg.inventory_sweep_interval_secs > 0
                && last_sweep.is_none_or(|t| t.elapsed() >= sweep_every);
            if sweep {
                last_sweep = Some(std::time::Instant::now());
            }
            let resources: &[&str] = if sweep {
                &["orders", "customers", "inventory_levels"]
            } else {
                &["orders", "customers"]
            };
            for &resource in resources {
                match self
                    .poll(resource, cfg.reconcile_lag_secs, cfg.page_size)
                    .await
                {
                    Ok(recovered) => {
                        metrics::counter!(m::RECONCILE_POLLS, "shop" => name.clone(), "outcome" => "ok")
                            .increment(1);
                        if recovered > 0 {
                            info!(shop = %name, resource, recovered, "reconciliation recovered records no webhook brought");
                        }
                    }
                    Err(e) => {
                        metrics::counter!(m::RECONCILE_POLLS, "shop" => name.clone(), "outcome" => "error")
                            .increment(1);
                        warn!(shop = %name, resource, error = %e, "reconciliation poll failed; retrying at the next interval");
                    }
                }
            }
        }
    }

    fn cursor_key(&self, resource: &str) -> String {
        format!(
            "shopify.{}.{resource}",
            tributary_nats::subject::token(&self.shop.cfg.name)
        )
    }

    /// One window of one resource; returns how many records were recovered.
    pub async fn poll(
        &self,
        resource: &str,
        lag_secs: u64,
        page_size: u32,
    ) -> Result<u64, SaasError> {
        let key = self.cursor_key(resource);
        let upper_micros = now_micros() - (lag_secs as i64) * 1_000_000;
        let upper = format_rfc3339_millis(upper_micros);
        let stored = self
            .kv
            .get(&key)
            .await
            .map_err(|e| SaasError::nats(format!("KV get {key}"), e))?;
        let Some(cursor) = stored.map(|b| String::from_utf8_lossy(&b).into_owned()) else {
            // First start: reconcile from now on (history is the snapshot's business).
            self.save_cursor(&key, &upper).await?;
            return Ok(0);
        };
        if upper <= cursor {
            return Ok(0);
        }
        let recovered = if resource == "inventory_levels" {
            self.sweep_inventory(&cursor, upper_micros, page_size)
                .await?
        } else {
            self.search(resource, &cursor, &upper, page_size).await?
        };
        self.save_cursor(&key, &upper).await?;
        metrics::counter!(m::RECONCILE_RECOVERED, "shop" => self.shop.cfg.name.clone(), "resource" => resource.to_string())
            .increment(recovered);
        metrics::gauge!(m::RECONCILE_CURSOR, "shop" => self.shop.cfg.name.clone(), "resource" => resource.to_string())
            .set(upper_micros as f64 / 1e6);
        Ok(recovered)
    }

    /// Orders or customers updated in (cursor, upper], through the Admin API's search.
    async fn search(
        &self,
        resource: &str,
        cursor: &str,
        upper: &str,
        page_size: u32,
    ) -> Result<u64, SaasError> {
        let query_text = format!("updated_at:>'{cursor}' AND updated_at:<='{upper}'");
        let orders = resource == "orders";
        let (query, field, mut vars) = if orders {
            let first = paging::page_within_limit(page_size, 0, paging::ORDER_NODE_COST);
            let vars = json!({"first": first, "lines": paging::ORDER_LINES_PAGE});
            (ORDERS, "orders", vars)
        } else {
            let vars = json!({"first": page_size.clamp(1, 250)});
            (CUSTOMERS, "customers", vars)
        };
        vars["query"] = Value::String(query_text);
        let mut after = Value::Null;
        let mut recovered = 0;
        loop {
            vars["after"] = after.clone();
            let data = self.admin.query(query, vars.clone()).await?;
            let conn = data.get(field).cloned().unwrap_or(Value::Null);
            let mut nodes: Vec<Value> = conn
                .get("edges")
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(|e| e.get("node").cloned()).collect())
                .unwrap_or_default();
            for node in &mut nodes {
                let records = if orders {
                    // An order with more lines than the page's nested ones is read on.
                    paging::complete_line_items(&self.admin, node).await?;
                    order_records(node)
                } else {
                    vec![("customers/update", customer_payload(node))]
                };
                for (topic, payload) in records {
                    recovered += u64::from(self.recover(topic, &payload).await?);
                }
            }
            let next = conn
                .pointer("/pageInfo/hasNextPage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match conn.pointer("/pageInfo/endCursor") {
                Some(c) if next && !c.is_null() && !nodes.is_empty() => after = c.clone(),
                _ => break,
            }
        }
        Ok(recovered)
    }

    /// Every location's levels, page by page; those updated in (cursor, upper] are recovered
    /// unless the entity state has seen them.
    async fn sweep_inventory(
        &self,
        cursor: &str,
        upper_micros: i64,
        page_size: u32,
    ) -> Result<u64, SaasError> {
        let from = parse_rfc3339_micros(cursor).unwrap_or(0);
        let first = page_size.clamp(1, 250);
        let mut locations = Vec::new();
        let mut after = Value::Null;
        loop {
            let data = self
                .admin
                .query(LOCATIONS, json!({"first": first, "after": after}))
                .await?;
            let conn = &data["locations"];
            locations.extend(
                conn["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["id"].as_str().map(str::to_string)),
            );
            match next_page(conn) {
                Some(c) => after = c,
                None => break,
            }
        }
        let mut recovered = 0;
        // The location itself costs 1 and the connection 2: 249 levels a page at most.
        let levels_first = paging::page_within_limit(page_size, 1, paging::LEVEL_NODE_COST);
        for location in locations {
            let mut after = Value::Null;
            loop {
                let data = self
                    .admin
                    .query(
                        LOCATION_LEVELS,
                        json!({"id": location, "first": levels_first, "after": after}),
                    )
                    .await?;
                let conn = &data["location"]["inventoryLevels"];
                for level in conn["nodes"].as_array().into_iter().flatten() {
                    let updated = level["updatedAt"]
                        .as_str()
                        .and_then(parse_rfc3339_micros)
                        .unwrap_or(0);
                    if updated <= from || updated > upper_micros {
                        continue;
                    }
                    if let Some(payload) = level_payload(level) {
                        recovered +=
                            u64::from(self.recover("inventory_levels/update", &payload).await?);
                    }
                }
                match next_page(conn) {
                    Some(c) => after = c,
                    None => break,
                }
            }
        }
        Ok(recovered)
    }

    async fn save_cursor(&self, key: &str, value: &str) -> Result<(), SaasError> {
        self.fence.get().check()?;
        self.kv
            .put(key, value.to_string().into_bytes().into())
            .await
            .map_err(|e| SaasError::nats(format!("KV put {key}"), e))?;
        Ok(())
    }

    /// Publishes one record unless the entity state has seen it; true when published.
    async fn recover(&self, topic: &str, payload: &Value) -> Result<bool, SaasError> {
        let name = &self.shop.cfg.name;
        let Ok(Some(mapped)) = mapper::map(name, topic, payload, 0) else {
            return Ok(false);
        };
        let mut topic = topic;
        if let Some(feed) = &self.feed {
            let seen = feed
                .as_of(mapped.entity, &mapped.key, &feed_name(name))
                .await?;
            if seen.is_some_and(|s| s >= mapped.as_of_micros) {
                return Ok(false);
            }
            // An order the feed has never seen lost its `orders/create` webhook, whatever
            // happened to it since: downstream needs the placement, not a status change.
            if seen.is_none() && topic == "orders/updated" {
                topic = "orders/create";
            }
        }
        let body = payload.to_string();
        let stamp = format_rfc3339_millis(mapped.as_of_micros);
        let raw = RawEvent {
            event_id: format!("{name}:reconcile:{}@{stamp}", mapped.gid),
            shop: name,
            shop_domain: self.shop.cfg.shop_domain.as_deref().unwrap_or(""),
            topic,
            body: &body,
            triggered_at_micros: mapped.as_of_micros,
            origin: "reconciliation".into(),
            reconciled: true,
        };
        let change = envelope::change_event(&raw);
        let subject = envelope::subject(name, topic);
        self.fence.get().check()?;
        let duplicate = webhook::store(
            &self.shop.js,
            &subject,
            &raw.event_id,
            change.encode_to_vec(),
        )
        .await
        .map_err(|e| SaasError::nats(format!("publish to {subject}"), e))?;
        debug!(shop = %name, topic, gid = %mapped.gid, duplicate, "reconciled record published");
        Ok(!duplicate)
    }
}

fn tail(gid: &Value) -> Value {
    match gid
        .as_str()
        .and_then(|g| g.rsplit('/').next())
        .map(|t| t.parse::<u64>())
    {
        Some(Ok(n)) => json!(n),
        _ => gid.clone(),
    }
}

/// An order node as the webhooks `orders/create|updated` (and its fulfilments as
/// `fulfillments/create`) would have carried it.
fn order_records(o: &Value) -> Vec<(&'static str, Value)> {
    let id = tail(&o["id"]);
    let updated = o["updatedAt"].clone();
    let lines: Vec<Value> = o
        .pointer("/lineItems/nodes")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .map(|l| json!({"id": tail(&l["id"]), "sku": l["sku"], "quantity": l["quantity"],
                                "price": l.pointer("/originalUnitPriceSet/shopMoney/amount").cloned().unwrap_or(Value::Null)}))
                .collect()
        })
        .unwrap_or_default();
    let fulfilled = o["displayFulfillmentStatus"].as_str() == Some("FULFILLED");
    let payload = json!({
        "id": id, "admin_graphql_api_id": o["id"], "name": o["name"], "email": o["email"],
        "note": o["note"],
        "financial_status": o["displayFinancialStatus"].as_str().map(str::to_lowercase),
        "fulfillment_status": if fulfilled { json!("fulfilled") } else { Value::Null },
        "cancelled_at": o["cancelledAt"],
        "closed_at": if o["closed"].as_bool() == Some(true) { updated.clone() } else { Value::Null },
        "customer": o["customer"].get("id").map(|c| json!({"id": tail(c), "admin_graphql_api_id": c})),
        "shipping_address": o["shippingAddress"].as_object().map(|a| json!({
            "address1": a.get("address1"), "address2": a.get("address2"), "city": a.get("city"),
            "province_code": a.get("provinceCode"), "zip": a.get("zip"),
            "country_code": a.get("countryCodeV2")})),
        "line_items": lines, "created_at": o["createdAt"], "updated_at": updated,
    });
    let created = o["createdAt"] == o["updatedAt"];
    let mut out = vec![(
        if created {
            "orders/create"
        } else {
            "orders/updated"
        },
        payload,
    )];
    for r in o["refunds"].as_array().into_iter().flatten() {
        let money = r
            .pointer("/totalRefundedSet/shopMoney")
            .cloned()
            .unwrap_or(Value::Null);
        out.push((
            "refunds/create",
            json!({"id": tail(&r["id"]), "admin_graphql_api_id": r["id"], "order_id": id,
                   "created_at": r["createdAt"], "currency": money["currencyCode"],
                   "transactions": [{"kind": "refund", "status": "success", "amount": money["amount"], "order_id": id}]}),
        ));
    }
    for f in o["fulfillments"].as_array().into_iter().flatten() {
        let t = f.pointer("/trackingInfo/0").cloned().unwrap_or(Value::Null);
        out.push((
            "fulfillments/create",
            json!({"id": tail(&f["id"]), "admin_graphql_api_id": f["id"], "order_id": id,
                   "status": f["status"].as_str().map(str::to_lowercase),
                   "tracking_company": t["company"], "tracking_number": t["number"], "tracking_url": t["url"],
                   "created_at": f["createdAt"], "updated_at": f["updatedAt"]}),
        ));
    }
    out
}

/// An inventory level node as the webhook `inventory_levels/update` would have carried it.
fn level_payload(l: &Value) -> Option<Value> {
    let available = l["quantities"]
        .as_array()?
        .iter()
        .find(|q| q["name"].as_str() == Some("available"))?["quantity"]
        .as_i64()?;
    Some(
        json!({"inventory_item_id": tail(&l["item"]["id"]), "location_id": tail(&l["location"]["id"]),
                "available": available, "updated_at": l["updatedAt"], "admin_graphql_api_id": l["id"]}),
    )
}

fn customer_payload(c: &Value) -> Value {
    json!({"id": tail(&c["id"]), "admin_graphql_api_id": c["id"], "email": c["email"],
           "first_name": c["firstName"], "last_name": c["lastName"], "phone": c["phone"],
           "note": c["note"], "created_at": c["createdAt"], "updated_at": c["updatedAt"]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::retail::v1::domain_event::Entity;

    /// The poll must bring the address a webhook brings: both give the same event id, so
    /// whichever arrives first is the order's `order.placed`.
    #[test]
    fn a_polled_order_carries_the_webhooks_shipping_address() {
        let node = json!({"id": "gid://shopify/Order/7", "name": "#1007",
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
            "displayFinancialStatus": "PAID", "customer": null, "lineItems": {"nodes": []},
            "shippingAddress": {"address1": "350 Fifth Avenue", "address2": null, "city": "New York",
                "provinceCode": "NY", "zip": "10118", "countryCodeV2": "US"}});
        let webhook = json!({"id": 7, "admin_graphql_api_id": "gid://shopify/Order/7",
            "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
            "shipping_address": {"address1": "350 Fifth Avenue", "address2": null, "city": "New York",
                "province_code": "NY", "zip": "10118", "country_code": "US"}});
        let address =
            |payload: &Value| match crate::shopify::mapper::map("web", "orders/create", payload, 0)
                .ok()
                .flatten()
                .map(|m| m.body)
            {
                Some(Entity::Order(o)) => o.shipping_address,
                _ => None,
            };
        let records = order_records(&node);
        let polled = address(&records[0].1);
        assert!(polled.is_some());
        assert_eq!(polled, address(&webhook));
    }
}

//! Orders and fulfilments: an ERP order placed on the storefront carries Shopify's order id
//! (`external_ids[shopify]`); the sink keeps that link with the order's record, mirrors the
//! ERP's status into `erp_*` custom attributes and an `erp-status:<status>` tag (the order's
//! note stays the merchant's), cancels it when the ERP does (`cancel_orders`), and turns the
//! WMS's shipment (all of it, or the lines it names) into a Shopify fulfilment with its tracking
//! number.

use serde_json::{json, Value};
use tributary_proto::retail::v1::{Fulfillment, Order};

use super::{quoted, user_errors, ShopifyTarget, MUTATION_COST};
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::ApplyError;

/// The external-id system naming Shopify's order id on an order event.
const SHOPIFY_SYSTEM: &str = "shopify";
/// Custom attributes the sink owns; the merchant's other attributes are kept.
const ATTRIBUTE_PREFIX: &str = "erp_";
/// The one tag the sink owns (`erp-status:<status>`), so that staff can filter orders by the
/// ERP's status in the Shopify admin; the merchant's other tags are kept.
const TAG_PREFIX: &str = "erp-status:";
/// Fulfilment statuses that mean the parcel left the warehouse.
const SHIPPED: &[&str] = &["shipped", "in_transit", "delivered"];
/// The order read before mirroring the ERP's status into it.
pub(super) const ORDER_ATTRIBUTES: &str = "query Order($id: ID!) { order(id: $id) { id tags cancelledAt customAttributes { key value } } }";
/// order 1 + customAttributes (a list of objects, charged as one object) 1.
pub(super) const ORDER_ATTRIBUTES_COST: f64 = 2.0;

/// What an order's record keeps for this sink.
fn linked_order(record: &EntityRecord) -> Option<String> {
    record.data["shopify_order"].as_str().map(str::to_string)
}

/// `gid://shopify/Order/7` as is, a bare `7` as its GID.
fn order_gid(id: &str) -> String {
    if id.starts_with("gid://") {
        id.to_string()
    } else {
        format!("gid://shopify/Order/{id}")
    }
}

impl ShopifyTarget {
    /// Records the order's link to Shopify (also needed by `fulfillments` alone) and, with
    /// `orders`, mirrors status and payment state into the order's `erp_*` attributes.
    pub(super) async fn apply_order(
        &self,
        order: &Order,
        record: &mut EntityRecord,
    ) -> Result<Outcome, ApplyError> {
        let linked = order
            .external_ids
            .iter()
            .find(|e| e.system == SHOPIFY_SYSTEM && !e.id.is_empty())
            .map(|e| order_gid(&e.id))
            .or_else(|| linked_order(record));
        let Some(gid) = linked else {
            return Ok(Outcome::Ignored("order not from the storefront"));
        };
        if linked_order(record).as_deref() != Some(gid.as_str()) {
            if !record.data.is_object() {
                record.data = json!({});
            }
            record.data["shopify_order"] = Value::String(gid.clone());
        }
        if !self.applies("orders") {
            return Ok(Outcome::Recorded);
        }
        let wanted: Vec<(String, String)> = [
            ("status", &order.status),
            ("payment_state", &order.payment_state),
            ("order", &order.order_id),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (format!("{ATTRIBUTE_PREFIX}{k}"), v.clone()))
        .collect();
        if wanted.is_empty() {
            return Ok(Outcome::Ignored("nothing to mirror"));
        }
        let data = self
            .graphql(ORDER_ATTRIBUTES, json!({"id": gid}), ORDER_ATTRIBUTES_COST)
            .await?;
        let Some(current) = data["order"].as_object() else {
            return Err(ApplyError::definite(
                format!("Shopify has no order {gid}"),
                data.to_string(),
            ));
        };
        let mut attributes: Vec<(String, String)> = current
            .get("customAttributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    a["key"].as_str()?.to_string(),
                    a["value"].as_str()?.to_string(),
                ))
            })
            .collect();
        let before = attributes.clone();
        for (k, v) in wanted {
            match attributes.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => attributes.push((k, v)),
            }
        }
        let tags_before: Vec<String> = current
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let mut tags: Vec<String> = tags_before
            .iter()
            .filter(|t| order.status.is_empty() || !t.starts_with(TAG_PREFIX))
            .cloned()
            .collect();
        if !order.status.is_empty() {
            tags.push(format!("{TAG_PREFIX}{}", order.status));
        }
        let cancel = self.cfg.cancel_orders
            && order.status == "cancelled"
            && current.get("cancelledAt").is_none_or(Value::is_null);
        if attributes == before && tags == tags_before {
            // A redelivery of what already took effect: no second write.
            if cancel {
                self.cancel_order(&gid).await?;
            }
            return Ok(Outcome::Applied);
        }
        let input = json!({
            "id": gid,
            "tags": tags,
            "customAttributes": attributes.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        let data = self
            .graphql(
                "mutation Update($input: OrderInput!) { orderUpdate(input: $input) { order { id } userErrors { field message } } }",
                json!({"input": input}),
                MUTATION_COST,
            )
            .await?;
        user_errors(&data["orderUpdate"])?;
        if cancel {
            self.cancel_order(&gid).await?;
        }
        Ok(Outcome::Applied)
    }

    /// Cancels a storefront order the ERP cancelled: stock goes back, the payment is left to
    /// the payment flow. Idempotent by state: the caller saw `cancelledAt` unset, and an
    /// order cancelled meanwhile (a redelivery racing its first attempt) counts as done.
    async fn cancel_order(&self, gid: &str) -> Result<(), ApplyError> {
        let data = self
            .graphql(
                "mutation Cancel($id: ID!, $notify: Boolean) { orderCancel(orderId: $id, reason: OTHER, refund: false, restock: true, notifyCustomer: $notify, staffNote: \"Cancelled in the ERP\") { job { id } orderCancelUserErrors { field message code } } }",
                json!({"id": gid, "notify": self.cfg.notify_customer}),
                MUTATION_COST,
            )
            .await?;
        let payload = &data["orderCancel"];
        let already = payload["orderCancelUserErrors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["code"] == "ORDER_ALREADY_CANCELLED"));
        if already {
            return Ok(());
        }
        let errors = payload["orderCancelUserErrors"].clone();
        user_errors(&json!({ "userErrors": errors }))
    }

    /// A shipped fulfilment of a linked order becomes a Shopify fulfilment with its tracking;
    /// one that Shopify already shows (same tracking number) is not created again.
    pub(super) async fn create_fulfillment(
        &self,
        f: &Fulfillment,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        if !SHIPPED.contains(&f.status.as_str()) {
            return Ok(Outcome::Ignored("fulfilment not shipped"));
        }
        let order_record = self
            .state
            .get("shopify", "order", &f.order_id)
            .await
            .map_err(|e| ApplyError::transient(format!("reading the order link: {e}")))?;
        let Some(gid) = linked_order(&order_record) else {
            if order_record.version == 0 {
                // No event of this order has been applied yet: in a backlog the fulfilment
                // can overtake the order event that carries the link. Wait for it.
                return Err(ApplyError::Waiting {
                    reason: format!(
                        "order {} not known to the Shopify sink yet (its link to the storefront comes with an order event)",
                        f.order_id
                    ),
                });
            }
            return Ok(Outcome::Ignored("order not from the storefront"));
        };
        let order = &self.order_for_fulfillment(&gid).await?;
        if !order.is_object() {
            return Err(ApplyError::definite(
                format!("Shopify has no order {gid}"),
                "the order query answered null",
            ));
        }
        let already = order["fulfillments"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|x| x["trackingInfo"].as_array().cloned().unwrap_or_default())
            .any(|t| t["number"].as_str() == Some(f.tracking_number.as_str()));
        if already {
            return Ok(Outcome::Applied);
        }
        let groups = if f.lines.is_empty() {
            // No lines named: everything still open ships.
            order["fulfillmentOrders"]["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["status"].as_str() != Some("CLOSED"))
                .filter_map(|n| n["id"].as_str())
                .map(|id| json!({"fulfillmentOrderId": id}))
                .collect()
        } else {
            partial_groups(order, f)?
        };
        if groups.is_empty() {
            return Err(ApplyError::definite(
                format!("order {gid} has no fulfilment order to fulfil"),
                order.to_string(),
            ));
        }
        let mut tracking = serde_json::Map::new();
        for (k, v) in [
            ("number", &f.tracking_number),
            ("company", &f.carrier),
            ("url", &f.tracking_url),
        ] {
            if !v.is_empty() {
                tracking.insert(k.into(), Value::String(v.clone()));
            }
        }
        let query = format!(
            "mutation Ship($fulfillment: FulfillmentInput!) {{ fulfillmentCreate(fulfillment: $fulfillment) @idempotent(key: {}) {{ fulfillment {{ id }} userErrors {{ field message }} }} }}",
            quoted(idempotency_key)
        );
        let data = self
            .graphql(
                &query,
                json!({"fulfillment": {
                    "lineItemsByFulfillmentOrder": groups,
                    "trackingInfo": tracking,
                    "notifyCustomer": self.cfg.notify_customer,
                }}),
                MUTATION_COST,
            )
            .await?;
        user_errors(&data["fulfillmentCreate"])?;
        Ok(Outcome::Applied)
    }
}

/// The fulfilment-order line items a shipment of some lines fulfils: each shipped SKU's units
/// taken from the open lines of that SKU, one group per fulfilment order. A SKU the order
/// does not have, or more units than are left, is refused (the dead letter says which).
fn partial_groups(order: &Value, f: &Fulfillment) -> Result<Vec<Value>, ApplyError> {
    // (fulfilment order, line item, sku, remaining)
    let mut open: Vec<(String, String, String, i64)> = order["fulfillmentOrders"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|fo| {
            let fo_id = fo["id"].as_str().unwrap_or_default().to_string();
            fo["lineItems"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |l| {
                    (
                        fo_id.clone(),
                        l["id"].as_str().unwrap_or_default().to_string(),
                        l["lineItem"]["sku"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        l["remainingQuantity"].as_i64().unwrap_or(0),
                    )
                })
        })
        .filter(|(fo, line, _, remaining)| !fo.is_empty() && !line.is_empty() && *remaining > 0)
        .collect();
    let mut by_order: Vec<(String, Vec<Value>)> = Vec::new();
    for shipped in &f.lines {
        let mut wanted = shipped.quantity;
        for (fo, line, sku, remaining) in open.iter_mut() {
            if wanted == 0 {
                break;
            }
            if *sku != shipped.sku || *remaining == 0 {
                continue;
            }
            let take = wanted.min(*remaining);
            *remaining -= take;
            wanted -= take;
            let item = json!({"id": line, "quantity": take});
            match by_order.iter_mut().find(|(id, _)| id == fo) {
                Some((_, items)) => items.push(item),
                None => by_order.push((fo.clone(), vec![item])),
            }
        }
        if wanted > 0 {
            return Err(ApplyError::definite(
                format!(
                    "fulfilment {}: {} more unit(s) of {} than the order has left to fulfil",
                    f.fulfillment_id, wanted, shipped.sku
                ),
                order.to_string(),
            ));
        }
    }
    Ok(by_order
        .into_iter()
        .map(|(fo, items)| json!({"fulfillmentOrderId": fo, "fulfillmentOrderLineItems": items}))
        .collect())
}

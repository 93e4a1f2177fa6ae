//! Reading an order for a fulfilment, complete: its fulfilment orders and their line items,
//! paged so that each document stays inside Shopify's 1000-point single query limit.
//!
//! A connection's requested cost is 2 + its page size × one item's cost, and nested
//! connections multiply: `fulfillmentOrders(first: 10) { lineItems(first: 250) }` asks for
//! over 5000 points and a real store refuses it (`MAX_COST_EXCEEDED`). The first query takes
//! a small page of each; a fulfilment order with more lines is read on by itself
//! (`fulfillmentOrder(id:)`), more fulfilment orders by the order query's own cursor.

use serde_json::{json, Value};

use super::ShopifyTarget;
use crate::ApplyError;

/// The order, a page of its fulfilment orders and the first lines of each.
pub(super) const ORDER_FULFILLMENT: &str = "query Order($id: ID!, $after: String) { order(id: $id) { id displayFulfillmentStatus cancelledAt fulfillments { trackingInfo { number } } fulfillmentOrders(first: 5, after: $after) { nodes { id status lineItems(first: 50) { nodes { id remainingQuantity lineItem { sku } } pageInfo { hasNextPage endCursor } } } pageInfo { hasNextPage endCursor } } } }";
/// order 1 + fulfillments 1 + trackingInfo 1 + fulfillmentOrders (2 + 5 × (node 1 +
/// lineItems (2 + 50 × (node 1 + lineItem 1)))).
pub(super) const ORDER_FULFILLMENT_COST: f64 = 520.0;
/// The rest of one fulfilment order's lines.
pub(super) const FULFILLMENT_ORDER_LINES: &str = "query Lines($id: ID!, $after: String) { fulfillmentOrder(id: $id) { lineItems(first: 250, after: $after) { nodes { id remainingQuantity lineItem { sku } } pageInfo { hasNextPage endCursor } } } }";
/// fulfillmentOrder 1 + lineItems (2 + 250 × (node 1 + lineItem 1)).
pub(super) const FULFILLMENT_ORDER_LINES_COST: f64 = 503.0;

impl ShopifyTarget {
    /// The order with every fulfilment order and every one of their lines (in the shape of
    /// [`ORDER_FULFILLMENT`], without cursors), or null when Shopify has no such order.
    pub(super) async fn order_for_fulfillment(&self, gid: &str) -> Result<Value, ApplyError> {
        let mut order = Value::Null;
        let mut fulfillment_orders = Vec::new();
        let mut after = Value::Null;
        loop {
            let vars = json!({"id": gid, "after": after});
            let mut data = self
                .graphql(ORDER_FULFILLMENT, vars, ORDER_FULFILLMENT_COST)
                .await?;
            let page = data["order"].take();
            if !page.is_object() {
                return Ok(Value::Null);
            }
            let conn = &page["fulfillmentOrders"];
            for fo in conn["nodes"].as_array().into_iter().flatten() {
                fulfillment_orders.push(self.with_every_line(fo.clone()).await?);
            }
            let next = next_cursor(conn);
            if order.is_null() {
                order = page;
            }
            match next {
                Some(c) => after = c,
                None => break,
            }
        }
        order["fulfillmentOrders"] = json!({ "nodes": fulfillment_orders });
        Ok(order)
    }

    /// `fo` with the lines after its first page read on.
    async fn with_every_line(&self, mut fo: Value) -> Result<Value, ApplyError> {
        let mut page = fo["lineItems"].take();
        let mut lines = page["nodes"].as_array().cloned().unwrap_or_default();
        while let Some(after) = next_cursor(&page) {
            let vars = json!({"id": fo["id"], "after": after});
            let mut data = self
                .graphql(FULFILLMENT_ORDER_LINES, vars, FULFILLMENT_ORDER_LINES_COST)
                .await?;
            page = data["fulfillmentOrder"]["lineItems"].take();
            let Some(more) = page["nodes"].as_array() else {
                return Err(ApplyError::transient(format!(
                    "fulfillment order {} answered no lines while paging them",
                    fo["id"]
                )));
            };
            lines.extend(more.iter().cloned());
        }
        fo["lineItems"] = json!({ "nodes": lines });
        Ok(fo)
    }
}

/// The cursor of a connection's next page, if it has one.
fn next_cursor(conn: &Value) -> Option<Value> {
    let info = &conn["pageInfo"];
    (info["hasNextPage"].as_bool() == Some(true))
        .then(|| info["endCursor"].clone())
        .filter(Value::is_string)
}

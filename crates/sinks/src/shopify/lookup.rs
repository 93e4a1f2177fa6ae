//! Reading an order for a fulfilment, complete: its fulfilment orders and their line items,
//! paged so that each document stays inside Shopify's 1000-point single query limit.
//!
//! A connection's requested cost is 2 + its page size × one item's cost, and nested
//! connections multiply: `fulfillmentOrders(first: 10) { lineItems(first: 250) }` asks for
//! over 5000 points and a real store refuses it (`MAX_COST_EXCEEDED`). The first query takes
//! a small page of each; a fulfilment order with more lines is read on by itself
//! (`fulfillmentOrder(id:)`), more fulfilment orders by the order query's own cursor. Pages
//! shrink when the reported bucket could never hold a document (every Shopify plan's holds
//! 1000 points; the tests run smaller ones).

use serde_json::{json, Value};

use super::ShopifyTarget;
use crate::ApplyError;

/// The order, a page of its fulfilment orders and the first lines of each.
pub(super) const ORDER_FULFILLMENT: &str = "query Order($id: ID!, $after: String, $orders: Int!, $lines: Int!) { order(id: $id) { id displayFulfillmentStatus cancelledAt fulfillments { trackingInfo { number } } fulfillmentOrders(first: $orders, after: $after) { nodes { id status lineItems(first: $lines) { nodes { id remainingQuantity lineItem { sku } } pageInfo { hasNextPage endCursor } } } pageInfo { hasNextPage endCursor } } } }";
/// Fulfilment orders and lines per fulfilment order in [`ORDER_FULFILLMENT`]: most orders
/// have one fulfilment order of a few lines. 111 points: the sink paces every claim against
/// a bucket that stock writes keep low, so a cheap lookup is not starved by them.
const PAGES: (u32, u32) = (2, 25);

/// Requested cost of [`ORDER_FULFILLMENT`]: order 1, fulfillments 1 with trackingInfo 1,
/// fulfillmentOrders 2 plus `orders` × (node 1, lineItems 2 plus `lines` × (node 1,
/// lineItem 1)).
pub(super) fn order_fulfillment_cost(orders: u32, lines: u32) -> f64 {
    5.0 + f64::from(orders) * (3.0 + 2.0 * f64::from(lines))
}

/// The rest of one fulfilment order's lines.
pub(super) const FULFILLMENT_ORDER_LINES: &str = "query Lines($id: ID!, $after: String, $first: Int!) { fulfillmentOrder(id: $id) { lineItems(first: $first, after: $after) { nodes { id remainingQuantity lineItem { sku } } pageInfo { hasNextPage endCursor } } } }";

/// Requested cost of [`FULFILLMENT_ORDER_LINES`]: fulfillmentOrder 1, lineItems 2 plus
/// `first` × (node 1, lineItem 1); 503 at Shopify's largest page.
pub(super) fn fulfillment_order_lines_cost(first: u32) -> f64 {
    3.0 + 2.0 * f64::from(first)
}

impl ShopifyTarget {
    /// The order with every fulfilment order and every one of their lines (in the shape of
    /// [`ORDER_FULFILLMENT`], without cursors), or null when Shopify has no such order.
    pub(super) async fn order_for_fulfillment(&self, gid: &str) -> Result<Value, ApplyError> {
        let mut order = Value::Null;
        let mut fulfillment_orders = Vec::new();
        // A bucket too small for the usual pages (tests run 200-point ones) gets one
        // fulfilment order a page with the lines it can hold.
        let (orders, lines) = if self
            .page_within_bucket(PAGES.1, |l| order_fulfillment_cost(PAGES.0, l))
            == PAGES.1
        {
            PAGES
        } else {
            (
                1,
                self.page_within_bucket(PAGES.1, |l| order_fulfillment_cost(1, l)),
            )
        };
        let cost = order_fulfillment_cost(orders, lines);
        let mut after = Value::Null;
        loop {
            let vars = json!({"id": gid, "after": after, "orders": orders, "lines": lines});
            let mut data = self.graphql(ORDER_FULFILLMENT, vars, cost).await?;
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
        let first = self.page_within_bucket(250, fulfillment_order_lines_cost);
        while let Some(after) = next_cursor(&page) {
            let vars = json!({"id": fo["id"], "after": after, "first": first});
            let cost = fulfillment_order_lines_cost(first);
            let mut data = self.graphql(FULFILLMENT_ORDER_LINES, vars, cost).await?;
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

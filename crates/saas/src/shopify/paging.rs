//! Page sizes within Shopify's 1000-point single query limit, and an order's line items
//! beyond the reconciliation's nested page.
//!
//! Shopify refuses a document whose requested cost is over 1000 points
//! (`MAX_COST_EXCEEDED`) before running it. A connection costs 2 + its page size × one
//! item's cost (objects 1, scalars 0), so the line items nested in every order of a page
//! multiply: `orders(first: 100) { lineItems(first: 250) }` asks for some 78,000 points. The
//! reconciliation reads a few lines per order and pages the orders to fit; an order with
//! more lines has the rest read by itself ([`ORDER_LINES`]), so none is cut off.

use serde_json::{json, Value};

use super::admin::AdminClient;
use crate::SaasError;

/// The single query limit.
const MAX_QUERY_COST: u32 = 1000;
/// Shopify's largest page.
const MAX_PAGE: u32 = 250;
/// Line items per order in the reconciliation's orders page (`$lines`).
pub(super) const ORDER_LINES_PAGE: u32 = 10;
/// Requested cost of one order node of the reconciliation's `ORDERS`: the node 1, customer
/// 1, shippingAddress 1, lineItems 2 plus `ORDER_LINES_PAGE` × (node 1, originalUnitPriceSet
/// 1, shopMoney 1), fulfillments 1 with trackingInfo 1, refunds 1 with totalRefundedSet 1 and
/// its shopMoney 1. Selecting another object in the order node adds 1 here (a test compares).
pub(super) const ORDER_NODE_COST: u32 = 10 + 3 * ORDER_LINES_PAGE;
/// Requested cost of one inventory level of `LOCATION_LEVELS`: node 1 + item 1 +
/// location 1 + quantities 1 (the location itself adds 1).
pub(super) const LEVEL_NODE_COST: u32 = 4;
/// The rest of one order's line items, in the shape `ORDERS` selects them.
pub(super) const ORDER_LINES: &str = "query($id:ID!,$first:Int!,$after:String){order(id:$id){lineItems(first:$first,after:$after){nodes{id sku quantity originalUnitPriceSet{shopMoney{amount currencyCode}}} pageInfo{hasNextPage endCursor}}}}";

/// The largest page of a connection whose items cost `node_cost` each, under a parent
/// costing `parent` (0 at the root), no larger than the configured `page_size`.
pub(super) fn page_within_limit(page_size: u32, parent: u32, node_cost: u32) -> u32 {
    let fits = (MAX_QUERY_COST - parent - 2) / node_cost.max(1);
    page_size.clamp(1, MAX_PAGE).min(fits).max(1)
}

/// Reads the line items of `order` (an `ORDERS` node) past its first page and appends them
/// to `lineItems.nodes`, so that the order is complete.
pub(super) async fn complete_line_items(
    admin: &AdminClient,
    order: &mut Value,
) -> Result<(), SaasError> {
    let mut after = next_page(&order["lineItems"]);
    while let Some(cursor) = after {
        let vars = json!({"id": order["id"], "first": MAX_PAGE, "after": cursor});
        let mut data = admin.query(ORDER_LINES, vars).await?;
        let page = data["order"]["lineItems"].take();
        let Some(more) = page["nodes"].as_array() else {
            return Err(SaasError::http(
                "Shopify Admin API",
                format!(
                    "order {} answered no line items while paging them",
                    order["id"]
                ),
            ));
        };
        match order
            .pointer_mut("/lineItems/nodes")
            .and_then(Value::as_array_mut)
        {
            Some(nodes) => nodes.extend(more.iter().cloned()),
            None => order["lineItems"] = json!({ "nodes": more }),
        }
        after = next_page(&page);
    }
    Ok(())
}

/// The cursor of a connection's next page, if it has one.
pub(super) fn next_page(conn: &Value) -> Option<Value> {
    let more = conn
        .pointer("/pageInfo/hasNextPage")
        .and_then(Value::as_bool)
        == Some(true);
    conn.pointer("/pageInfo/endCursor")
        .filter(|c| more && !c.is_null())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::super::reconcile::{CUSTOMERS, LOCATIONS, LOCATION_LEVELS, ORDERS};
    use super::*;
    use tributary_sandbox::shopify::requested_cost;

    fn cost(query: &str, variables: Value) -> u32 {
        let Value::Object(vars) = variables else {
            unreachable!("variables are an object")
        };
        requested_cost(query, &vars).expect("the document parses") as u32
    }

    /// Every document the reconciliation sends stays within the limit at every page size
    /// the config allows, and the order node cost used to size the page is the real one.
    #[test]
    fn every_reconciliation_document_fits_at_every_page_size() {
        for page_size in [1, 2, 24, 25, 26, 100, 249, 250, 1000] {
            let first = page_within_limit(page_size, 0, ORDER_NODE_COST);
            let orders = cost(
                ORDERS,
                json!({"first": first, "lines": ORDER_LINES_PAGE, "query": "", "after": null}),
            );
            assert_eq!(orders, 2 + first * ORDER_NODE_COST, "page size {page_size}");
            assert!(orders <= MAX_QUERY_COST, "orders at {page_size}: {orders}");
            let first = page_within_limit(page_size, 1, LEVEL_NODE_COST);
            let levels = cost(LOCATION_LEVELS, json!({"id": "l", "first": first}));
            assert_eq!(levels, 3 + first * LEVEL_NODE_COST);
            assert!(levels <= MAX_QUERY_COST, "levels at {page_size}: {levels}");
            let first = page_size.clamp(1, MAX_PAGE);
            assert!(cost(CUSTOMERS, json!({"first": first})) <= MAX_QUERY_COST);
            assert!(cost(LOCATIONS, json!({"first": first})) <= MAX_QUERY_COST);
        }
        assert_eq!(page_within_limit(250, 0, ORDER_NODE_COST), 24);
        assert_eq!(page_within_limit(250, 1, LEVEL_NODE_COST), 249);
        assert_eq!(page_within_limit(10, 0, ORDER_NODE_COST), 10);
        let lines = cost(ORDER_LINES, json!({"id": "o", "first": MAX_PAGE}));
        assert!(lines <= MAX_QUERY_COST, "{lines}");
    }
}

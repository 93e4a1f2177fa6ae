//! The Shopify emulator charges Shopify's query cost over real HTTP: nested connections
//! multiply, a document over 1000 points is refused before it runs (nothing charged), the
//! bucket is refunded what the answer did not use, and nested connections page by their
//! own arguments.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use tributary_sandbox::shopify::{self, Shopify, ShopifyOptions};
use tributary_sandbox::RunningEmulator;

async fn gql(emu: &RunningEmulator<Shopify>, query: &str, variables: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/admin/api/2026-04/graphql.json", emu.base_url()))
        .header("X-Shopify-Access-Token", "shpat_sandbox")
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn available(body: &Value) -> f64 {
    body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
        .as_f64()
        .unwrap()
}

#[tokio::test]
async fn nested_connections_over_the_limit_are_refused_before_running() {
    let emu = shopify::start(ShopifyOptions {
        restore_rate: 0.001,
        ..ShopifyOptions::default()
    })
    .await
    .unwrap();
    emu.add_order("a@example.com", &[("MUG-1", 1, "9.50")], None);
    // 2 + 50 × (1 + lineItems (2 + 250 × 1)): the page alone is cheap, the nesting is not.
    let doc = "query($first: Int!) { orders(first: $first) { edges { node { id lineItems(first: 250) { nodes { sku } } } } } }";
    let refused = gql(&emu, doc, json!({"first": 50})).await;
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], "MAX_COST_EXCEEDED");
    assert_eq!(error["extensions"]["cost"], 12652.0);
    assert_eq!(error["extensions"]["maxCost"], 1000.0);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("Query cost is 12652, which exceeds the single query max cost limit (1000)."));
    assert!(refused["data"].is_null());
    assert_eq!(available(&refused), 1000.0, "nothing charged");
    // One order per page fits (2 + 253): charged up front, refunded down to what came back
    // (2 + the order 1 + its lineItems 2 + one line 1).
    let one = gql(&emu, doc, json!({"first": 1})).await;
    assert!(one["errors"].is_null(), "{one}");
    assert_eq!(one["extensions"]["cost"]["requestedQueryCost"], 255.0);
    assert_eq!(one["extensions"]["cost"]["actualQueryCost"], 6.0);
    assert_eq!(available(&one), 994.0);
}

#[tokio::test]
async fn nested_line_items_page_by_their_own_cursor() {
    let emu = shopify::start(ShopifyOptions::default()).await.unwrap();
    let skus: Vec<String> = (0..5).map(|i| format!("S-{i}")).collect();
    let lines: Vec<(&str, i64, &str)> = skus.iter().map(|s| (s.as_str(), 1, "1.00")).collect();
    let order = emu.add_order("a@example.com", &lines, None);
    let doc = "query($id: ID!, $after: String) { order(id: $id) { lineItems(first: 2, after: $after) { nodes { sku } pageInfo { hasNextPage endCursor } } } }";
    let mut after = Value::Null;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let body = gql(&emu, doc, json!({"id": order.order_id, "after": after})).await;
        let conn = &body["data"]["order"]["lineItems"];
        seen.extend(
            conn["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["sku"].as_str().unwrap().to_string()),
        );
        pages += 1;
        // 1 + 2 + 2 × 1 requested, whatever the page held.
        assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 5.0);
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, skus);
    assert_eq!(pages, 3);
}

//! Shopify Admin GraphQL emulator over real HTTP: auth, writes, idempotency, CAS, throttling,
//! faults, reconciliation queries, mutation webhooks.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use tributary_sandbox::shopify::{
    self, inventory_level_gid, Shopify, ShopifyOptions, VariantSeed, WebhookSubscription,
};
use tributary_sandbox::webhooks::RetryPolicy;
use tributary_sandbox::{Fault, RunningEmulator};

const TOKEN: &str = "shpat_sandbox";
const SET: &str = "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) { inventorySetQuantities(input: $input) @idempotent(key: $key) { inventoryAdjustmentGroup { reason } userErrors { field message code } } }";

struct Shop {
    emu: RunningEmulator<Shopify>,
    http: reqwest::Client,
    item: String,
    location: String,
    variant: String,
    product: String,
}

async fn shop(opts: ShopifyOptions) -> Shop {
    let emu = shopify::start(opts).await.unwrap();
    let location = emu.add_location("Warehouse");
    let p = emu.add_product(
        "Mug",
        &[VariantSeed {
            sku: "MUG-1".into(),
            price: "9.50".into(),
        }],
    );
    let (variant, item, _) = p.variants[0].clone();
    emu.set_inventory(&item, &location, 5).unwrap();
    Shop {
        emu,
        http: reqwest::Client::new(),
        item,
        location,
        variant,
        product: p.product_id,
    }
}

impl Shop {
    async fn gql_v(
        &self,
        version: &str,
        token: &str,
        query: &str,
        variables: Value,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(format!(
                "{}/admin/api/{version}/graphql.json",
                self.emu.base_url()
            ))
            .header("X-Shopify-Access-Token", token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn gql(&self, query: &str, variables: Value) -> (u16, Value) {
        self.gql_v("2026-04", TOKEN, query, variables).await
    }

    fn set_vars(&self, quantity: i64, change_from: Option<i64>, key: &str) -> Value {
        json!({"key": key, "input": {"name": "available", "reason": "correction", "referenceDocumentUri": "tributary://erp/stock/1",
               "quantities": [{"inventoryItemId": self.item, "locationId": self.location, "quantity": quantity, "changeFromQuantity": change_from}]}})
    }
}

#[tokio::test]
async fn rejects_a_bad_access_token() {
    let s = shop(ShopifyOptions::default()).await;
    let (status, body) = s
        .gql_v("2026-04", "wrong", SET, s.set_vars(7, None, "k"))
        .await;
    assert_eq!(status, 401);
    assert!(body["errors"]
        .as_str()
        .unwrap()
        .contains("Invalid API key or access token"));
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 5);
}

#[tokio::test]
async fn inventory_set_applies_once_per_idempotency_key() {
    let s = shop(ShopifyOptions::default()).await;
    let (status, first) = s.gql(SET, s.set_vars(12, Some(5), "key-1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        first["data"]["inventorySetQuantities"]["userErrors"],
        json!([])
    );
    assert_eq!(
        first["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"][0]["delta"],
        7
    );
    assert!(first["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"].is_number());
    let level = s.emu.inventory(&s.item, &s.location).unwrap();
    assert_eq!((level.available, level.on_hand), (12, 12));

    // The same request again (a retry after a lost answer): the original result, no second write.
    let (_, again) = s.gql(SET, s.set_vars(12, Some(5), "key-1")).await;
    assert_eq!(again["data"], first["data"]);
    assert_eq!(s.emu.idempotent_applies("key-1"), 1);
    assert_eq!(s.emu.idempotent_replays("key-1"), 1);
    let ig = s.item.rsplit('/').next().unwrap().parse().unwrap();
    let lg = s.location.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(s.emu.entity_writes(&inventory_level_gid(ig, lg)), 1);

    // Same key, different parameters.
    let (_, mismatch) = s.gql(SET, s.set_vars(13, Some(12), "key-1")).await;
    assert_eq!(
        mismatch["errors"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    );
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 12);
}

#[tokio::test]
async fn stale_change_from_quantity_is_refused_and_missing_key_rejected() {
    let s = shop(ShopifyOptions::default()).await;
    let (_, stale) = s.gql(SET, s.set_vars(1, Some(4), "key-2")).await;
    let errors = &stale["data"]["inventorySetQuantities"]["userErrors"];
    assert_eq!(errors[0]["code"], "CHANGE_FROM_QUANTITY_STALE");
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 5);
    assert_eq!(s.emu.idempotent_applies("key-2"), 0);

    // null changeFromQuantity skips the check.
    let (_, ok) = s.gql(SET, s.set_vars(1, None, "key-3")).await;
    assert_eq!(
        ok["data"]["inventorySetQuantities"]["userErrors"],
        json!([])
    );

    let no_key = "mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }";
    let (_, required) = s.gql(no_key, s.set_vars(2, None, "")).await;
    assert_eq!(
        required["errors"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_REQUIRED"
    );
    let (_, older) = s
        .gql_v("2025-10", TOKEN, no_key, s.set_vars(2, None, ""))
        .await;
    assert_eq!(
        older["data"]["inventorySetQuantities"]["userErrors"],
        json!([])
    );
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 2);
}

#[tokio::test]
async fn order_fulfillment_price_and_customer_mutations() {
    let s = shop(ShopifyOptions::default()).await;
    let order = s
        .emu
        .add_order("a@example.com", &[("MUG-1", 2, "9.50")], None);
    let (_, r) = s.gql("mutation($input: OrderInput!) { orderUpdate(input: $input) { order { id } userErrors { field message } } }",
        json!({"input": {"id": order.order_id, "tags": ["erp", "priority"], "note": "packed"}})).await;
    assert_eq!(r["data"]["orderUpdate"]["userErrors"], json!([]));
    let o = s.emu.order(&order.order_id).unwrap();
    assert_eq!(
        (o.tags.clone(), o.note.clone()),
        (
            vec!["erp".to_string(), "priority".to_string()],
            Some("packed".to_string())
        )
    );

    let (_, missing) = s.gql("mutation { orderUpdate(input: {id: \"gid://shopify/Order/999\", note: \"x\"}) { userErrors { field message } } }", json!({})).await;
    assert_eq!(
        missing["data"]["orderUpdate"]["userErrors"][0]["field"],
        json!(["id"])
    );

    let fc = "mutation($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) { fulfillment { id } userErrors { message } } }";
    let vars = json!({"f": {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": order.fulfillment_order_id}], "notifyCustomer": true,
                            "trackingInfo": {"number": "1Z999", "company": "UPS"}}});
    let (_, f) = s.gql(fc, vars.clone()).await;
    assert_eq!(f["data"]["fulfillmentCreate"]["userErrors"], json!([]));
    assert_eq!(
        f["data"]["fulfillmentCreate"]["fulfillment"]["trackingInfo"][0]["number"],
        "1Z999"
    );
    assert_eq!(
        s.emu.order(&order.order_id).unwrap().fulfillment_status,
        "FULFILLED"
    );
    let (_, twice) = s.gql(fc, vars).await;
    assert_eq!(
        twice["data"]["fulfillmentCreate"]["userErrors"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.emu.fulfillments(&order.order_id).len(), 1);

    let pv = "mutation($p: ID!, $v: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $p, variants: $v) { userErrors { field code } } }";
    let (_, price) = s
        .gql(
            pv,
            json!({"p": s.product, "v": [{"id": s.variant, "price": "11.00"}]}),
        )
        .await;
    assert_eq!(
        price["data"]["productVariantsBulkUpdate"]["userErrors"],
        json!([])
    );
    assert_eq!(s.emu.variant(&s.variant).unwrap().price, "11.00");
    let (_, bad) = s
        .gql(
            pv,
            json!({"p": s.product, "v": [{"id": s.variant, "price": "-3"}]}),
        )
        .await;
    assert_eq!(
        bad["data"]["productVariantsBulkUpdate"]["userErrors"][0]["field"],
        json!(["variants", "0", "price"])
    );

    let (_, c) = s.gql("mutation($i: CustomerInput!) { customerCreate(input: $i) { customer { id } userErrors { field message } } }",
        json!({"i": {"email": "b@example.com", "firstName": "Bo"}})).await;
    let cid = c["data"]["customerCreate"]["customer"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, u) = s.gql("mutation($i: CustomerInput!) { customerUpdate(input: $i) { customer { id } userErrors { field message } } }",
        json!({"i": {"id": cid, "lastName": "Berg", "email": "not-an-email"}})).await;
    assert_eq!(
        u["data"]["customerUpdate"]["userErrors"][0]["message"],
        "Email is invalid"
    );
    assert_eq!(s.emu.customer(&cid).unwrap().last_name, None);
}

#[tokio::test]
async fn cost_bucket_throttles_and_can_be_switched_off() {
    let s = shop(ShopifyOptions {
        bucket_size: 25.0,
        restore_rate: 1.0,
        ..ShopifyOptions::default()
    })
    .await;
    let q = "mutation($i: OrderInput!) { orderUpdate(input: $i) { userErrors { message } } }";
    let order = s
        .emu
        .add_order("a@example.com", &[("MUG-1", 1, "9.50")], None);
    let vars = json!({"i": {"id": order.order_id, "note": "n"}});
    assert!(s.gql(q, vars.clone()).await.1["errors"].is_null());
    assert!(s.gql(q, vars.clone()).await.1["errors"].is_null());
    let (status, throttled) = s.gql(q, vars.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(throttled["errors"][0]["extensions"]["code"], "THROTTLED");
    assert!(
        throttled["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
            .as_f64()
            .unwrap()
            < 10.0
    );
    assert_eq!(s.emu.throttled_count(), 1);
    s.emu.set_throttling(false);
    assert!(s.gql(q, vars).await.1["errors"].is_null());
    let (_, too_big) = s
        .gql(
            "{ orders(first: 2000) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        too_big["errors"][0]["extensions"]["code"],
        "MAX_COST_EXCEEDED"
    );
}

#[tokio::test]
async fn injected_faults_fail_without_side_effects_except_after_apply() {
    let s = shop(ShopifyOptions::default()).await;
    s.emu.faults().fail_next(1, Fault::ServerError(503));
    assert_eq!(s.gql(SET, s.set_vars(8, None, "f-1")).await.0, 503);
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 5);

    s.emu.faults().fail_next(1, Fault::RateLimited);
    assert_eq!(
        s.gql(SET, s.set_vars(8, None, "f-1")).await.1["errors"][0]["extensions"]["code"],
        "THROTTLED"
    );

    // The answer is lost after the write happened; the retry with the same key is a replay.
    s.emu
        .faults()
        .fail_next(1, Fault::TimeoutAfterApply(Duration::from_secs(2)));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let lost = short
        .post(format!(
            "{}/admin/api/2026-04/graphql.json",
            s.emu.base_url()
        ))
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&json!({"query": SET, "variables": s.set_vars(8, None, "f-1")}))
        .send()
        .await;
    assert!(lost.unwrap_err().is_timeout());
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 8);
    let (status, _) = s.gql(SET, s.set_vars(8, None, "f-1")).await;
    assert_eq!(status, 200);
    assert_eq!(s.emu.idempotent_applies("f-1"), 1);
    assert_eq!(s.emu.faults().injected(), 3);
    assert_eq!(s.emu.requests().matching("graphql.json").len(), 4);
}

#[tokio::test]
async fn bad_requests_get_shopify_style_errors() {
    let s = shop(ShopifyOptions::default()).await;
    let r = s
        .http
        .post(format!(
            "{}/admin/api/2026-04/graphql.json",
            s.emu.base_url()
        ))
        .header("X-Shopify-Access-Token", TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, parse) = s.gql("mutation { orderUpdate(input: ) }", json!({})).await;
    assert_eq!(parse["errors"][0]["extensions"]["code"], "PARSE_ERROR");
    let (_, unknown) = s
        .gql("mutation { launchRocket(input: {}) { id } }", json!({}))
        .await;
    assert_eq!(unknown["errors"][0]["extensions"]["code"], "undefinedField");
}

#[tokio::test]
async fn reconciliation_queries_return_what_changed_since_a_cursor() {
    let s = shop(ShopifyOptions::default()).await;
    let a = s
        .emu
        .add_order("a@example.com", &[("MUG-1", 1, "9.50")], None);
    let b = s
        .emu
        .add_order("b@example.com", &[("MUG-1", 1, "9.50")], None);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = tributary_sandbox::now_rfc3339();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Changed without a webhook (as if the webhook were never delivered).
    s.emu.with_state(|st| {
        let id = tributary_sandbox::shopify::parse_gid(&b.order_id, "Order").unwrap();
        let o = st.orders.get_mut(&id).unwrap();
        o.note = Some("changed".into());
        o.updated_at = tributary_sandbox::now_rfc3339();
    });
    let q = "query($q: String, $after: String) { orders(first: 1, query: $q, after: $after) { edges { cursor node { id note } } pageInfo { hasNextPage endCursor } } }";
    let (_, r) = s
        .gql(q, json!({"q": format!("updated_at:>'{since}'")}))
        .await;
    let edges = r["data"]["orders"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["id"], b.order_id.as_str());
    assert_eq!(r["data"]["orders"]["pageInfo"]["hasNextPage"], false);

    let (_, all) = s.gql(q, json!({})).await;
    assert_eq!(
        all["data"]["orders"]["edges"][0]["node"]["id"],
        a.order_id.as_str()
    );
    let cursor = all["data"]["orders"]["pageInfo"]["endCursor"].clone();
    let (_, next) = s.gql(q, json!({"after": cursor})).await;
    assert_eq!(
        next["data"]["orders"]["edges"][0]["node"]["id"],
        b.order_id.as_str()
    );

    let rest = s
        .http
        .get(format!(
            "{}/admin/api/2026-04/orders.json?updated_at_min={since}",
            s.emu.base_url()
        ))
        .header("X-Shopify-Access-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert!(rest
        .headers()
        .get("x-shopify-shop-api-call-limit")
        .is_some());
    let body: Value = rest.json().await.unwrap();
    assert_eq!(body["orders"].as_array().unwrap().len(), 1);
    assert_eq!(body["orders"][0]["note"], "changed");
}

#[tokio::test]
async fn mutations_fire_signed_webhooks() {
    let secret = "shpss_secret";
    let rx = common::receiver(move |h, body| {
        h.get("x-shopify-hmac-sha256").and_then(|v| v.to_str().ok())
            == Some(common::hmac_b64(secret.as_bytes(), body).as_str())
    })
    .await;
    let s = shop(ShopifyOptions {
        webhook: Some(WebhookSubscription {
            url: rx.url.clone(),
            secret: secret.into(),
            policy: RetryPolicy::default(),
        }),
        ..ShopifyOptions::default()
    })
    .await;
    s.gql(SET, s.set_vars(3, None, "w-1")).await;
    assert!(common::eventually(|| !rx.all().is_empty()).await);
    let got = &rx.all()[0];
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("x-shopify-topic"),
        Some("inventory_levels/update")
    );
    let payload: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(payload["available"], 3);
}

/// One document of several aliased `inventorySetQuantities`, each with its own variables
/// and `@idempotent` key (what the Shopify sink sends for a batch of inventory events).
fn aliased_set(n: usize) -> String {
    let defs: Vec<String> = (0..n)
        .map(|i| format!("$i{i}: InventorySetQuantitiesInput!, $k{i}: String!"))
        .collect();
    let fields: Vec<String> = (0..n)
        .map(|i| format!("m{i}: inventorySetQuantities(input: $i{i}) @idempotent(key: $k{i}) {{ inventoryAdjustmentGroup {{ reason }} userErrors {{ field message code }} }}"))
        .collect();
    format!(
        "mutation SetStock({}) {{ {} }}",
        defs.join(", "),
        fields.join(" ")
    )
}

fn set_input(item: &str, location: &str, quantity: i64, change_from: Option<i64>) -> Value {
    json!({"name": "available", "reason": "correction", "referenceDocumentUri": "tributary://event/x",
           "quantities": [{"inventoryItemId": item, "locationId": location, "quantity": quantity, "changeFromQuantity": change_from}]})
}

/// Variables of an aliased document: `(input, key)` per field, in order.
fn aliased_vars(fields: &[(Value, &str)]) -> Value {
    let mut vars = serde_json::Map::new();
    for (i, (input, key)) in fields.iter().enumerate() {
        vars.insert(format!("i{i}"), input.clone());
        vars.insert(format!("k{i}"), json!(key));
    }
    Value::Object(vars)
}

#[tokio::test]
async fn aliased_mutations_run_each_under_its_own_idempotency_key() {
    let s = shop(ShopifyOptions::default()).await;
    let more = s.emu.add_product(
        "Plates",
        &[
            VariantSeed {
                sku: "PLATE-1".into(),
                price: "4.00".into(),
            },
            VariantSeed {
                sku: "PLATE-2".into(),
                price: "4.00".into(),
            },
        ],
    );
    let (b, c) = (more.variants[0].1.clone(), more.variants[1].1.clone());
    s.emu.set_inventory(&b, &s.location, 1).unwrap();
    let level_gid = |item: &str| {
        let i = item.rsplit('/').next().unwrap().parse().unwrap();
        let l = s.location.rsplit('/').next().unwrap().parse().unwrap();
        inventory_level_gid(i, l)
    };

    // Three fields: A and C apply; B's compare-and-swap is stale (a userError for B only).
    let doc = aliased_set(3);
    let vars = aliased_vars(&[
        (set_input(&s.item, &s.location, 10, None), "key-a"),
        (set_input(&b, &s.location, 20, Some(99)), "key-b"),
        (set_input(&c, &s.location, 30, None), "key-c"),
    ]);
    let (status, first) = s.gql(&doc, vars).await;
    assert_eq!(status, 200);
    assert!(first["errors"].is_null(), "{first}");
    assert_eq!(first["data"]["m0"]["userErrors"], json!([]));
    assert_eq!(
        first["data"]["m1"]["userErrors"][0]["code"],
        "CHANGE_FROM_QUANTITY_STALE"
    );
    assert_eq!(first["data"]["m2"]["userErrors"], json!([]));
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 10);
    assert_eq!(s.emu.inventory(&b, &s.location).unwrap().available, 1);
    assert_eq!(s.emu.inventory(&c, &s.location).unwrap().available, 30);
    assert_eq!(
        (
            s.emu.idempotent_applies("key-a"),
            s.emu.idempotent_applies("key-b"),
            s.emu.idempotent_applies("key-c")
        ),
        (1, 0, 1)
    );
    // The cost is the sum of the fields' (10 each), charged once for the document.
    assert_eq!(first["extensions"]["cost"]["requestedQueryCost"], 30.0);
    assert_eq!(first["extensions"]["cost"]["actualQueryCost"], 30.0);

    // A replay of A in another document, under another alias, next to a new key D: A is
    // answered from the store under its own key (no second write), D applies.
    let vars = aliased_vars(&[
        (set_input(&b, &s.location, 21, None), "key-d"),
        (set_input(&s.item, &s.location, 10, None), "key-a"),
    ]);
    let (_, second) = s.gql(&aliased_set(2), vars).await;
    assert_eq!(second["data"]["m1"], first["data"]["m0"]);
    assert_eq!(second["data"]["m0"]["userErrors"], json!([]));
    assert_eq!(s.emu.idempotent_replays("key-a"), 1);
    assert_eq!(s.emu.idempotent_applies("key-a"), 1);
    assert_eq!(s.emu.entity_writes(&level_gid(&s.item)), 1);
    assert_eq!(s.emu.inventory(&b, &s.location).unwrap().available, 21);

    // A single-field document with C's key gets C's stored payload too.
    let (_, single) = s
        .gql(SET, {
            let mut v = set_input(&c, &s.location, 30, None);
            v = json!({"input": v, "key": "key-c"});
            v
        })
        .await;
    assert_eq!(
        single["data"]["inventorySetQuantities"],
        first["data"]["m2"]
    );
    assert_eq!(s.emu.idempotent_applies("key-c"), 1);
    assert_eq!(s.emu.entity_writes(&level_gid(&c)), 1);

    // One field reusing a key with other parameters: that field fails (null, an error with
    // its path); the next field of the document still runs.
    let vars = aliased_vars(&[
        (set_input(&s.item, &s.location, 11, None), "key-a"),
        (set_input(&c, &s.location, 31, None), "key-e"),
    ]);
    let (status, mixed) = s.gql(&aliased_set(2), vars).await;
    assert_eq!(status, 200);
    assert!(mixed["data"]["m0"].is_null(), "{mixed}");
    assert_eq!(mixed["errors"][0]["path"], json!(["m0"]));
    assert_eq!(
        mixed["errors"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    );
    assert_eq!(mixed["data"]["m1"]["userErrors"], json!([]));
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 10);
    assert_eq!(s.emu.inventory(&c, &s.location).unwrap().available, 31);

    // An unknown field fails the whole document before anything runs.
    let bad = "mutation($i0: InventorySetQuantitiesInput!, $k0: String!) { m0: inventorySetQuantities(input: $i0) @idempotent(key: $k0) { userErrors { code } } m1: launchRocket(input: {}) { id } }";
    let (_, refused) = s
        .gql(
            bad,
            aliased_vars(&[(set_input(&s.item, &s.location, 12, None), "key-f")]),
        )
        .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "undefinedField");
    assert_eq!(s.emu.idempotent_applies("key-f"), 0);
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 10);
}

#[tokio::test]
async fn an_aliased_document_over_the_bucket_is_throttled_as_a_whole() {
    let s = shop(ShopifyOptions {
        bucket_size: 25.0,
        restore_rate: 1.0,
        ..ShopifyOptions::default()
    })
    .await;
    let vars = aliased_vars(&[
        (set_input(&s.item, &s.location, 1, None), "t-0"),
        (set_input(&s.item, &s.location, 2, None), "t-1"),
        (set_input(&s.item, &s.location, 3, None), "t-2"),
    ]);
    let (status, throttled) = s.gql(&aliased_set(3), vars.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(throttled["errors"][0]["extensions"]["code"], "THROTTLED");
    assert_eq!(throttled["extensions"]["cost"]["requestedQueryCost"], 30.0);
    assert!(throttled["data"].is_null());
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 5);
    assert_eq!(s.emu.idempotent_applies("t-0"), 0);
    assert_eq!(s.emu.throttled_count(), 1);
    // Two fields (20 points) fit the 25-point bucket.
    let vars = aliased_vars(&[
        (set_input(&s.item, &s.location, 1, None), "t-0"),
        (set_input(&s.item, &s.location, 2, None), "t-1"),
    ]);
    let (_, ok) = s.gql(&aliased_set(2), vars).await;
    assert!(ok["errors"].is_null(), "{ok}");
    assert_eq!(s.emu.inventory(&s.item, &s.location).unwrap().available, 2);
    // Fields run in document order: the same level written twice ends at the second value.
    assert_eq!(
        ok["data"]["m1"]["inventoryAdjustmentGroup"]["reason"],
        "correction"
    );
}

//! Every document the Shopify sink sends, against the emulator's cost rules (Shopify's): the
//! cost the sink claims is what Shopify will charge, so its pacing is right, and no document
//! exceeds the 1000-point single query limit at any page size the config allows.

use serde_json::{json, Map, Value};
use tributary_sandbox::shopify::{requested_cost, MAX_QUERY_COST};

use super::{customers, items_cost, levels, lookup, orders, ITEMS, MUTATION_COST};

fn cost(query: &str, variables: Value) -> f64 {
    let Value::Object(vars) = variables else {
        unreachable!("variables are an object")
    };
    requested_cost(query, &vars).expect("the document parses")
}

#[test]
fn claimed_costs_are_the_documents_requested_costs() {
    let id = json!({"id": "gid://shopify/Order/1"});
    let claims = [
        (orders::ORDER_ATTRIBUTES, &id, orders::ORDER_ATTRIBUTES_COST),
        (
            customers::CUSTOMER_BY_EMAIL,
            &json!({"q": "email:a@b.c"}),
            customers::CUSTOMER_BY_EMAIL_COST,
        ),
    ];
    for (query, vars, claimed) in claims {
        let requested = cost(query, vars.clone());
        assert_eq!(requested, claimed, "{query}");
        assert!(requested <= MAX_QUERY_COST, "{query}");
    }
    for first in [1, 100, 250] {
        let vars = json!({"id": "gid://shopify/Location/1", "first": first, "after": null});
        assert_eq!(cost(levels::LEVELS, vars), levels::levels_cost(first));
    }
    assert!(levels::levels_cost(250) <= MAX_QUERY_COST);
    for first in [1, 66, 250] {
        let vars = json!({"first": first, "after": null});
        assert_eq!(cost(ITEMS, vars), items_cost(first));
    }
    assert!(items_cost(250) <= MAX_QUERY_COST);
    for (orders, lines) in [(2, 25), (1, 96), (1, 1)] {
        let vars = json!({"id": "o", "after": null, "orders": orders, "lines": lines});
        let requested = cost(lookup::ORDER_FULFILLMENT, vars);
        assert_eq!(requested, lookup::order_fulfillment_cost(orders, lines));
    }
    assert_eq!(lookup::order_fulfillment_cost(2, 25), 111.0);
    for first in [1, 98, 250] {
        let vars = json!({"id": "fo", "after": null, "first": first});
        let requested = cost(lookup::FULFILLMENT_ORDER_LINES, vars);
        assert_eq!(requested, lookup::fulfillment_order_lines_cost(first));
    }
    assert!(lookup::fulfillment_order_lines_cost(250) <= MAX_QUERY_COST);
    // Aliased mutations: 10 points a field, whatever they select.
    let doc = "mutation M($a: X!, $b: X!) { m0: inventorySetQuantities(input: $a) @idempotent(key: \"k0\") { inventoryAdjustmentGroup { id } userErrors { field } } m1: inventorySetQuantities(input: $b) @idempotent(key: \"k1\") { userErrors { code } } }";
    assert_eq!(cost(doc, Value::Object(Map::new())), 2.0 * MUTATION_COST);
}

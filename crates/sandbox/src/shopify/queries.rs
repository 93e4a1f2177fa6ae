//! Read queries for reconciliation: GraphQL connections filtered by `updated_at`, single
//! lookups, and the legacy REST `orders.json` / `customers.json` with `updated_at_min`.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::outcome::GqlError;
use super::state::{
    customer_node, fulfillment_order_node, gid, inventory_level_node, parse_gid, variant_node,
    ShopState,
};
use super::webhooks::{customer_payload, order_payload};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The query root fields the emulator knows (what [`execute`] dispatches).
pub const FIELDS: &[&str] = &[
    "orders",
    "customers",
    "products",
    "shop",
    "locations",
    "location",
    "order",
    "customer",
    "product",
    "productVariant",
    "productVariants",
    "fulfillmentOrder",
    "inventoryItem",
];

/// Runs query root field `name`; `None` if the emulator does not know it.
pub fn execute(
    s: &ShopState,
    name: &str,
    args: &Map<String, Value>,
) -> Option<Result<Value, GqlError>> {
    let id_arg = |kind: &str| {
        args.get("id")
            .and_then(Value::as_str)
            .and_then(|g| parse_gid(g, kind))
    };
    Some(Ok(match name {
        "orders" => {
            return Some(connection(
                s.orders
                    .values()
                    .map(|o| (o.updated_at.clone(), o.id, s.order_node(o)))
                    .collect(),
                args,
            ))
        }
        "customers" => {
            return Some(connection(
                s.customers
                    .values()
                    .map(|c| (c.updated_at.clone(), c.id, customer_node(c)))
                    .collect(),
                args,
            ))
        }
        "products" => {
            return Some(connection(
                s.products
                    .values()
                    .map(|p| (p.updated_at.clone(), p.id, s.product_node(p)))
                    .collect(),
                args,
            ))
        }
        "productVariants" => {
            return Some(connection(
                s.variants
                    .values()
                    .map(|v| (v.updated_at.clone(), v.id, variant_node(v)))
                    .collect(),
                args,
            ))
        }
        "shop" => json!({"name": "Tributary sandbox", "myshopifyDomain": "sandbox.myshopify.com"}),
        "locations" => {
            return Some(connection(
                s.locations
                    .values()
                    .map(|l| (String::new(), l.id, json!({"id": gid("Location", l.id), "name": l.name})))
                    .collect(),
                args,
            ))
        }
        // Nested connections come whole; `cost::page_nested` pages them by their arguments.
        "location" => id_arg("Location")
            .and_then(|id| s.locations.get(&id))
            .map(|l| {
                let levels: Vec<Value> = s
                    .inventory
                    .iter()
                    .filter(|((_, loc), _)| *loc == l.id)
                    .map(|((item, loc), level)| inventory_level_node(*item, *loc, level))
                    .collect();
                json!({"id": gid("Location", l.id), "name": l.name,
                       "inventoryLevels": {"nodes": levels, "pageInfo": {"hasNextPage": false, "endCursor": null}}})
            })
            .unwrap_or(Value::Null),
        "order" => id_arg("Order")
            .and_then(|id| s.orders.get(&id))
            .map(|o| s.order_node(o))
            .unwrap_or(Value::Null),
        "fulfillmentOrder" => id_arg("FulfillmentOrder")
            .and_then(|fo| s.order_by_fulfillment_order(fo))
            .and_then(|id| s.orders.get(&id))
            .map(fulfillment_order_node)
            .unwrap_or(Value::Null),
        "customer" => id_arg("Customer")
            .and_then(|id| s.customers.get(&id))
            .map(customer_node)
            .unwrap_or(Value::Null),
        "product" => id_arg("Product")
            .and_then(|id| s.products.get(&id))
            .map(|p| s.product_node(p))
            .unwrap_or(Value::Null),
        "productVariant" => id_arg("ProductVariant")
            .and_then(|id| s.variants.get(&id))
            .map(variant_node)
            .unwrap_or(Value::Null),
        "inventoryItem" => {
            match id_arg("InventoryItem").and_then(|id| s.variant_by_item(id).map(|v| (id, v))) {
                None => Value::Null,
                Some((item, v)) => {
                    let levels: Vec<Value> = s.inventory.iter().filter(|((i, _), _)| *i == item).map(|((_, loc), l)| json!({
                    "location": {"id": gid("Location", *loc)}, "updatedAt": l.updated_at,
                    "quantities": [{"name": "available", "quantity": l.available}, {"name": "on_hand", "quantity": l.on_hand}]})).collect();
                    json!({"id": gid("InventoryItem", item), "sku": v.sku, "inventoryLevels": {"nodes": levels}})
                }
            }
        }
        _ => return None,
    }))
}

/// The terms of a search query such as `updated_at:>'2026-01-01T00:00:00Z'` or
/// `email:ann@example.com`: `(field, operator, value)`; the emulator knows these two fields.
fn search_terms(query: &str) -> Result<Vec<(String, String, String)>, GqlError> {
    let mut out = Vec::new();
    for term in query
        .split_whitespace()
        .filter(|t| !t.eq_ignore_ascii_case("AND"))
    {
        let Some((field, rest)) = term
            .split_once(':')
            .filter(|(f, _)| matches!(*f, "updated_at" | "email"))
        else {
            return Err(GqlError {
                message: format!(
                    "Unsupported search term '{term}' (emulator: only updated_at and email)"
                ),
                code: "BAD_REQUEST",
            });
        };
        let op_len = rest.chars().take_while(|c| "<>=".contains(*c)).count();
        let (op, value) = rest.split_at(op_len);
        out.push((
            field.to_string(),
            op.to_string(),
            value.trim_matches(|c| c == '\'' || c == '"').to_string(),
        ));
    }
    Ok(out)
}

fn matches(node: &Value, updated: &str, terms: &[(String, String, String)]) -> bool {
    terms.iter().all(|(field, op, v)| {
        if field == "email" {
            return node["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(v));
        }
        match op.as_str() {
            ">" => updated > v.as_str(),
            ">=" => updated >= v.as_str(),
            "<" => updated < v.as_str(),
            "<=" => updated <= v.as_str(),
            _ => updated == v.as_str(),
        }
    })
}

/// A Relay connection over `(updated_at, id, node)`, sorted by update time then id.
fn connection(
    mut items: Vec<(String, u64, Value)>,
    args: &Map<String, Value>,
) -> Result<Value, GqlError> {
    let terms = match args.get("query").and_then(Value::as_str) {
        Some(q) => search_terms(q)?,
        None => vec![],
    };
    items.retain(|(u, _, node)| matches(node, u, &terms));
    items.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    if let Some(after) = args.get("after").and_then(Value::as_str) {
        let decoded = B64
            .decode(after)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((u, id)) = decoded
            .as_deref()
            .and_then(|d| d.rsplit_once('|'))
            .and_then(|(u, id)| Some((u.to_string(), id.parse::<u64>().ok()?)))
        else {
            return Err(GqlError {
                message: "Invalid cursor".into(),
                code: "BAD_REQUEST",
            });
        };
        items.retain(|(iu, iid, _)| (iu.as_str(), *iid) > (u.as_str(), id));
    }
    let first = args
        .get("first")
        .and_then(Value::as_u64)
        .unwrap_or(50)
        .min(250) as usize;
    let has_next = items.len() > first;
    items.truncate(first);
    let edges: Vec<Value> = items
        .iter()
        .map(|(u, id, node)| json!({"cursor": B64.encode(format!("{u}|{id}")), "node": node}))
        .collect();
    let end = edges.last().and_then(|e| e.get("cursor")).cloned();
    Ok(
        json!({"edges": edges, "nodes": items.into_iter().map(|i| i.2).collect::<Vec<_>>(),
              "pageInfo": {"hasNextPage": has_next, "endCursor": end}}),
    )
}

/// REST `GET /admin/api/<v>/<resource>.json`: `orders` or `customers`, `updated_at_min`, `limit`.
pub fn rest_list(s: &ShopState, resource: &str, params: &[(String, String)]) -> Option<Value> {
    let min = params
        .iter()
        .find(|(k, _)| k == "updated_at_min")
        .map(|(_, v)| v.clone());
    let limit = params
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(50usize)
        .min(250);
    let keep = |u: &str| min.as_deref().is_none_or(|m| u >= m);
    Some(match resource {
        "orders" => {
            json!({"orders": s.orders.values().filter(|o| keep(&o.updated_at)).take(limit).map(|o| order_payload(s, o)).collect::<Vec<_>>()})
        }
        "customers" => {
            json!({"customers": s.customers.values().filter(|c| keep(&c.updated_at)).take(limit).map(customer_payload).collect::<Vec<_>>()})
        }
        _ => return None,
    })
}

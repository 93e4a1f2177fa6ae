//! Query cost as Shopify computes it, and the paging of nested connections.
//!
//! Shopify's rules (shopify.dev, "GraphQL Admin API rate limits"): a scalar or enum costs 0,
//! an object 1, a connection 2 plus its page size (`first` or `last`) times the cost of one
//! item's selection, so nested connections multiply; a mutation field costs 10. The
//! *requested* cost is computed from the document before it runs, and a document over 1000
//! points is refused (`MAX_COST_EXCEEDED`) without running; the bucket is charged the
//! requested cost and, after execution, refunded requested − *actual*, the actual cost being
//! counted over what was really returned (the nodes a connection had, not its page size).
//!
//! The emulator has no schema, so a field's kind comes from the document: no selection set
//! is a scalar; a selection set with a `first`/`last` argument is a connection; any other
//! selection set is an object (also a plain list of objects such as `fulfillments` or
//! `quantities`, which Shopify charges as one object). `edges` is the list wrapper (its
//! `node` is the object) and `pageInfo` is part of the connection's 2.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::graphql::{Field, OpKind, Operation, RootField};
use super::outcome::GqlError;

/// The single query limit, whatever the bucket size.
pub const MAX_QUERY_COST: f64 = 1000.0;
/// Requested (and actual) cost of one mutation field.
pub const MUTATION_COST: f64 = 10.0;
/// Page size of a connection whose `first`/`last` is null (the emulator's leniency).
const DEFAULT_PAGE: u64 = 50;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The requested cost of `query` with `variables`, as the emulator charges it: for tests
/// that hold a client's claimed costs to the documents it sends.
pub fn requested_cost(query: &str, variables: &Map<String, Value>) -> Result<f64, String> {
    Ok(requested(&super::graphql::parse(query, variables)?))
}

/// The requested cost of a whole document: the sum of its root fields'.
pub fn requested(op: &Operation) -> f64 {
    match op.kind {
        OpKind::Mutation => MUTATION_COST * op.fields.len() as f64,
        OpKind::Query => op.fields.iter().map(|f| field_cost(&root(f))).sum(),
    }
}

/// The actual cost of one root query field given its answer.
pub fn actual(field: &RootField, answer: &Value) -> f64 {
    let f = root(field);
    field_actual(&f, answer, false).min(field_cost(&f))
}

/// Pages the nested connections of a root field's answer by their selection's arguments
/// (the root connection is paged by the query itself), and copies aliased nested fields to
/// their alias.
pub fn page_nested(field: &RootField, answer: &mut Value) -> Result<(), GqlError> {
    shape(&field.selection, answer)
}

fn root(f: &RootField) -> Field {
    Field {
        response_key: f.response_key.clone(),
        name: f.name.clone(),
        args: f.args.clone(),
        children: f.selection.clone(),
    }
}

/// `Some(page size)` for a connection (a field with `first` or `last`).
fn page_size(f: &Field) -> Option<u64> {
    let arg = f.args.get("first").or_else(|| f.args.get("last"))?;
    Some(arg.as_u64().unwrap_or(DEFAULT_PAGE))
}

fn selection_cost(children: &[Field]) -> f64 {
    children.iter().map(field_cost).sum()
}

fn field_cost(f: &Field) -> f64 {
    if f.children.is_empty() || f.name == "pageInfo" {
        return 0.0;
    }
    if f.name == "edges" {
        return selection_cost(&f.children);
    }
    match page_size(f) {
        Some(n) => 2.0 + n as f64 * selection_cost(&f.children),
        None => 1.0 + selection_cost(&f.children),
    }
}

fn selection_actual(children: &[Field], v: &Value, in_connection: bool) -> f64 {
    children
        .iter()
        .map(|c| field_actual(c, &v[c.response_key.as_str()], in_connection))
        .sum()
}

/// What `f` cost given its answer `v`; `in_connection`: `f` is a direct child of a
/// connection, where `nodes` and `edges` hold one entry per returned item.
fn field_actual(f: &Field, v: &Value, in_connection: bool) -> f64 {
    if f.children.is_empty() || f.name == "pageInfo" {
        return 0.0;
    }
    let items = || v.as_array().into_iter().flatten();
    if f.name == "edges" {
        return items()
            .map(|e| selection_actual(&f.children, e, false))
            .sum();
    }
    let connection = page_size(f).is_some();
    if v.is_null() {
        // Resolved to null: the lookup cost its points, nothing below it was returned.
        return if connection { 2.0 } else { 1.0 };
    }
    if connection {
        return 2.0 + selection_actual(&f.children, v, true);
    }
    match v {
        Value::Array(_) if in_connection => items()
            .map(|n| 1.0 + selection_actual(&f.children, n, false))
            .sum(),
        // A plain list of objects is charged as one object (as requested): its dearest entry.
        Value::Array(_) => {
            1.0 + items()
                .map(|n| selection_actual(&f.children, n, false))
                .fold(0.0, f64::max)
        }
        _ => 1.0 + selection_actual(&f.children, v, false),
    }
}

fn shape(children: &[Field], v: &mut Value) -> Result<(), GqlError> {
    if let Value::Array(items) = v {
        for item in items {
            shape(children, item)?;
        }
        return Ok(());
    }
    let Value::Object(map) = v else {
        return Ok(());
    };
    for c in children {
        let Some(x) = map.get_mut(&c.name) else {
            continue;
        };
        if !c.children.is_empty() {
            if page_size(c).is_some() && c.name != "edges" {
                page(c, x)?;
            }
            shape(&c.children, x)?;
        }
        if c.response_key != c.name {
            let copy = x.clone();
            map.insert(c.response_key.clone(), copy);
        }
    }
    Ok(())
}

/// One page of a nested connection `{nodes}` or `{edges}`, by `first`/`last`/`after`/
/// `before`. Cursors name the node's id (or its position when it has none).
fn page(f: &Field, conn: &mut Value) -> Result<(), GqlError> {
    let nodes: Vec<Value> = match (conn.get("nodes"), conn.get("edges")) {
        (Some(Value::Array(n)), _) => n.clone(),
        (_, Some(Value::Array(e))) => e.iter().map(|e| e["node"].clone()).collect(),
        _ => return Ok(()),
    };
    let cursors: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n["id"].as_str() {
            Some(id) => B64.encode(format!("id|{id}")),
            None => B64.encode(format!("at|{i}")),
        })
        .collect();
    let position = |arg: &str| -> Result<Option<usize>, GqlError> {
        let Some(c) = f.args.get(arg).and_then(Value::as_str) else {
            return Ok(None);
        };
        cursors
            .iter()
            .position(|x| x == c)
            .map(Some)
            .ok_or_else(|| GqlError {
                message: format!("Invalid cursor for arguments '{arg}'"),
                code: "BAD_REQUEST",
            })
    };
    let mut start = position("after")?.map_or(0, |p| p + 1);
    let mut end = position("before")?.unwrap_or(nodes.len()).max(start);
    let n = |k: &str| f.args.get(k).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(first) = n("first") {
        end = end.min(start + first);
    }
    if let Some(last) = n("last") {
        start = start.max(end.saturating_sub(last));
    }
    let edges: Vec<Value> = (start..end)
        .map(|i| json!({"cursor": cursors[i], "node": nodes[i]}))
        .collect();
    *conn = json!({
        "edges": edges,
        "nodes": &nodes[start..end],
        "pageInfo": {
            "hasNextPage": end < nodes.len(), "hasPreviousPage": start > 0,
            "startCursor": cursors.get(start).filter(|_| start < end),
            "endCursor": end.checked_sub(1).filter(|_| start < end).map(|i| &cursors[i]),
        },
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::graphql::parse;
    use super::*;

    fn cost(doc: &str, vars: Value) -> f64 {
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        requested(&parse(doc, &vars).expect("parses"))
    }

    #[test]
    fn scalars_objects_and_connections() {
        assert_eq!(cost("{ shop { name myshopifyDomain } }", json!({})), 1.0);
        // 2 + 10 × (node 1)
        assert_eq!(
            cost(
                "{ orders(first: 10) { edges { cursor node { id } } pageInfo { hasNextPage } } }",
                json!({})
            ),
            12.0
        );
        // An object inside each node: 2 + 5 × (1 + customer 1).
        assert_eq!(
            cost(
                "{ orders(first: 5) { nodes { id customer { id } } } }",
                json!({})
            ),
            12.0
        );
        // `last`, and a lookup with a nested connection: 1 + 2 + 3 × 1.
        assert_eq!(
            cost(
                "{ order(id: \"x\") { lineItems(last: 3) { nodes { sku } } } }",
                json!({})
            ),
            6.0
        );
        assert_eq!(
            cost("mutation { a: orderUpdate(input: {}) { order { id } } b: orderUpdate(input: {}) { userErrors { field } } }", json!({})),
            20.0
        );
    }

    #[test]
    fn nested_connections_multiply_by_the_parent_page_size() {
        // Per order: 1 + lineItems(2 + 250 × (1 + price 1 + money 1)) = 753; × 50 + 2.
        let doc = "query($first: Int!) { orders(first: $first) { edges { node { id lineItems(first: 250) { nodes { sku originalUnitPriceSet { shopMoney { amount } } } } } } } }";
        assert_eq!(cost(doc, json!({"first": 50})), 2.0 + 50.0 * 753.0);
        assert_eq!(cost(doc, json!({"first": 1})), 755.0);
        // A variable sizes a nested connection too; a plain list of objects is one object.
        let doc = "query($n: Int!) { order(id: \"x\") { fulfillments { trackingInfo { number } } fulfillmentOrders(first: 2) { nodes { lineItems(first: $n) { nodes { lineItem { sku } } pageInfo { endCursor } } } } } }";
        assert_eq!(
            cost(doc, json!({"n": 10})),
            1.0 + 2.0 + 2.0 + 2.0 * (1.0 + 2.0 + 10.0 * 2.0)
        );
    }

    #[test]
    fn actual_cost_counts_the_nodes_returned() {
        let vars = Map::new();
        let op = parse("{ orders(first: 10) { edges { node { id lines: lineItems(first: 5) { nodes { sku } } } } } }", &vars)
            .expect("parses");
        let answer = json!({"edges": [
            {"node": {"id": "a", "lines": {"nodes": [{"sku": "x"}, {"sku": "y"}]}}},
            {"node": {"id": "b", "lines": {"nodes": []}}}]});
        // 2 + order a (1 + 2 + 2) + order b (1 + 2 + 0); requested 2 + 10 × (1 + 2 + 5).
        assert_eq!(actual(&op.fields[0], &answer), 10.0);
        assert_eq!(requested(&op), 82.0);
        assert_eq!(actual(&op.fields[0], &json!({"edges": []})), 2.0);
    }

    #[test]
    fn nested_connections_are_paged_by_their_arguments() {
        let vars = json!({"after": null});
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        let doc = |after: &str| {
            format!("{{ order(id: \"x\") {{ id items: lineItems(first: 2{after}) {{ nodes {{ id }} pageInfo {{ hasNextPage endCursor }} }} }} }}")
        };
        let order =
            json!({"id": "x", "lineItems": {"nodes": [{"id": "1"}, {"id": "2"}, {"id": "3"}]}});
        let op = parse(&doc(""), &vars).expect("parses");
        let mut first = order.clone();
        page_nested(&op.fields[0], &mut first).expect("pages");
        assert_eq!(first["items"]["nodes"], json!([{"id": "1"}, {"id": "2"}]));
        assert_eq!(first["items"]["pageInfo"]["hasNextPage"], true);
        let cursor = first["items"]["pageInfo"]["endCursor"]
            .as_str()
            .expect("cursor");
        let op = parse(&doc(&format!(", after: \"{cursor}\"")), &vars).expect("parses");
        let mut second = order.clone();
        page_nested(&op.fields[0], &mut second).expect("pages");
        assert_eq!(second["items"]["nodes"], json!([{"id": "3"}]));
        assert_eq!(second["items"]["pageInfo"]["hasNextPage"], false);
        let op = parse(&doc(", after: \"bogus\""), &vars).expect("parses");
        assert!(page_nested(&op.fields[0], &mut order.clone()).is_err());
    }
}

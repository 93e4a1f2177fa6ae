//! HTTP handlers: GraphQL (auth, cost bucket, per-field `@idempotent` store, dispatch of
//! every root field) and REST lists.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::graphql::{self, OpKind, Operation, RootField};
use super::outcome::{Changed, GqlError};
use super::state::ShopState;
use super::{cost, mutations};
use super::{lock, queries, state, Shopify};
use crate::util::query_pairs;

fn gql_error(message: &str, code: &str) -> Value {
    json!({"errors": [{"message": message, "extensions": {"code": code}}]})
}

fn authenticate(shop: &Shopify, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if lock(&shop.inner.opts)
        .access_tokens
        .iter()
        .any(|t| t == token)
    {
        Ok(token.to_string())
    } else {
        Err((StatusCode::UNAUTHORIZED, Json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}))).into_response())
    }
}

/// Inventory and refund mutations need `@idempotent` from API version 2026-04.
fn idempotency_required(version: &str, field: &str) -> bool {
    let gated = matches!(
        field,
        "inventorySetQuantities" | "inventoryAdjustQuantities" | "refundCreate"
    );
    gated && (version >= "2026-04" || version == "unstable")
}

pub(super) async fn graphql(
    State(shop): State<Shopify>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match authenticate(&shop, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"errors": {"query": [format!("Required parameter missing or invalid: {e}")]}}))).into_response(),
    };
    let Some(query) = request.get("query").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": {"query": ["Required parameter missing or invalid"]}})),
        )
            .into_response();
    };
    let variables = request
        .get("variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let op = match graphql::parse(query, &variables) {
        Ok(op) => op,
        Err(msg) => return Json(gql_error(&msg, "PARSE_ERROR")).into_response(),
    };
    // An unknown field fails validation: nothing of the document runs, as on Shopify.
    if let Some(unknown) = op.fields.iter().find(|f| !known_field(op.kind, &f.name)) {
        let root = if op.kind == OpKind::Mutation {
            "Mutation"
        } else {
            "QueryRoot"
        };
        return Json(gql_error(
            &format!(
                "Field '{}' doesn't exist on type '{root}' (emulator subset)",
                unknown.name
            ),
            "undefinedField",
        ))
        .into_response();
    }
    // The requested cost is charged for the whole document at once, so a throttled document
    // runs none of its fields; what the answer did not use is refunded after execution.
    let requested = cost::requested(&op);
    let throttled_status = lock(&shop.inner.opts).throttled_status;
    if requested > cost::MAX_QUERY_COST {
        return Json(max_cost_exceeded(&shop, &token, requested)).into_response();
    }
    let (ok, available) = lock(&shop.inner.cost).take(&token, requested);
    if !ok {
        shop.with_state(|s| s.throttled += 1);
        let mut body = gql_error("Throttled", "THROTTLED");
        body["extensions"] = lock(&shop.inner.cost).cost_extension(requested, 0.0, available);
        let status = StatusCode::from_u16(throttled_status).unwrap_or(StatusCode::OK);
        return (status, Json(body)).into_response();
    }
    let (mut body, changed, actual) = execute(&shop, &version, op);
    let actual = actual.min(requested);
    body["extensions"] = {
        let mut bucket = lock(&shop.inner.cost);
        let available = bucket.refund(&token, requested - actual);
        bucket.cost_extension(requested, actual, available)
    };
    shop.fire(&changed);
    Json(body).into_response()
}

/// Shopify's answer to a document over the single query limit: nothing ran, nothing charged.
fn max_cost_exceeded(shop: &Shopify, token: &str, requested: f64) -> Value {
    let mut body = json!({"errors": [{
        "message": format!("Query cost is {requested}, which exceeds the single query max cost limit ({}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n", cost::MAX_QUERY_COST),
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": cost::MAX_QUERY_COST},
    }]});
    let mut bucket = lock(&shop.inner.cost);
    let available = bucket.available(token);
    body["extensions"] = bucket.cost_extension(requested, 0.0, available);
    body
}

fn known_field(kind: OpKind, name: &str) -> bool {
    match kind {
        OpKind::Query => queries::FIELDS.contains(&name),
        OpKind::Mutation => mutations::FIELDS.contains(&name),
    }
}

/// Runs every root field in order under one state lock; returns the response body, what
/// changed and the actual cost. A field's error nulls that field only (`errors[].path`
/// names it); the others still run. When no field produced a value the body has `errors` only, as a
/// single-field document always had.
fn execute(shop: &Shopify, version: &str, op: Operation) -> (Value, Vec<Changed>, f64) {
    let mut s = lock(&shop.inner.state);
    let mut data = Map::new();
    let mut errors = Vec::new();
    let mut changed = Vec::new();
    let mut actual = 0.0;
    let fields = op.fields.len();
    for field in op.fields {
        let result = match op.kind {
            OpKind::Query => match queries::execute(&s, &field.name, &field.args)
                .map(|r| r.and_then(|mut v| cost::page_nested(&field, &mut v).map(|()| v)))
            {
                Some(Ok(v)) => {
                    actual += cost::actual(&field, &v);
                    Ok((field.response_key, v))
                }
                Some(Err(e)) => Err((field.response_key, e)),
                None => {
                    let e = undefined(&field, "QueryRoot");
                    Err((field.response_key, e))
                }
            },
            OpKind::Mutation => {
                actual += cost::MUTATION_COST;
                mutate(&mut s, version, field, &mut changed)
            }
        };
        match result {
            Ok((key, v)) => {
                data.insert(key, v);
            }
            Err((key, e)) => {
                errors.push(json!({"message": e.message, "path": [key],
                                   "extensions": {"code": e.code}}));
                data.insert(key, Value::Null);
            }
        }
    }
    if errors.len() == fields {
        return (json!({ "errors": errors }), changed, actual);
    }
    let mut body = json!({ "data": data });
    if !errors.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    (body, changed, actual)
}

fn undefined(field: &RootField, root: &str) -> GqlError {
    GqlError {
        message: format!(
            "Field '{}' doesn't exist on type '{root}' (emulator subset)",
            field.name
        ),
        code: "undefinedField",
    }
}

/// One mutation field with its own `@idempotent` key: a key seen before answers its stored
/// payload (no second side effect), whatever else the document holds. Returns the field's
/// response key with its payload or error.
fn mutate(
    s: &mut ShopState,
    version: &str,
    field: RootField,
    changed: &mut Vec<Changed>,
) -> Result<(String, Value), (String, GqlError)> {
    let RootField {
        response_key,
        name,
        args,
        idempotency_key,
        ..
    } = field;
    if idempotency_key.is_none() && idempotency_required(version, &name) {
        let e = GqlError {
            message: "The @idempotent directive is required for this mutation.".into(),
            code: "IDEMPOTENCY_KEY_REQUIRED",
        };
        return Err((response_key, e));
    }
    if let Some(key) = &idempotency_key {
        if let Some(stored) = s.idempotency.get_mut(key) {
            if stored.field != name || stored.args != args {
                let e = GqlError {
                    message: "The same idempotency key was used with different parameters.".into(),
                    code: "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                };
                return Err((response_key, e));
            }
            stored.replays += 1;
            return Ok((response_key, stored.payload.clone()));
        }
    }
    let (payload, applied) = match mutations::execute(s, &name, &args) {
        Some(Ok(outcome)) => outcome,
        Some(Err(e)) => return Err((response_key, e)),
        None => {
            let e = GqlError {
                message: format!(
                    "Field '{name}' doesn't exist on type 'Mutation' (emulator subset)"
                ),
                code: "undefinedField",
            };
            return Err((response_key, e));
        }
    };
    if let Some(key) = idempotency_key {
        if !applied.is_empty() {
            *s.idempotent_applies.entry(key.clone()).or_default() += 1;
        }
        s.idempotency.insert(
            key,
            state::IdempotentResult {
                field: name,
                args,
                payload: payload.clone(),
                replays: 0,
            },
        );
    }
    changed.extend(applied);
    Ok((response_key, payload))
}

pub(super) async fn rest(
    State(shop): State<Shopify>,
    Path((_version, resource)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let token = match authenticate(&shop, &headers) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (ok, available, wait) = {
        let mut rest = lock(&shop.inner.rest);
        let (ok, available) = rest.take(&token, 1.0);
        (ok, available, rest.wait_secs(&token, 1.0))
    };
    let used = 40 - available.floor() as i64;
    let limit_header = ("X-Shopify-Shop-Api-Call-Limit", format!("{used}/40"));
    if !ok {
        return (StatusCode::TOO_MANY_REQUESTS, [limit_header, ("Retry-After", format!("{}", wait.max(1.0)))],
            Json(json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}))).into_response();
    }
    let name = resource.strip_suffix(".json").unwrap_or(&resource);
    let params = query_pairs(uri.query());
    match shop.with_state(|s| queries::rest_list(s, name, &params)) {
        Some(body) => ([limit_header], Json(body)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [limit_header],
            Json(json!({"errors": "Not Found"})),
        )
            .into_response(),
    }
}

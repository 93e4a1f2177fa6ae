//! HTTP handlers: GraphQL (auth, cost bucket, `@idempotent` store, dispatch) and REST lists.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::graphql::{self, OpKind, Operation};
use super::mutations::{self, Changed};
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
    let requested = if op.kind == OpKind::Mutation {
        10.0
    } else {
        queries::cost(&op.args)
    };
    let (max, throttled_status) = {
        let o = lock(&shop.inner.opts);
        (o.bucket_size, o.throttled_status)
    };
    if requested > max.max(1000.0) {
        return Json(gql_error(
            &format!(
                "Query cost is {requested}, which exceeds the single query max cost limit (1000)."
            ),
            "MAX_COST_EXCEEDED",
        ))
        .into_response();
    }
    let (ok, available) = lock(&shop.inner.cost).take(&token, requested);
    let cost_ext = |actual: f64, available: f64| {
        lock(&shop.inner.cost).cost_extension(requested, actual, available)
    };
    if !ok {
        shop.with_state(|s| s.throttled += 1);
        let mut body = gql_error("Throttled", "THROTTLED");
        body["extensions"] = cost_ext(0.0, available);
        let status = StatusCode::from_u16(throttled_status).unwrap_or(StatusCode::OK);
        return (status, Json(body)).into_response();
    }
    let (mut body, changed) = execute(&shop, &version, &op);
    body["extensions"] = cost_ext(requested, available);
    shop.fire(&changed);
    Json(body).into_response()
}

/// Executes the operation under the state lock; returns the response body and what changed.
fn execute(shop: &Shopify, version: &str, op: &Operation) -> (Value, Vec<Changed>) {
    let mut s = lock(&shop.inner.state);
    if op.kind == OpKind::Query {
        return match queries::execute(&s, &op.field, &op.args) {
            Some(Ok(v)) => (json!({"data": {op.field.as_str(): v}}), vec![]),
            Some(Err(e)) => (gql_error(&e.message, e.code), vec![]),
            None => (
                gql_error(
                    &format!(
                        "Field '{}' doesn't exist on type 'QueryRoot' (emulator subset)",
                        op.field
                    ),
                    "undefinedField",
                ),
                vec![],
            ),
        };
    }
    if op.idempotency_key.is_none() && idempotency_required(version, &op.field) {
        return (
            gql_error(
                "The @idempotent directive is required for this mutation.",
                "IDEMPOTENCY_KEY_REQUIRED",
            ),
            vec![],
        );
    }
    let fingerprint = format!("{}:{}", op.field, Value::Object(op.args.clone()));
    if let Some(key) = &op.idempotency_key {
        if let Some(stored) = s.idempotency.get_mut(key) {
            if stored.fingerprint != fingerprint {
                return (
                    gql_error(
                        "The same idempotency key was used with different parameters.",
                        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                    ),
                    vec![],
                );
            }
            stored.replays += 1;
            return (stored.response.clone(), vec![]);
        }
    }
    let (body, changed) = match mutations::execute(&mut s, &op.field, &op.args) {
        Some(Ok((payload, changed))) => (json!({"data": {op.field.as_str(): payload}}), changed),
        Some(Err(e)) => return (gql_error(&e.message, e.code), vec![]),
        None => {
            return (
                gql_error(
                    &format!(
                        "Field '{}' doesn't exist on type 'Mutation' (emulator subset)",
                        op.field
                    ),
                    "undefinedField",
                ),
                vec![],
            )
        }
    };
    if let Some(key) = &op.idempotency_key {
        if !changed.is_empty() {
            *s.idempotent_applies.entry(key.clone()).or_default() += 1;
        }
        s.idempotency.insert(
            key.clone(),
            state::IdempotentResult {
                fingerprint,
                response: body.clone(),
                replays: 0,
            },
        );
    }
    (body, changed)
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

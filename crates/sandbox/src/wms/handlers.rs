//! WMS HTTP handlers: auth, rate limit, Idempotency-Key store, orders, cancellations, stock.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::state::{Adjustment, Idem, OrderLine, WmsOrder, WmsState, WmsStatus};
use super::{lock, problem, problem_body, problem_with, Wms};
use crate::util::{now_rfc3339, query_pairs};

/// API key check and the per-key rate limit.
pub(super) fn gate(wms: &Wms, headers: &HeaderMap) -> Result<(), Response> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let key = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header("x-api-key"))
        .unwrap_or_default();
    if !lock(&wms.inner.opts).api_keys.iter().any(|k| k == key) {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Missing or invalid API key",
        ));
    }
    let mut limiter = lock(&wms.inner.limiter);
    if !limiter.take(key, 1.0).0 {
        let wait = limiter.wait_secs(key, 1.0).max(1.0);
        let mut r = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Rate limit exceeded",
        );
        if let Ok(v) = HeaderValue::from_str(&format!("{wait}")) {
            r.headers_mut().insert("retry-after", v);
        }
        return Err(r);
    }
    Ok(())
}

pub(super) fn parse_json(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &format!("Malformed JSON: {e}"),
        )
    })
}

/// Runs `apply` at most once per Idempotency-Key: a repeat with the same request replays the
/// stored answer, a different request gets 422, one still in flight 409, none 400.
pub(super) async fn idempotent(
    wms: &Wms,
    headers: &HeaderMap,
    method_path: &str,
    body: &Value,
    apply: impl FnOnce(&mut WmsState) -> (StatusCode, Value),
) -> Response {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "Idempotency-Key header is required",
        );
    };
    let fingerprint = format!("{method_path} {body}");
    {
        let mut s = lock(&wms.inner.state);
        match s.idempotency.get_mut(&key) {
            Some(Idem::InFlight) => {
                return problem(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "A request with this Idempotency-Key is still being processed",
                )
            }
            Some(Idem::Done { fingerprint: f, .. }) if *f != fingerprint => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Unprocessable Entity",
                    "Idempotency-Key was already used with a different request",
                );
            }
            Some(Idem::Done {
                status,
                body,
                replays,
                ..
            }) => {
                *replays += 1;
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                return (
                    status,
                    [("idempotent-replayed", "true")],
                    Json(body.clone()),
                )
                    .into_response();
            }
            None => {
                s.idempotency.insert(key.clone(), Idem::InFlight);
            }
        }
    }
    // If the client goes away during the delay the future is dropped: release the key.
    let mut guard = InFlightGuard {
        wms,
        key: Some(key.clone()),
    };
    let delay = lock(&wms.inner.opts).processing_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    guard.key = None;
    let mut s = lock(&wms.inner.state);
    let (status, out) = apply(&mut s);
    if status.is_success() {
        *s.key_applies.entry(key.clone()).or_default() += 1;
    }
    s.idempotency.insert(
        key,
        Idem::Done {
            fingerprint,
            status: status.as_u16(),
            body: out.clone(),
            replays: 0,
        },
    );
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    (status, [("content-type", content_type)], Json(out)).into_response()
}

/// Removes an in-flight marker whose request was abandoned.
struct InFlightGuard<'a> {
    wms: &'a Wms,
    key: Option<String>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut s = lock(&self.wms.inner.state);
            if matches!(s.idempotency.get(&key), Some(Idem::InFlight)) {
                s.idempotency.remove(&key);
            }
        }
    }
}

fn order_json(o: &WmsOrder) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Validates a create-order body: the order lines, or field errors.
pub(super) fn validate_order(body: &Value) -> Result<(String, Vec<OrderLine>), Value> {
    let mut errors = serde_json::Map::new();
    let reference = body
        .get("reference_id")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty());
    if reference.is_none() {
        errors.insert("reference_id".into(), json!(["is required"]));
    }
    let mut lines = Vec::new();
    match body.get("products").and_then(Value::as_array) {
        Some(products) if !products.is_empty() => {
            for (i, p) in products.iter().enumerate() {
                let sku = p
                    .get("sku")
                    .or_else(|| p.get("reference_id"))
                    .and_then(Value::as_str);
                let qty = p.get("quantity").and_then(Value::as_i64);
                match (sku, qty) {
                    (Some(sku), Some(q)) if q > 0 && !sku.is_empty() => lines.push(OrderLine {
                        sku: sku.to_string(),
                        quantity: q,
                    }),
                    _ => {
                        errors.insert(
                            format!("products[{i}]"),
                            json!(["sku and a positive quantity are required"]),
                        );
                    }
                }
            }
        }
        _ => {
            errors.insert(
                "products".into(),
                json!(["must contain at least one product"]),
            );
        }
    }
    match reference {
        Some(r) if errors.is_empty() => Ok((r.to_string(), lines)),
        _ => Err(Value::Object(errors)),
    }
}

pub(super) async fn create_order(
    State(wms): State<Wms>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut created = None;
    let require_address = lock(&wms.inner.opts).require_address;
    let response = idempotent(&wms, &headers, "POST /orders", &body, |s| {
        let address_errors = super::address::check(body.get("recipient"), require_address);
        let checked = match validate_order(&body) {
            Ok(v) if address_errors.is_empty() => Ok(v),
            Ok(_) => Err(Value::Object(address_errors)),
            Err(Value::Object(mut errors)) => {
                errors.extend(address_errors);
                Err(Value::Object(errors))
            }
            Err(other) => Err(other),
        };
        let (reference, lines) = match checked {
            Ok(v) => v,
            Err(errors) => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    problem_body(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Validation failed",
                        "The order is invalid",
                        errors,
                    ),
                )
            }
        };
        if let Some(existing) = s
            .by_reference
            .get(&reference)
            .and_then(|id| s.orders.get(id))
        {
            return (StatusCode::OK, order_json(existing));
        }
        let id = s.next_id("ord");
        let now = now_rfc3339();
        let order = WmsOrder {
            id: id.clone(),
            reference_id: reference.clone(),
            status: WmsStatus::Pending,
            shipping_method: body
                .get("shipping_method")
                .and_then(Value::as_str)
                .map(str::to_string),
            recipient: body.get("recipient").cloned().unwrap_or(Value::Null),
            products: lines,
            shipments: vec![],
            exception_reason: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let out = order_json(&order);
        s.orders.insert(id.clone(), order);
        s.by_reference.insert(reference.clone(), id.clone());
        *s.reference_creates.entry(reference).or_default() += 1;
        created = Some(id);
        (StatusCode::CREATED, out)
    })
    .await;
    if let Some(id) = created {
        wms.schedule(id);
    }
    response
}

pub(super) async fn get_order(
    State(wms): State<Wms>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    match wms.order(&id) {
        Some(o) => Json(order_json(&o)).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("Order {id} does not exist"),
        ),
    }
}

pub(super) async fn list_orders(State(wms): State<Wms>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    let params = query_pairs(uri.query());
    let reference = params
        .iter()
        .find(|(k, _)| k == "reference_id")
        .map(|(_, v)| v.clone());
    let orders: Vec<Value> = wms
        .orders()
        .iter()
        .filter(|o| reference.as_ref().is_none_or(|r| *r == o.reference_id))
        .map(order_json)
        .collect();
    Json(json!({"orders": orders})).into_response()
}

pub(super) async fn cancel_order(
    State(wms): State<Wms>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        match parse_json(&body) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    let mut cancelled = None;
    let response = idempotent(
        &wms,
        &headers,
        &format!("POST /orders/{id}/cancel"),
        &body,
        |s| {
            let Some(o) = s.orders.get(&id) else {
                return (
                    StatusCode::NOT_FOUND,
                    problem_body(
                        StatusCode::NOT_FOUND,
                        "Not Found",
                        &format!("Order {id} does not exist"),
                        Value::Null,
                    ),
                );
            };
            if o.status == WmsStatus::Cancelled {
                return (StatusCode::OK, order_json(o));
            }
            if !o.status.can_move_to(WmsStatus::Cancelled) {
                return (
                    StatusCode::CONFLICT,
                    problem_body(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!(
                            "Order {id} is {} and can no longer be cancelled",
                            o.status.as_str()
                        ),
                        Value::Null,
                    ),
                );
            }
            let restock = matches!(o.status, WmsStatus::Allocated | WmsStatus::Picked);
            let lines = o.products.clone();
            if restock {
                for l in &lines {
                    if let Some(q) = s.inventory.get_mut(&l.sku) {
                        *q += l.quantity;
                    }
                }
            }
            let Some(o) = s.orders.get_mut(&id) else {
                return (StatusCode::NOT_FOUND, Value::Null);
            };
            o.status = WmsStatus::Cancelled;
            o.updated_at = now_rfc3339();
            cancelled = Some(o.clone());
            (StatusCode::OK, order_json(o))
        },
    )
    .await;
    if let Some(o) = cancelled {
        wms.emit("order.cancelled", json!({"order": o}));
    }
    response
}

pub(super) async fn adjust_inventory(
    State(wms): State<Wms>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut adjusted = None;
    let response = idempotent(&wms, &headers, "POST /inventory/adjustments", &body, |s| {
        let sku = body
            .get("sku")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let delta = body.get("delta").and_then(Value::as_i64);
        let (Some(sku), Some(delta)) = (sku, delta) else {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                problem_body(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed",
                    "sku and an integer delta are required",
                    Value::Null,
                ),
            );
        };
        let on_hand = s.inventory.entry(sku.to_string()).or_insert(0);
        *on_hand += delta;
        let after = *on_hand;
        let id = s.next_id("adj");
        let adj = Adjustment {
            id,
            sku: sku.to_string(),
            delta,
            reason: body
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            on_hand_after: after,
        };
        s.adjustments.push(adj.clone());
        adjusted = Some(adj.clone());
        (
            StatusCode::CREATED,
            serde_json::to_value(adj).unwrap_or(Value::Null),
        )
    })
    .await;
    if let Some(a) = adjusted {
        wms.emit(
            "inventory.updated",
            json!({"sku": a.sku, "on_hand": a.on_hand_after}),
        );
    }
    response
}

pub(super) async fn get_inventory(
    State(wms): State<Wms>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    let params = query_pairs(uri.query());
    let Some(sku) = params
        .iter()
        .find(|(k, _)| k == "sku")
        .map(|(_, v)| v.clone())
    else {
        // Paged like a 3PL's inventory list (`page` from 1, `limit`); without `page`, all.
        let number = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let page = number("page").filter(|p| *p >= 1);
        let limit = number("limit").unwrap_or(100).clamp(1, 250);
        let (rows, more) = wms.with_state(|s| {
            let skip = page.map_or(0, |p| (p - 1) * limit);
            let take = if page.is_some() { limit } else { usize::MAX };
            let rows: Vec<Value> = s
                .inventory
                .iter()
                .skip(skip)
                .take(take)
                .map(|(k, v)| json!({"sku": k, "on_hand": v}))
                .collect();
            (rows, page.is_some() && s.inventory.len() > skip + limit)
        });
        let next = page.filter(|_| more).map(|p| p + 1);
        return Json(json!({"inventory": rows, "next_page": next})).into_response();
    };
    match wms.stock(&sku) {
        Some(q) => Json(json!({"sku": sku, "on_hand": q})).into_response(),
        None => problem_with(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("SKU {sku} is not stocked"),
            Value::Null,
        ),
    }
}

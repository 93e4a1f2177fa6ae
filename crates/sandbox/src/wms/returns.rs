//! Customer returns (RMAs): the client announces the goods it expects back
//! (`POST /returns`, idempotent by `reference_id` and `Idempotency-Key`); the warehouse
//! receives them later — by itself with `auto_advance`, or through [`Wms::receive_return`] —
//! puts the units back on hand and emits `return.received`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::handlers::{gate, idempotent, parse_json, validate_order};
use super::state::WmsReturn;
use super::{lock, problem, problem_body, Wms};
use crate::error::{Result, SandboxError};
use crate::util::now_rfc3339;

fn return_json(r: &WmsReturn) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

pub(super) async fn create_return(
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
    let response = idempotent(&wms, &headers, "POST /returns", &body, |s| {
        let (reference, lines) = match validate_order(&body) {
            Ok(v) => v,
            Err(errors) => {
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                let detail = "The return is invalid";
                return (
                    status,
                    problem_body(status, "Validation failed", detail, errors),
                );
            }
        };
        if let Some(existing) = s
            .returns_by_reference
            .get(&reference)
            .and_then(|id| s.returns.get(id))
        {
            return (StatusCode::OK, return_json(existing));
        }
        let id = s.next_id("rma");
        let now = now_rfc3339();
        let rma = WmsReturn {
            id: id.clone(),
            reference_id: reference.clone(),
            order_reference: body
                .get("order_reference")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            status: "expected".into(),
            products: lines,
            created_at: now.clone(),
            updated_at: now,
            received_at: None,
        };
        let out = return_json(&rma);
        s.returns.insert(id.clone(), rma);
        s.returns_by_reference.insert(reference, id.clone());
        created = Some(id);
        (StatusCode::CREATED, out)
    })
    .await;
    if let Some(id) = created {
        wms.schedule_receipt(id);
    }
    response
}

pub(super) async fn get_return(
    State(wms): State<Wms>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&wms, &headers) {
        return r;
    }
    match wms.with_state(|s| s.returns.get(&id).cloned()) {
        Some(r) => Json(return_json(&r)).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("Return {id} does not exist"),
        ),
    }
}

impl Wms {
    pub fn return_by_reference(&self, reference_id: &str) -> Option<WmsReturn> {
        self.with_state(|s| {
            s.returns_by_reference
                .get(reference_id)
                .and_then(|id| s.returns.get(id))
                .cloned()
        })
    }

    pub fn returns(&self) -> Vec<WmsReturn> {
        self.with_state(|s| s.returns.values().cloned().collect())
    }

    /// The goods of an expected return arrive: each unit goes back on hand (SKUs whose stock
    /// the emulator tracks) and `return.received` is emitted. Receiving twice is refused.
    pub fn receive_return(&self, id: &str) -> Result<WmsReturn> {
        let rma = self.with_state(|s| -> Result<WmsReturn> {
            let Some(rma) = s.returns.get_mut(id) else {
                return Err(SandboxError::UnknownEntity(id.to_string()));
            };
            if rma.status != "expected" {
                return Err(SandboxError::InvalidTransition {
                    order: id.to_string(),
                    from: "received",
                    to: "received",
                });
            }
            let now = now_rfc3339();
            rma.status = "received".into();
            rma.received_at = Some(now.clone());
            rma.updated_at = now;
            let rma = rma.clone();
            for line in &rma.products {
                if let Some(q) = s.inventory.get_mut(&line.sku) {
                    *q += line.quantity;
                }
            }
            Ok(rma)
        })?;
        self.emit("return.received", json!({"return": rma}));
        Ok(rma)
    }

    /// With `auto_advance`, the goods arrive two periods after the return was announced.
    pub(crate) fn schedule_receipt(&self, id: String) {
        let Some(step) = lock(&self.inner.opts).auto_advance else {
            return;
        };
        let wms = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(step * 2).await;
            let _ = wms.receive_return(&id);
        });
    }
}

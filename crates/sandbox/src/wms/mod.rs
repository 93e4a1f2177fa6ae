//! WMS / 3PL emulator: fulfilment orders with `reference_id` and `Idempotency-Key`,
//! cancellations, stock adjustments, API-key auth, 429 with `Retry-After`, and signed
//! lifecycle webhooks (Standard Webhooks style) back to a configured URL.
//!
//! ```text
//!  sink ─POST /orders (Idempotency-Key)─► auth ─► rate limit ─► key store ─► order (pending)
//!  test/auto ─ advance(): allocated → picked → shipped → delivered | exception
//!                              └──────── signed webhook order.<status> ──► source
//!  sink ─POST /returns (Idempotency-Key)─► RMA expected ─ receive_return() ─► stock back,
//!                                              signed webhook return.received ──► source
//! ```

mod address;
mod handlers;
mod returns;
pub mod state;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub use state::{Adjustment, OrderLine, Shipment, WmsOrder, WmsReturn, WmsState, WmsStatus};
pub use webhooks::{sign_standard_webhook, verify_standard_webhook, WmsEvent, WmsWebhookOptions};

use crate::error::{Result, SandboxError};
use crate::faults::{Fault, Faults};
use crate::server::{serve, Common, RequestLog, RunningEmulator};
use crate::shopify::throttle::Limiter;
use crate::util::now_rfc3339;

/// How the WMS emulator behaves.
#[derive(Clone, Debug)]
pub struct WmsOptions {
    pub bind: SocketAddr,
    /// Accepted API keys (`Authorization: Bearer <key>` or `X-API-Key: <key>`).
    pub api_keys: Vec<String>,
    /// Requests per second per key (burst of the same size); `None` or `rate_limits: false`: unlimited.
    pub requests_per_second: Option<f64>,
    pub rate_limits: bool,
    /// Time a keyed request stays "in flight" before it is applied (to provoke 409s).
    pub processing_delay: Duration,
    /// Orders move pending → allocated → picked → shipped → delivered by themselves, one step per period.
    pub auto_advance: Option<Duration>,
    /// Where lifecycle webhooks go, if anywhere.
    pub webhook: Option<WmsWebhookOptions>,
    /// Refuse an order without `recipient.address` (a real warehouse does). Off by default:
    /// tests written before addresses were carried release orders without one. An address
    /// that is sent is always checked (`address.rs`).
    pub require_address: bool,
}

impl Default for WmsOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: vec!["wms_sandbox".into()],
            requests_per_second: Some(20.0),
            rate_limits: true,
            processing_delay: Duration::ZERO,
            auto_advance: None,
            webhook: None,
            require_address: false,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) opts: Mutex<WmsOptions>,
    pub(crate) state: Mutex<WmsState>,
    pub(crate) limiter: Mutex<Limiter>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) log: RequestLog,
    pub(crate) events: Mutex<Vec<WmsEvent>>,
    pub(crate) client: Mutex<crate::webhooks::WebhookClient>,
}

/// Handle on a WMS emulator. Cheap to clone.
#[derive(Clone)]
pub struct Wms {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a WMS emulator.
pub async fn start(opts: WmsOptions) -> Result<RunningEmulator<Wms>> {
    let bind = opts.bind;
    let rps = opts.requests_per_second.unwrap_or(f64::MAX);
    let policy = opts
        .webhook
        .as_ref()
        .map(|w| w.policy.clone())
        .unwrap_or_default();
    let handle = Wms {
        inner: Arc::new(Inner {
            limiter: Mutex::new(Limiter::new(
                rps,
                rps,
                opts.rate_limits && opts.requests_per_second.is_some(),
            )),
            opts: Mutex::new(opts),
            state: Mutex::default(),
            faults: Arc::default(),
            log: RequestLog::new(),
            events: Mutex::default(),
            client: Mutex::new(crate::webhooks::WebhookClient::new(policy)?),
        }),
    };
    resume(handle, bind).await
}

/// Serves an existing handle's state again (after [`RunningEmulator::stop`]).
pub async fn resume(handle: Wms, bind: SocketAddr) -> Result<RunningEmulator<Wms>> {
    let router = Router::new()
        .route(
            "/orders",
            post(handlers::create_order).get(handlers::list_orders),
        )
        .route("/orders/{id}", get(handlers::get_order))
        .route("/orders/{id}/cancel", post(handlers::cancel_order))
        .route("/inventory", get(handlers::get_inventory))
        .route("/inventory/adjustments", post(handlers::adjust_inventory))
        .route("/returns", post(returns::create_return))
        .route("/returns/{id}", get(returns::get_return))
        .with_state(handle.clone());
    let common = Common {
        log: handle.inner.log.clone(),
        faults: handle.inner.faults.clone(),
        fault_response,
    };
    serve(bind, "wms", router, common, handle).await
}

/// An `application/problem+json` answer.
pub(crate) fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    problem_with(status, title, detail, Value::Null)
}

pub(crate) fn problem_body(status: StatusCode, title: &str, detail: &str, errors: Value) -> Value {
    let mut body = json!({"type": format!("https://wms.sandbox/problems/{}", status.as_u16()), "title": title, "status": status.as_u16(), "detail": detail});
    if !errors.is_null() {
        body["errors"] = errors;
    }
    body
}

pub(crate) fn problem_with(
    status: StatusCode,
    title: &str,
    detail: &str,
    errors: Value,
) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        Json(problem_body(status, title, detail, errors)),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::RateLimited => {
            let mut r = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "Rate limit exceeded",
            );
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            r
        }
        Fault::ServerError(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            problem(
                status,
                status.canonical_reason().unwrap_or("Server Error"),
                "Injected failure",
            )
        }
        _ => problem(
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway Timeout",
            "Injected timeout",
        ),
    }
}

impl Wms {
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub fn requests(&self) -> &RequestLog {
        &self.inner.log
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&mut WmsState) -> R) -> R {
        f(&mut lock(&self.inner.state))
    }

    /// Switches the per-key rate limit on or off.
    pub fn set_rate_limits(&self, on: bool) {
        lock(&self.inner.limiter).enabled = on;
        lock(&self.inner.opts).rate_limits = on;
    }

    /// Where (and how) lifecycle webhooks are sent; `None` stops them.
    pub fn set_webhook(&self, webhook: Option<WmsWebhookOptions>) -> Result<()> {
        if let Some(w) = &webhook {
            *lock(&self.inner.client) = crate::webhooks::WebhookClient::new(w.policy.clone())?;
        }
        lock(&self.inner.opts).webhook = webhook;
        Ok(())
    }

    pub fn set_stock(&self, sku: &str, on_hand: i64) {
        self.with_state(|s| s.inventory.insert(sku.to_string(), on_hand));
    }

    pub fn stock(&self, sku: &str) -> Option<i64> {
        self.with_state(|s| s.inventory.get(sku).copied())
    }

    pub fn order(&self, id: &str) -> Option<WmsOrder> {
        self.with_state(|s| s.orders.get(id).cloned())
    }

    pub fn order_by_reference(&self, reference_id: &str) -> Option<WmsOrder> {
        self.with_state(|s| {
            s.by_reference
                .get(reference_id)
                .and_then(|id| s.orders.get(id))
                .cloned()
        })
    }

    pub fn orders(&self) -> Vec<WmsOrder> {
        self.with_state(|s| s.orders.values().cloned().collect())
    }

    /// Times the side effect under this Idempotency-Key was applied (0 or 1).
    pub fn key_applies(&self, key: &str) -> u64 {
        self.with_state(|s| s.key_applies.get(key).copied().unwrap_or(0))
    }

    /// Times a stored answer was replayed for this key.
    pub fn key_replays(&self, key: &str) -> u64 {
        self.with_state(|s| match s.idempotency.get(key) {
            Some(state::Idem::Done { replays, .. }) => *replays,
            _ => 0,
        })
    }

    /// Orders created for this reference id (0 or 1).
    pub fn reference_creates(&self, reference_id: &str) -> u64 {
        self.with_state(|s| s.reference_creates.get(reference_id).copied().unwrap_or(0))
    }

    /// Webhook events emitted so far (each with its delivery outcomes).
    pub fn events(&self) -> Vec<WmsEvent> {
        lock(&self.inner.events).clone()
    }

    /// Moves an order to `to` (allocation takes stock; shipping adds a shipment with a tracking
    /// number) and emits its webhook.
    pub fn advance(&self, order_id: &str, to: WmsStatus) -> Result<WmsOrder> {
        let order = self.with_state(|s| -> Result<WmsOrder> {
            let Some(current) = s.orders.get(order_id).map(|o| o.status) else {
                return Err(SandboxError::UnknownEntity(order_id.to_string()));
            };
            if !current.can_move_to(to) {
                return Err(SandboxError::InvalidTransition {
                    order: order_id.to_string(),
                    from: current.as_str(),
                    to: to.as_str(),
                });
            }
            let mut to = to;
            let mut reason = None;
            let lines = s
                .orders
                .get(order_id)
                .map(|o| o.products.clone())
                .unwrap_or_default();
            if to == WmsStatus::Allocated {
                let short = lines
                    .iter()
                    .find(|l| s.inventory.get(&l.sku).is_some_and(|q| *q < l.quantity));
                if let Some(l) = short {
                    to = WmsStatus::Exception;
                    reason = Some(format!("insufficient_inventory: {}", l.sku));
                } else {
                    for l in &lines {
                        if let Some(q) = s.inventory.get_mut(&l.sku) {
                            *q -= l.quantity;
                        }
                    }
                }
            }
            if to == WmsStatus::Exception && reason.is_none() {
                reason = Some("carrier_exception".into());
            }
            let shipment_id = (to == WmsStatus::Shipped).then(|| s.next_id("shp"));
            let Some(o) = s.orders.get_mut(order_id) else {
                return Err(SandboxError::UnknownEntity(order_id.to_string()));
            };
            let now = now_rfc3339();
            if let Some(id) = shipment_id {
                let number = format!("1Z{}", id.trim_start_matches("shp_"));
                o.shipments.push(Shipment {
                    tracking_url: format!("https://track.sandbox/{number}"),
                    id,
                    carrier: "UPS".into(),
                    tracking_number: number,
                    status: "in_transit".into(),
                    shipped_at: now.clone(),
                    delivered_at: None,
                });
            }
            if to == WmsStatus::Delivered {
                o.shipments.iter_mut().for_each(|sh| {
                    sh.status = "delivered".into();
                    sh.delivered_at = Some(now.clone());
                });
            }
            o.status = to;
            o.exception_reason = reason;
            o.updated_at = now;
            Ok(o.clone())
        })?;
        let kind = match order.status {
            WmsStatus::Picked | WmsStatus::Pending => None,
            WmsStatus::Cancelled => Some("order.cancelled"),
            WmsStatus::Allocated => Some("order.allocated"),
            WmsStatus::Shipped => Some("order.shipped"),
            WmsStatus::Delivered => Some("order.delivered"),
            WmsStatus::Exception => Some("order.exception"),
        };
        if let Some(kind) = kind {
            self.emit(kind, json!({"order": order}));
        }
        Ok(order)
    }

    /// Starts the automatic lifecycle of a new order when `auto_advance` is set.
    pub(crate) fn schedule(&self, order_id: String) {
        let Some(step) = lock(&self.inner.opts).auto_advance else {
            return;
        };
        let wms = self.clone();
        tokio::spawn(async move {
            for to in [
                WmsStatus::Allocated,
                WmsStatus::Picked,
                WmsStatus::Shipped,
                WmsStatus::Delivered,
            ] {
                tokio::time::sleep(step).await;
                if wms.advance(&order_id, to).is_err() {
                    break;
                }
            }
        });
    }
}

//! Shopify Admin API emulator (GraphQL subset, REST reconciliation lists) and webhook sender.
//!
//! ```text
//!  sink ──POST /admin/api/<v>/graphql.json──► auth ─► requested cost (≤ 1000) charged to the bucket
//!     ─► per root field, in order: @idempotent store (its own key) ─► mutation ─► data.<alias>
//!                                                                                  │
//!  source ◄──────── signed webhook (orders/updated, inventory_levels/update, …) ◄───┘
//! ```

pub mod addresses;
mod cost;
mod graphql;
mod handle;
mod handlers;
mod inventory;
mod mutations;
mod outcome;
mod queries;
pub mod state;
pub(crate) mod throttle;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use cost::{requested_cost, MAX_QUERY_COST};
pub use graphql::{Field, OpKind, Operation, RootField};
pub use handle::{SeededOrder, SeededProduct, VariantSeed};
pub use outcome::inventory_level_gid;
pub use state::{
    gid, parse_gid, Customer, Fulfillment, InventoryChange, InventoryLevel, LineItem, Location,
    Order, Product, Refund, ShippingAddress, ShopState, Tracking, Variant,
};
pub use webhooks::{BatchOptions, BatchReport, SentWebhook, ShopifyWebhook, WebhookSender};

use crate::error::Result;
use crate::faults::{Fault, Faults};
use crate::server::{serve, Common, RequestLog, RunningEmulator};
use crate::webhooks::RetryPolicy;
use throttle::Limiter;

/// How the Shopify emulator behaves.
#[derive(Clone, Debug)]
pub struct ShopifyOptions {
    pub bind: SocketAddr,
    /// Accepted `X-Shopify-Access-Token` values.
    pub access_tokens: Vec<String>,
    pub shop_domain: String,
    /// Cost bucket (and REST call bucket) on; off for benchmarks.
    pub throttling: bool,
    /// GraphQL bucket size (Standard plan: 2000 since 2024; older material: 1000).
    pub bucket_size: f64,
    /// Points restored per second (Standard: 100; older material: 50).
    pub restore_rate: f64,
    /// HTTP status of a THROTTLED answer: 200 (the body says THROTTLED) or 429.
    pub throttled_status: u16,
    /// Webhooks fired by mutations go here, if set.
    pub webhook: Option<WebhookSubscription>,
}

/// A webhook subscription: every mutation's webhook is delivered to `url`, signed with `secret`.
#[derive(Clone, Debug)]
pub struct WebhookSubscription {
    pub url: String,
    pub secret: String,
    pub policy: RetryPolicy,
}

impl Default for ShopifyOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_tokens: vec!["shpat_sandbox".into()],
            shop_domain: "sandbox.myshopify.com".into(),
            throttling: true,
            bucket_size: 1000.0,
            restore_rate: 50.0,
            throttled_status: 200,
            webhook: None,
        }
    }
}

pub(crate) struct Inner {
    opts: Mutex<ShopifyOptions>,
    state: Mutex<ShopState>,
    cost: Mutex<Limiter>,
    rest: Mutex<Limiter>,
    faults: Arc<Faults>,
    log: RequestLog,
    sender: Mutex<Option<WebhookSender>>,
}

/// Handle on a Shopify emulator: seed, inspect, inject faults. Cheap to clone.
#[derive(Clone)]
pub struct Shopify {
    inner: Arc<Inner>,
}

/// Starts a Shopify emulator.
pub async fn start(opts: ShopifyOptions) -> Result<RunningEmulator<Shopify>> {
    let bind = opts.bind;
    let handle = Shopify::new(opts)?;
    resume(handle, bind).await
}

/// Serves an existing handle's state again (after [`RunningEmulator::stop`]), e.g. on the same
/// address to end a simulated outage.
pub async fn resume(handle: Shopify, bind: SocketAddr) -> Result<RunningEmulator<Shopify>> {
    let router = Router::new()
        .route("/admin/api/{version}/graphql.json", post(handlers::graphql))
        .route("/admin/api/{version}/{resource}", get(handlers::rest))
        .with_state(handle.clone());
    let common = Common {
        log: handle.inner.log.clone(),
        faults: handle.inner.faults.clone(),
        fault_response,
    };
    serve(bind, "shopify", router, common, handle).await
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::RateLimited => (
            StatusCode::OK,
            Json(
                json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}),
            ),
        )
            .into_response(),
        Fault::ServerError(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(json!({"errors": "Internal Server Error"}))).into_response()
        }
        _ => (
            StatusCode::GATEWAY_TIMEOUT,
            Json(json!({"errors": "Gateway Timeout"})),
        )
            .into_response(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! `/metrics`, `/healthz` (the process serves; under `[ha]` also: every held lease is being
//! renewed) and `/readyz` (every source is streaming; under `[ha]`: a member of the group).
//!
//! Served by the same limited server as the webhook listeners (`tributary_saas::listener`,
//! ops limits: 64 connections, 5 s for the headers), on its own listener and connection
//! permits, so that a webhook flood cannot take the probes' connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tributary_saas::listener;

/// An extra condition of `/healthz` beyond "the process serves" (under `[ha]`: every held
/// lease is being renewed).
pub type Liveness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    ready: Vec<(String, Arc<AtomicBool>)>,
    live: Option<Liveness>,
}

pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: Vec<(String, Arc<AtomicBool>)>,
    live: Option<Liveness>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("config key `http_listen`: cannot listen on {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            ready,
            live,
        });
    Ok(tokio::spawn(listener::serve(
        "ops",
        listener,
        app,
        listener::Limits::ops(),
        shutdown,
    )))
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.live.as_ref().map(|f| f()) {
        None | Some(Ok(())) => (StatusCode::OK, "ok\n".into()),
        Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let not_ready: Vec<&str> = state
        .ready
        .iter()
        .filter(|(_, r)| !r.load(Ordering::Relaxed))
        .map(|(n, _)| n.as_str())
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not streaming: {}\n", not_ready.join(", ")),
        )
    }
}

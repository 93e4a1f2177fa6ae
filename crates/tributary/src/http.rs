//! `/metrics`, `/healthz` (the process serves; under `[ha]` also: every held lease is being
//! renewed), `/readyz` (every configured component is ready, each named with its reason when
//! not; under `[ha]`: a member of the group) and `/status` (what `tributary status` shows, as
//! JSON).
//!
//! Served by the same limited server as the webhook listeners (`tributary_saas::listener`,
//! ops limits: 64 connections, 5 s for the headers), on its own listener and connection
//! permits, so that a webhook flood cannot take the probes' connections.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tributary_saas::listener;

use crate::ops::status::{self, BridgeReport, StatusReport};
use crate::readiness::{self, Readiness};

/// An extra condition of `/healthz` beyond "the process serves" (under `[ha]`: every held
/// lease is being renewed).
pub type Liveness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `/status` reads besides the bridge's own state: the configuration and NATS.
pub struct StatusSource {
    pub config: tributary_config::Config,
    pub js: async_nats::jetstream::Context,
}

#[derive(Clone)]
struct AppState {
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: Readiness,
    live: Option<Liveness>,
    status: Arc<StatusSource>,
}

pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: Readiness,
    live: Option<Liveness>,
    status: StatusSource,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("config key `http_listen`: cannot listen on {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_report))
        .with_state(AppState {
            addr: listener.local_addr().unwrap_or(addr),
            metrics,
            ready,
            live,
            status: Arc::new(status),
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
    match readiness::render(&state.ready.states()) {
        (true, body) => (StatusCode::OK, body),
        (false, body) => (StatusCode::SERVICE_UNAVAILABLE, body),
    }
}

async fn status_report(State(state): State<AppState>) -> Json<StatusReport> {
    let components = state.ready.states();
    let bridge = BridgeReport {
        address: state.addr.to_string(),
        up: true,
        ready: Some(components.iter().all(|c| c.ready)),
        components,
        error: None,
    };
    let StatusSource { config, js } = state.status.as_ref();
    let sources: Vec<&tributary_config::SourceConfig> = config.sources.iter().collect();
    Json(status::collect(config, &sources, Ok(js.clone()), bridge).await)
}

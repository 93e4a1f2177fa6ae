//! The one HTTP server behind every listener the bridge exposes (the Shopify and WMS webhook
//! listeners, the ops server): limits that hold against clients who never authenticate.
//!
//! ```text
//!  accept ──► connection permit (max_connections; none left → 503, closed, counted)
//!         ──► HTTP/1 (hyper): headers within header_timeout (also the keep-alive idle time),
//!             at most max_header_bytes, else closed and counted
//!         ──► router ──► handler: cheap header checks first (400/401 before any body byte),
//!                        body::read (413 / 408, bounded memory), verify::hmac_sha256 (large
//!                        bodies on the blocking pool), verify::store (JetStream ack) ──► 200
//!         ──► a connection lives at most `lifetime`, then closes gracefully
//! ```
//!
//! `axum::serve` has no header-read timeout and no connection limit, hence hyper directly.
//! See docs/security.md.

pub mod body;
pub(crate) mod receiver;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use tributary_config::WebhookServerConfig;

/// The listeners' metric names (defined with the crate's others in `crate::metrics`).
pub use crate::metrics::{HTTP_CONNECTIONS, HTTP_REJECTED};

/// Written to a connection over the limit before it is closed: no request is read from it.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nretry-after: 1\r\nconnection: close\r\n\r\nbusy\n";
/// Time a request in flight gets to finish when the server stops or a connection's lifetime
/// ends (a webhook's answer waits for its JetStream ack).
const GRACE: Duration = Duration::from_secs(5);

/// What one listener accepts. Every field bounds what an unauthenticated client can hold.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_body: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// A connection is closed (gracefully) after this long, however busy.
    pub lifetime: Duration,
    /// Buffered body bytes beyond each request's first `body::FREE_BYTES` (one per listener).
    pub(crate) body_budget: Arc<Semaphore>,
}

impl Limits {
    /// The webhook listeners' limits (`[webhook_server]`).
    pub fn webhooks(cfg: &WebhookServerConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(cfg.header_timeout_ms),
            body_timeout: Duration::from_millis(cfg.body_timeout_ms),
            max_body: cfg.max_body_bytes,
            max_header_bytes: 64 * 1024,
            max_connections: cfg.max_connections,
            lifetime: Duration::from_secs(300),
            body_budget: Arc::new(Semaphore::new(cfg.body_memory_bytes)),
        }
    }

    /// The ops server (`/metrics`, `/healthz`, `/readyz`): GET only, a few scrapers and probes.
    pub fn ops() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_connections: 64,
            lifetime: Duration::from_secs(300),
            body_budget: Arc::new(Semaphore::new(0)),
        }
    }
}

pub fn describe() {
    metrics::describe_counter!(
        HTTP_REJECTED,
        "connections refused or closed by a listener's limits, per listener and reason"
    );
    metrics::describe_gauge!(HTTP_CONNECTIONS, "open connections, per listener");
}

/// Counts one connection-level rejection.
pub fn rejected(listener: &'static str, reason: &'static str) {
    metrics::counter!(HTTP_REJECTED, "listener" => listener, "reason" => reason).increment(1);
}

/// Serves `router` on `listener` until `stop`, then lets the requests in flight finish
/// (within `GRACE`) and returns.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    describe();
    let limits = Arc::new(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            rejected(name, "connection_limit");
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(connection(
            name,
            stream,
            router.clone(),
            limits.clone(),
            stop.clone(),
            permit,
        ));
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    name: &'static str,
    stream: TcpStream,
    router: Router,
    limits: Arc<Limits>,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let open = metrics::gauge!(HTTP_CONNECTIONS, "listener" => name);
    open.increment(1.0);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper refuses less than 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = stop.cancelled() => None,
        _ = tokio::time::sleep(limits.lifetime) => None,
    };
    let result = match finished {
        Some(r) => Some(r),
        None => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(GRACE + limits.body_timeout, conn)
                .await
                .ok()
        }
    };
    if let Some(Err(e)) = result {
        if e.is_timeout() {
            rejected(name, "header_timeout");
        } else if e.is_parse_too_large() {
            rejected(name, "headers_too_large");
        } else if e.is_parse() {
            rejected(name, "bad_request");
        } else {
            debug!(listener = name, error = %e, "connection ended with an error");
        }
    }
    open.decrement(1.0);
    drop(permit);
}

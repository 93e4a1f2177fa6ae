//! Serving an emulator: listener, graceful stop, request log and fault middleware.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Result, SandboxError};
use crate::faults::{Fault, Faults};

/// Largest request body the emulators accept.
const MAX_BODY: usize = 32 << 20;

/// One request as the emulator received it, and the status it answered.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub status: u16,
    /// The injected fault, if this request got one.
    pub fault: Option<Fault>,
    pub at: SystemTime,
}

impl RequestRecord {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Every request an emulator received, for assertions. Can be switched off for benchmarks.
#[derive(Clone, Default)]
pub struct RequestLog {
    inner: Arc<Mutex<(bool, Vec<RequestRecord>)>>,
}

impl RequestLog {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new((true, Vec::new()))),
        }
    }

    /// A copy of all records so far.
    pub fn all(&self) -> Vec<RequestRecord> {
        self.lock().1.clone()
    }

    /// Records whose path contains `fragment`.
    pub fn matching(&self, fragment: &str) -> Vec<RequestRecord> {
        self.lock()
            .1
            .iter()
            .filter(|r| r.path.contains(fragment))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.lock().1.clear();
    }

    /// Stops (or resumes) recording; long benchmarks do not need the bodies kept.
    pub fn set_enabled(&self, enabled: bool) {
        self.lock().0 = enabled;
    }

    fn push(&self, record: RequestRecord) {
        let mut inner = self.lock();
        if inner.0 {
            inner.1.push(record);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, Vec<RequestRecord>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the middleware needs from an emulator.
#[derive(Clone)]
pub(crate) struct Common {
    pub log: RequestLog,
    pub faults: Arc<Faults>,
    /// Renders a fault in the emulator's own error format.
    pub fault_response: fn(&Fault) -> Response,
}

/// Records the request, applies an injected fault or runs the handler.
pub(crate) async fn middleware(State(common): State<Common>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        status: 0,
        fault: None,
        at: SystemTime::now(),
    };
    let fault = common.faults.next();
    let response = match &fault {
        Some(f @ (Fault::ServerError(_) | Fault::RateLimited)) => (common.fault_response)(f),
        // Held below, after the record is logged: a client that gives up first drops this
        // future, and the request would leave no record.
        Some(Fault::Timeout(_)) => (common.fault_response)(&Fault::ServerError(504)),
        Some(Fault::TimeoutAfterApply(_)) | None => {
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
    };
    record.status = response.status().as_u16();
    record.fault = fault.clone();
    // Logged before the withheld answer, so a client that gave up still leaves a record.
    common.log.push(record);
    if let Some(Fault::Timeout(d) | Fault::TimeoutAfterApply(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    response
}

/// A running emulator: its address, and its handle (`H`) for seeding, inspection and faults,
/// reachable through `Deref`. Dropping it stops the listener.
pub struct RunningEmulator<H> {
    addr: SocketAddr,
    base_url: String,
    handle: H,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<H> RunningEmulator<H> {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> &H {
        &self.handle
    }

    /// Stops accepting connections (in-flight requests get up to 2 s) and gives the handle
    /// back, so the same state can be served again later (an outage) with the emulator's
    /// `resume` function on the same address.
    pub async fn stop(mut self) -> H
    where
        H: Clone,
    {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.handle.clone()
    }
}

impl<H> Deref for RunningEmulator<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.handle
    }
}

impl<H> Drop for RunningEmulator<H> {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `bind`, serves `router` with the logging/fault middleware, returns the running emulator.
pub(crate) async fn serve<H>(
    bind: SocketAddr,
    name: &'static str,
    router: Router,
    common: Common,
    handle: H,
) -> Result<RunningEmulator<H>> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(SandboxError::Bind)?;
    let addr = listener.local_addr().map_err(SandboxError::Bind)?;
    let router = router.layer(axum::middleware::from_fn_with_state(common, middleware));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(emulator = name, error = %e, "emulator server stopped");
        }
    });
    tracing::debug!(emulator = name, %addr, "emulator listening");
    Ok(RunningEmulator {
        addr,
        base_url: format!("http://{addr}"),
        handle,
        shutdown: Some(tx),
        task: Some(task),
    })
}

//! A webhook receiver for the tests: records every delivery, verifies signatures with a
//! caller-supplied check, can fail the first N deliveries.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Check = Arc<dyn Fn(&HeaderMap, &[u8]) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn fail_next(&self, n: usize) {
        *self.fail_first.lock().unwrap() = n;
    }
}

#[derive(Clone)]
struct Ctx {
    check: Check,
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = if !(ctx.check)(&headers, &body) {
        StatusCode::UNAUTHORIZED
    } else {
        let mut fail = ctx.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    };
    ctx.received.lock().unwrap().push(Received {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body,
        status: status.as_u16(),
    });
    status
}

/// Starts a receiver on a free port; `check` decides whether a delivery is authentic (401 if not).
pub async fn receiver(
    check: impl Fn(&HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
) -> Receiver {
    let received = Arc::new(Mutex::new(Vec::new()));
    let fail_first = Arc::new(Mutex::new(0));
    let ctx = Ctx {
        check: Arc::new(check),
        received: received.clone(),
        fail_first: fail_first.clone(),
    };
    let app = Router::new().route("/hooks", post(receive)).with_state(ctx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hooks"),
        received,
        fail_first,
    }
}

/// base64 HMAC-SHA256, computed independently of the crate's helper.
pub fn hmac_b64(secret: &[u8], body: &[u8]) -> String {
    use base64::Engine;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, body).as_ref())
}

/// Waits until `f` holds, up to 5 s.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

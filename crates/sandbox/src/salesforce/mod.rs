//! Salesforce REST emulator: OAuth2 token endpoint, upsert by external id (single and sObject
//! Collections), record read-back and a SOQL subset, the daily API limit and its header.
//!
//! ```text
//!  sink ─POST /services/oauth2/token─► token (TTL) ─┐
//!  sink ─PATCH /services/data/vXX.X/…─► Bearer check ─► API counter (403 REQUEST_LIMIT_EXCEEDED)
//!                                       401 INVALID_SESSION_ID      └─► upsert ─► write journal
//!                                                                       (Sforce-Call-Options client)
//! ```

mod auth;
pub mod cdc;
mod cdc_log;
pub mod pubsub;
mod sobjects;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub use state::{Record, SObjectSchema, SfState, WriteRecord};

use crate::error::Result;
use crate::faults::{Fault, Faults};
use crate::server::{serve, Common, RequestLog, RunningEmulator};

/// How the Salesforce emulator behaves.
#[derive(Clone, Debug)]
pub struct SalesforceOptions {
    pub bind: SocketAddr,
    /// Connected apps: (client id / consumer key, client secret).
    pub clients: Vec<(String, String)>,
    /// (client id, DER `RSAPublicKey`) used to verify JWT bearer assertions; without one the
    /// assertion's claims are checked but not its signature.
    pub jwt_public_keys: Vec<(String, Vec<u8>)>,
    /// Lifetime of an access token (real orgs: the session timeout, 2 h by default).
    pub token_ttl: Duration,
    /// Requests allowed in the rolling 24 h window.
    pub daily_limit: u64,
    /// Enforce `daily_limit` (off for benchmarks; usage is still counted).
    pub enforce_limits: bool,
}

impl Default for SalesforceOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            clients: vec![("sandbox-client".into(), "sandbox-secret".into())],
            jwt_public_keys: vec![],
            token_ttl: Duration::from_secs(7200),
            daily_limit: 100_000,
            enforce_limits: true,
        }
    }
}

struct Inner {
    opts: Mutex<SalesforceOptions>,
    state: Mutex<SfState>,
    faults: Arc<Faults>,
    log: RequestLog,
}

/// Handle on a Salesforce emulator. Cheap to clone.
#[derive(Clone)]
pub struct Salesforce {
    inner: Arc<Inner>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a Salesforce emulator.
pub async fn start(opts: SalesforceOptions) -> Result<RunningEmulator<Salesforce>> {
    let bind = opts.bind;
    let handle = Salesforce {
        inner: Arc::new(Inner {
            opts: Mutex::new(opts),
            state: Mutex::default(),
            faults: Arc::default(),
            log: RequestLog::new(),
        }),
    };
    resume(handle, bind).await
}

/// Serves an existing handle's state again (after [`RunningEmulator::stop`]).
pub async fn resume(handle: Salesforce, bind: SocketAddr) -> Result<RunningEmulator<Salesforce>> {
    let router = Router::new()
        .route("/services/oauth2/token", post(auth::token))
        .route(
            "/services/data/{version}/sobjects/{object}/{field}/{value}",
            patch(sobjects::upsert).get(sobjects::get_by_external_id),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(sobjects::get_by_id).patch(sobjects::update_by_id),
        )
        .route(
            "/services/data/{version}/composite/sobjects/{object}/{field}",
            patch(sobjects::collection_upsert),
        )
        .route("/services/data/{version}/query", get(sobjects::query))
        .route("/services/data/{version}/limits", get(sobjects::limits))
        .with_state(handle.clone());
    let common = Common {
        log: handle.inner.log.clone(),
        faults: handle.inner.faults.clone(),
        fault_response,
    };
    serve(bind, "salesforce", router, common, handle).await
}

/// `[{message, errorCode, fields}]` with a status.
pub(crate) fn sf_error(
    status: StatusCode,
    code: &str,
    message: &str,
    fields: &[String],
) -> Response {
    (
        status,
        Json(json!([{"message": message, "errorCode": code, "fields": fields}])),
    )
        .into_response()
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::RateLimited => sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            &[],
        ),
        Fault::ServerError(503) => sf_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable",
            &[],
        ),
        Fault::ServerError(code) => sf_error(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred.",
            &[],
        ),
        _ => sf_error(
            StatusCode::GATEWAY_TIMEOUT,
            "UNKNOWN_EXCEPTION",
            "Request timed out",
            &[],
        ),
    }
}

/// Who is calling: the `client=` of `Sforce-Call-Options` and the API version number.
pub(crate) struct Caller {
    pub client: Option<String>,
    pub version: f64,
    pub version_text: String,
}

impl Salesforce {
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub fn requests(&self) -> &RequestLog {
        &self.inner.log
    }

    /// Runs `f` on the state (seeding, inspection).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SfState) -> R) -> R {
        f(&mut lock(&self.inner.state))
    }

    /// Makes an object strict: known fields, required fields, external id fields.
    pub fn declare_object(&self, schema: SObjectSchema) {
        self.with_state(|s| s.schemas.insert(schema.name.clone(), schema));
    }

    /// Inserts a record directly (no write journal entry); returns its id.
    pub fn insert_record(&self, object: &str, fields: Map<String, Value>) -> String {
        self.with_state(|s| {
            let id = s.new_id(object);
            let mut fields = fields;
            fields.insert("Id".into(), Value::String(id.clone()));
            fields
                .entry("SystemModstamp")
                .or_insert_with(|| Value::String(crate::util::now_rfc3339()));
            s.records.insert(
                id.clone(),
                Record {
                    id: id.clone(),
                    object: object.into(),
                    fields,
                    last_change_origin: None,
                },
            );
            s.index_record(&id);
            id
        })
    }

    /// The record of `object` whose `field` is `value` (the first if several).
    pub fn record_by(&self, object: &str, field: &str, value: &str) -> Option<Record> {
        self.with_state(|s| {
            s.find(object, field, value)
                .first()
                .and_then(|id| s.records.get(id).cloned())
        })
    }

    pub fn records(&self, object: &str) -> Vec<Record> {
        self.with_state(|s| {
            s.records
                .values()
                .filter(|r| r.object == object)
                .cloned()
                .collect()
        })
    }

    /// Every applied write, in order.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.with_state(|s| s.writes.clone())
    }

    /// Upserts applied for `object` with external id `value` (replays included).
    pub fn write_count(&self, object: &str, value: &str) -> u64 {
        self.with_state(|s| {
            s.writes
                .iter()
                .filter(|w| w.object == object && w.external_id == value)
                .count() as u64
        })
    }

    /// Upserts for `object`/`value` that created the record or changed a field value.
    pub fn change_count(&self, object: &str, value: &str) -> u64 {
        self.with_state(|s| {
            s.writes
                .iter()
                .filter(|w| w.object == object && w.external_id == value && w.changed)
                .count() as u64
        })
    }

    /// Invalidates every token issued so far (next call: 401 `INVALID_SESSION_ID`).
    pub fn expire_tokens(&self) {
        self.with_state(|s| {
            s.tokens.values_mut().for_each(|t| *t = Instant::now());
            // Open Pub/Sub streams re-check their token when woken.
            s.cdc.poke();
        });
    }

    pub fn set_token_ttl(&self, ttl: Duration) {
        lock(&self.inner.opts).token_ttl = ttl;
    }

    pub fn tokens_issued(&self) -> u64 {
        self.with_state(|s| s.tokens_issued)
    }

    /// Enforce the daily request limit or not.
    pub fn set_limits(&self, enforce: bool) {
        lock(&self.inner.opts).enforce_limits = enforce;
    }

    pub fn set_daily_limit(&self, limit: u64) {
        lock(&self.inner.opts).daily_limit = limit;
    }

    /// (used, limit) of the API request counter.
    pub fn api_usage(&self) -> (u64, u64) {
        let limit = lock(&self.inner.opts).daily_limit;
        (self.with_state(|s| s.api_used), limit)
    }

    /// Whether REST writes log Change Data Capture events (default: yes). Off for a
    /// benchmark of the sink that has no CDC subscriber: Avro-encoding every write costs the
    /// emulator a third of its CPU, on the cores the bridge is measured on.
    pub fn set_rest_change_events(&self, enabled: bool) {
        self.with_state(|s| s.rest_change_events_off = !enabled);
    }

    /// Sets the used count (e.g. close to the limit).
    pub fn set_api_used(&self, used: u64) {
        self.with_state(|s| s.api_used = used);
    }

    /// Bearer check, version check and the API counter; then `f` under the state lock. Adds
    /// `Sforce-Limit-Info` to the answer.
    pub(crate) fn api(
        &self,
        headers: &HeaderMap,
        version: &str,
        f: impl FnOnce(&mut SfState, &Caller) -> Response,
    ) -> Response {
        let (limit, enforce) = {
            let o = lock(&self.inner.opts);
            (o.daily_limit, o.enforce_limits)
        };
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("OAuth "))
            })
            .unwrap_or_default();
        let mut s = lock(&self.inner.state);
        if s.tokens.get(token).is_none_or(|exp| *exp <= Instant::now()) {
            return sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
                &[],
            );
        }
        let Some(number) = version
            .strip_prefix('v')
            .and_then(|v| v.parse::<f64>().ok())
        else {
            return sf_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
                &[],
            );
        };
        let mut response = if enforce && s.api_used >= limit {
            sf_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
                &[],
            )
        } else {
            s.api_used += 1;
            let writes_before = s.writes.len();
            let client = headers
                .get("sforce-call-options")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.split(',')
                        .find_map(|kv| kv.trim().strip_prefix("client=").map(str::to_string))
                });
            let response = f(
                &mut s,
                &Caller {
                    client,
                    version: number,
                    version_text: version.trim_start_matches('v').to_string(),
                },
            );
            // One request is one transaction; writes rolled back (allOrNone) are gone already.
            cdc::emit_writes(&mut s, writes_before);
            response
        };
        if let Ok(v) = HeaderValue::from_str(&format!("api-usage={}/{limit}", s.api_used)) {
            response.headers_mut().insert("sforce-limit-info", v);
        }
        response
    }
}

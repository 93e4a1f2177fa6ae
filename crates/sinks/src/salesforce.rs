//! Salesforce target: customers, orders, fulfilments and returns upserted by external id
//! through the REST API, batched through sObject Collections.
//!
//! ```text
//!  customer.*     ─► Contact {External_Id__c = entity key, FirstName, LastName, Email, …}
//!  order.*        ─► Order   {External_Id__c = order id, Status, EffectiveDate, …}
//!  fulfillment.*  ─► Order   {External_Id__c = order id, Tracking_Number__c, Carrier__c, …}
//!  return.*       ─► Case    {External_Id__c = return id, Subject, Return_State__c, …}
//!
//!  lanes ─apply─► batcher (per object, ≤ batch_size records, batch_linger_ms) ─► PATCH
//!     /services/data/vXX.X/composite/sobjects/<Object>/External_Id__c  {allOrNone:false}
//!     ◄── results in order, one per record ── each lane gets its own record's result
//! ```
//!
//! Upsert by external id is naturally idempotent: a retry or a redelivery after a crash writes
//! the same values again (no duplicate record). Every write carries
//! `Sforce-Call-Options: client=<id>` so that a Salesforce CDC source recognises the echo.
//!
//! Auth: OAuth2 client credentials; the token is cached, renewed after `token_max_age_secs`
//! and on 401 `INVALID_SESSION_ID` (then the request is sent again once). Failures:
//! 403 `REQUEST_LIMIT_EXCEEDED`, 5xx, timeouts and token endpoint failures are transient
//! (retried by the lane with backoff); a record's own errors (`REQUIRED_FIELD_MISSING`,
//! `INVALID_FIELD`, …) are definite and park that event only, with the error body. A
//! collection request refused as a whole with a 4xx is split into single upserts so that only
//! the offending event is parked. `Sforce-Limit-Info` is remembered: above
//! `api_usage_ceiling` of the daily limit the sink pauses before Salesforce refuses.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tributary_config::SalesforceSinkConfig;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

use crate::activity::Activity;
use crate::batch::{BatchOptions, BatchSend, Batcher};
use crate::http;
use crate::state::EntityRecord;
use crate::target::Outcome;
use crate::{metrics as m, ApplyError, SinkError};
use tributary_sfpubsub::jwt::JwtSigner;

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// While above the usage ceiling, one request is let through this often to re-read the usage.
const LIMIT_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// Collection requests in flight at once (a new batch gathers while earlier ones are sent).
const MAX_CONCURRENT_REQUESTS: usize = 4;
/// Per-record error codes Salesforce documents as worth retrying.
const TRANSIENT_RECORD_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_RUNNING_TOO_LONG",
    "SERVER_UNAVAILABLE",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
];

pub struct SalesforceTarget {
    api: std::sync::Arc<Api>,
    batches: Option<Batcher<Pending>>,
}

/// The HTTP side: token cache, usage pacing, single and collection upserts.
struct Api {
    cfg: SalesforceSinkConfig,
    grant: Grant,
    call_options: String,
    client: reqwest::Client,
    token: tokio::sync::Mutex<Option<Session>>,
    usage: Mutex<Option<Usage>>,
}

#[derive(Clone)]
struct Session {
    access_token: String,
    instance_url: String,
    obtained: Instant,
}

#[derive(Clone, Copy)]
struct Usage {
    used: u64,
    limit: u64,
    at: Instant,
}

/// How the sink obtains tokens.
enum Grant {
    ClientCredentials(String),
    JwtBearer(Box<JwtSigner>),
}

/// One record waiting for a collection request.
struct Pending {
    object: &'static str,
    record: Map<String, Value>,
}

impl SalesforceTarget {
    /// Must run inside the Tokio runtime (the batcher is a task).
    pub fn new(cfg: &SalesforceSinkConfig) -> Result<Self, SinkError> {
        let grant =
            match (&cfg.client_secret, &cfg.jwt_private_key) {
                (Some(secret), _) => Grant::ClientCredentials(secret.resolve().map_err(|e| {
                    SinkError::config("sinks.salesforce.client_secret", e.to_string())
                })?),
                (None, Some(key)) => {
                    let key_key = "sinks.salesforce.jwt_private_key";
                    let pem = key
                        .resolve()
                        .map_err(|e| SinkError::config(key_key, e.to_string()))?;
                    let signer = JwtSigner::new(
                        &pem,
                        &cfg.client_id,
                        cfg.jwt_username.as_deref().unwrap_or_default(),
                        &cfg.jwt_audience,
                    )
                    .map_err(|e| SinkError::config(key_key, e.to_string()))?;
                    // Fail at start-up, not at the first token request.
                    signer
                        .assertion()
                        .map_err(|e| SinkError::config(key_key, e.to_string()))?;
                    Grant::JwtBearer(Box::new(signer))
                }
                (None, None) => {
                    return Err(SinkError::config(
                        "sinks.salesforce.client_secret",
                        "missing (or jwt_private_key)",
                    ))
                }
            };
        let client_tag = cfg
            .call_options_client
            .clone()
            .unwrap_or_else(|| cfg.client_id.clone());
        if client_tag.contains([',', '\r', '\n']) {
            return Err(SinkError::config(
                "sinks.salesforce.call_options_client",
                "must not contain commas or line breaks",
            ));
        }
        let api = std::sync::Arc::new(Api {
            client: http::client(Duration::from_millis(cfg.delivery.request_timeout_ms))?,
            cfg: cfg.clone(),
            grant,
            call_options: format!("client={client_tag}"),
            token: tokio::sync::Mutex::new(None),
            usage: Mutex::new(None),
        });
        let batches = (cfg.batch_size > 1).then(|| {
            Batcher::spawn(
                api.clone(),
                BatchOptions {
                    sink: "salesforce",
                    size: cfg.batch_size,
                    linger: Duration::from_millis(cfg.batch_linger_ms),
                    concurrency: MAX_CONCURRENT_REQUESTS,
                    queue: cfg.batch_size.max(cfg.delivery.lanes) * 2,
                },
            )
        });
        Ok(SalesforceTarget { api, batches })
    }

    /// Lanes the sink needs at least: a lane waits for its record's collection request,
    /// so twice `batch_size` lets the next request fill while one is in flight.
    pub fn min_lanes(&self) -> usize {
        if self.batches.is_some() {
            self.api.cfg.batch_size * 2
        } else {
            1
        }
    }

    /// The lanes' activity, which the batcher watches (none without batching).
    pub(crate) fn activity(&self) -> Option<std::sync::Arc<Activity>> {
        self.batches.as_ref().map(Batcher::activity)
    }

    pub fn filter_subjects(prefix: &str) -> Vec<String> {
        ["customer", "order", "return", "fulfillment"]
            .iter()
            .map(|e| format!("{prefix}.{e}.>"))
            .collect()
    }

    pub async fn apply(
        &self,
        event: &DomainEvent,
        _record: &mut EntityRecord,
        _idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        let Some((object, record)) = self.api.map_event(event) else {
            return Ok(Outcome::Ignored("not for salesforce"));
        };
        match &self.batches {
            None => self.api.upsert_one(object, &record).await?,
            Some(batches) => batches.submit(Pending { object, record }).await?,
        }
        Ok(Outcome::Applied)
    }
}

/// Records are collected per object for up to `batch_linger_ms` (or `batch_size`) and sent
/// as one collection upsert per object; every record's result goes back to its lane.
/// Requests run concurrently (up to [`MAX_CONCURRENT_REQUESTS`]) while the next batch
/// gathers: a lane has one record in flight at a time, so no two requests in flight hold
/// records of the same entity, and each entity's writes stay in order.
impl BatchSend for Api {
    type Item = Pending;

    fn group(&self, item: &Pending) -> &'static str {
        item.object
    }

    async fn send(&self, items: Vec<Pending>) -> Vec<Result<(), ApplyError>> {
        let Some(object) = items.first().map(|p| p.object) else {
            return Vec::new();
        };
        let records: Vec<Map<String, Value>> = items.into_iter().map(|p| p.record).collect();
        self.upsert_many(object, &records).await
    }
}

fn put_str(m: &mut Map<String, Value>, field: &str, value: &str) {
    if !value.is_empty() {
        m.insert(field.into(), Value::String(value.into()));
    }
}

fn date_of(micros: i64) -> Option<String> {
    if micros <= 0 {
        return None;
    }
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = micros.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{d:02}"))
}

impl Api {
    /// The object and fields an event upserts; `None` for events this target does not write.
    /// Empty values are left out so that a partial event (a status change, a POS-owned
    /// field) does not blank fields it does not carry.
    fn map_event(&self, event: &DomainEvent) -> Option<(&'static str, Map<String, Value>)> {
        let meta = event.meta.as_ref()?;
        let ext = self.cfg.external_id_field.as_str();
        let mut m = Map::new();
        let object = match event.entity.as_ref()? {
            Entity::Customer(c) => {
                // A person account carries the contact fields under `Person…` names.
                let person = self.cfg.customer_object == "PersonAccount";
                put_str(&mut m, ext, &meta.entity_key);
                put_str(&mut m, "FirstName", &c.first_name);
                put_str(&mut m, "LastName", &c.last_name);
                put_str(
                    &mut m,
                    if person { "PersonEmail" } else { "Email" },
                    &c.email,
                );
                put_str(&mut m, "Phone", &c.phone);
                if let Some(consent) = &c.consent {
                    m.insert(
                        if person {
                            "PersonHasOptedOutOfEmail"
                        } else {
                            "HasOptedOutOfEmail"
                        }
                        .into(),
                        Value::Bool(!consent.email_marketing),
                    );
                }
                if person {
                    "Account"
                } else {
                    "Contact"
                }
            }
            Entity::Order(o) => {
                put_str(&mut m, ext, &o.order_id);
                let status = self
                    .cfg
                    .order_status_map
                    .get(&o.status)
                    .map(String::as_str)
                    .unwrap_or(&o.status);
                put_str(&mut m, "Status", status);
                put_str(&mut m, "Customer_External_Id__c", &o.customer_id);
                put_str(&mut m, "Payment_State__c", &o.payment_state);
                put_str(&mut m, "Channel__c", &o.channel);
                if let Some(total) = o.total.as_ref().filter(|t| !t.amount.is_empty()) {
                    put_str(&mut m, "Total_Amount__c", &total.amount);
                    put_str(&mut m, "Currency__c", &total.currency);
                }
                if let Some(date) = date_of(o.placed_at_micros) {
                    m.insert("EffectiveDate".into(), Value::String(date));
                }
                "Order"
            }
            Entity::Fulfillment(f) => {
                put_str(&mut m, ext, &f.order_id);
                put_str(&mut m, "Tracking_Number__c", &f.tracking_number);
                put_str(&mut m, "Tracking_Url__c", &f.tracking_url);
                put_str(&mut m, "Carrier__c", &f.carrier);
                put_str(&mut m, "Fulfillment_Status__c", &f.status);
                "Order"
            }
            Entity::ProductReturn(r) => {
                put_str(&mut m, ext, &r.return_id);
                put_str(
                    &mut m,
                    "Subject",
                    &format!("Return {} of order {}", r.return_id, r.order_id),
                );
                m.insert("Type".into(), Value::String("Return".into()));
                m.insert("Origin".into(), Value::String("Tributary".into()));
                put_str(&mut m, "Description", &r.reason);
                put_str(&mut m, "Return_State__c", &r.state);
                put_str(&mut m, "Order_External_Id__c", &r.order_id);
                put_str(&mut m, "SKU__c", &r.sku);
                if r.quantity != 0 {
                    m.insert("Quantity__c".into(), Value::from(r.quantity));
                }
                if let Some(amount) = r.refund_amount.as_ref().filter(|a| !a.amount.is_empty()) {
                    put_str(&mut m, "Refund_Amount__c", &amount.amount);
                }
                "Case"
            }
            // Order lines (OrderItem needs price book entries), products, prices, stock.
            _ => return None,
        };
        // Without its external id a record cannot be upserted; the event is not for us.
        m.contains_key(ext).then_some((object, m))
    }

    fn data_url(&self, session: &Session, path: &str) -> String {
        format!(
            "{}/services/data/v{}{path}",
            session.instance_url.trim_end_matches('/'),
            self.cfg.api_version.trim_start_matches('v')
        )
    }

    /// The cached token, renewed when older than `token_max_age_secs` or when `stale` is the
    /// token that was just refused.
    async fn session(&self, stale: Option<&str>) -> Result<Session, ApplyError> {
        let mut guard = self.token.lock().await;
        if let Some(s) = guard.as_ref() {
            let refused = stale.is_some_and(|t| t == s.access_token);
            let old = s.obtained.elapsed() >= Duration::from_secs(self.cfg.token_max_age_secs);
            if !refused && !old {
                return Ok(s.clone());
            }
        }
        *guard = None;
        let url = format!(
            "{}/services/oauth2/token",
            self.cfg.base_url.trim_end_matches('/')
        );
        let form: Vec<(&str, String)> = match &self.grant {
            Grant::ClientCredentials(secret) => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", self.cfg.client_id.clone()),
                ("client_secret", secret.clone()),
            ],
            Grant::JwtBearer(signer) => vec![
                ("grant_type", JWT_BEARER_GRANT.into()),
                (
                    "assertion",
                    signer.assertion().map_err(|e| {
                        ApplyError::transient(format!("signing the JWT assertion: {e}"))
                    })?,
                ),
            ],
        };
        let resp = self
            .client
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(http::send_error)?;
        let status = resp.status();
        let text = resp.text().await.map_err(http::send_error)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        // A refused credential pauses the sink (transient) rather than parking every event.
        let (Some(token), Some(instance)) = (
            body["access_token"]
                .as_str()
                .filter(|_| status.is_success()),
            body["instance_url"].as_str(),
        ) else {
            return Err(ApplyError::transient(format!(
                "Salesforce token request: HTTP {}: {}",
                status.as_u16(),
                http::truncate(&text, 300)
            )));
        };
        metrics::counter!(m::SF_TOKENS, "sink" => "salesforce").increment(1);
        let s = Session {
            access_token: token.to_string(),
            instance_url: instance.to_string(),
            obtained: Instant::now(),
        };
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Above the usage ceiling (as last reported), wait instead of spending the org's limit.
    fn check_usage(&self) -> Result<(), ApplyError> {
        let usage = *self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let Some(u) = usage else { return Ok(()) };
        let ceiling = (u.limit as f64 * self.cfg.api_usage_ceiling) as u64;
        let since = u.at.elapsed();
        if u.limit > 0 && u.used >= ceiling && since < LIMIT_PROBE_INTERVAL {
            return Err(ApplyError::Transient {
                reason: format!(
                    "API usage {}/{} above the ceiling {}",
                    u.used, u.limit, self.cfg.api_usage_ceiling
                ),
                retry_after: Some(LIMIT_PROBE_INTERVAL - since),
                throttled: true,
            });
        }
        Ok(())
    }

    fn remember_usage(&self, resp: &reqwest::Response) {
        let Some(v) = resp
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let Some((used, limit)) = v
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("api-usage="))
            .and_then(|u| u.split_once('/'))
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        else {
            return;
        };
        if limit > 0 {
            metrics::gauge!(m::SF_API_USAGE, "sink" => "salesforce")
                .set(used as f64 / limit as f64);
        }
        *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(Usage {
            used,
            limit,
            at: Instant::now(),
        });
    }

    /// One authenticated PATCH; a refused session is renewed and the request sent once more.
    /// Returns the status and body of any answer that is not an auth failure.
    async fn patch(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(u16, String), ApplyError> {
        self.check_usage()?;
        let mut session = self.session(None).await?;
        for attempt in 0..2 {
            let resp = self
                .client
                .patch(self.data_url(&session, path))
                .bearer_auth(&session.access_token)
                .header("Sforce-Call-Options", &self.call_options)
                .json(body)
                .send()
                .await
                .map_err(http::send_error)?;
            self.remember_usage(&resp);
            let status = resp.status();
            let retry_after = http::retry_after(&resp);
            let text = resp.text().await.map_err(http::send_error)?;
            let code = error_code(&text);
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::info!(code = %code, "Salesforce session refused; renewing the token");
                session = self.session(Some(&session.access_token)).await?;
                continue;
            }
            if code == "REQUEST_LIMIT_EXCEEDED" {
                return Err(ApplyError::Transient {
                    reason: format!("HTTP {}: REQUEST_LIMIT_EXCEEDED", status.as_u16()),
                    retry_after,
                    throttled: true,
                });
            }
            if status.is_success() || status.as_u16() == 300 {
                return Ok((status.as_u16(), text));
            }
            return Err(http::classify(status, retry_after, &text));
        }
        Err(ApplyError::transient(
            "Salesforce refused a freshly issued session",
        ))
    }

    /// `PATCH /sobjects/<Object>/<field>/<value>`.
    async fn upsert_one(
        &self,
        object: &str,
        record: &Map<String, Value>,
    ) -> Result<(), ApplyError> {
        let ext = &self.cfg.external_id_field;
        let value = record.get(ext).and_then(Value::as_str).unwrap_or_default();
        let mut body = record.clone();
        body.remove(ext);
        let path = format!("/sobjects/{object}/{ext}/{}", utf8_percent_encode(value));
        metrics::counter!(m::SF_REQUESTS, "sink" => "salesforce", "kind" => "single").increment(1);
        let (status, text) = match self.patch(&path, &Value::Object(body)).await {
            Ok(answer) => answer,
            // A single record refused (4xx with `[{errorCode, message, fields}]`) is judged
            // like a refused record of a collection: the same `<Object> <code>: <message>`
            // reason, and the same transient codes (UNABLE_TO_LOCK_ROW comes as a 400 too).
            Err(ApplyError::Definite { reason, body }) => {
                return Err(match single_record_errors(&body) {
                    Some(errors) => record_error(object, &errors, &body),
                    None => ApplyError::Definite { reason, body },
                })
            }
            Err(e) => return Err(e),
        };
        if status == 300 {
            return Err(ApplyError::definite(
                format!("{object} {ext}={value} matches several records"),
                http::truncate(&text, 4000),
            ));
        }
        // 201 created, 200 updated (v46+), 204 updated.
        if !text.trim().is_empty() {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v["success"] == Value::Bool(false) {
                    return Err(record_error(object, &v["errors"], &text));
                }
            }
        }
        Ok(())
    }

    /// `PATCH /composite/sobjects/<Object>/<field>` with `allOrNone: false`; one result per
    /// record, in order. A request refused as a whole with a definite error is retried as
    /// single upserts so that only the offending records fail.
    async fn upsert_many(
        &self,
        object: &str,
        records: &[Map<String, Value>],
    ) -> Vec<Result<(), ApplyError>> {
        if records.len() == 1 {
            return vec![self.upsert_one(object, &records[0]).await];
        }
        let body = CollectionBody {
            all_or_none: false,
            records: records
                .iter()
                .map(|fields| CollectionRecord {
                    attributes: Attributes { kind: object },
                    fields,
                })
                .collect(),
        };
        let path = format!(
            "/composite/sobjects/{object}/{}",
            self.cfg.external_id_field
        );
        metrics::counter!(m::SF_REQUESTS, "sink" => "salesforce", "kind" => "collection")
            .increment(1);
        metrics::histogram!(m::SF_BATCH_SIZE, "sink" => "salesforce").record(records.len() as f64);
        let (_, text) = match self.patch(&path, &body).await {
            Ok(answer) => answer,
            Err(ApplyError::Definite { reason, .. }) => {
                tracing::warn!(%reason, records = records.len(), "collection refused as a whole; sending single upserts");
                let mut out = Vec::with_capacity(records.len());
                for r in records {
                    out.push(self.upsert_one(object, r).await);
                }
                return out;
            }
            Err(e) => return vec![Err(e); records.len()],
        };
        let results: Vec<Value> = match serde_json::from_str(&text) {
            Ok(Value::Array(a)) if a.len() == records.len() => a,
            _ => {
                let e = ApplyError::transient(format!(
                    "collection answer does not have {} results: {}",
                    records.len(),
                    http::truncate(&text, 300)
                ));
                return vec![Err(e); records.len()];
            }
        };
        results
            .iter()
            .map(|r| {
                if r["success"].as_bool() == Some(true) {
                    Ok(())
                } else {
                    Err(record_error(object, &r["errors"], &r.to_string()))
                }
            })
            .collect()
    }
}

/// `{allOrNone, records: [{attributes: {type}, …fields}]}`, serialised from the lanes'
/// records without copying them.
#[derive(serde::Serialize)]
struct CollectionBody<'a> {
    #[serde(rename = "allOrNone")]
    all_or_none: bool,
    records: Vec<CollectionRecord<'a>>,
}

#[derive(serde::Serialize)]
struct CollectionRecord<'a> {
    attributes: Attributes<'a>,
    #[serde(flatten)]
    fields: &'a Map<String, Value>,
}

#[derive(serde::Serialize)]
struct Attributes<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

/// The first `errorCode` (single) or `statusCode` (collections) of an error body.
fn error_code(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let first = v
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    first["errorCode"]
        .as_str()
        .or(first["statusCode"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The error list of a refused single-record request, if the body is one
/// (`[{message, errorCode, fields}]`).
fn single_record_errors(body: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.as_array()?
        .first()?
        .get("errorCode")?
        .as_str()
        .is_some()
        .then_some(v)
}

fn record_error(object: &str, errors: &Value, body: &str) -> ApplyError {
    let first = errors
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    let code = first["statusCode"]
        .as_str()
        .or(first["errorCode"].as_str())
        .unwrap_or("UNKNOWN");
    let message = first["message"].as_str().unwrap_or("record refused");
    let reason = format!("{object} {code}: {message}");
    if TRANSIENT_RECORD_CODES.contains(&code) {
        ApplyError::transient(reason)
    } else {
        ApplyError::definite(reason, http::truncate(body, 4000))
    }
}

/// Percent-encodes a path segment (external ids may hold `/`, spaces, …).
fn utf8_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn dates() {
        assert_eq!(date_of(0), None);
        assert_eq!(
            date_of(1_700_000_000_000_000).as_deref(),
            Some("2023-11-14")
        );
        assert_eq!(date_of(951_782_400_000_000).as_deref(), Some("2000-02-29"));
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code(r#"[{"message":"x","errorCode":"INVALID_SESSION_ID","fields":[]}]"#),
            "INVALID_SESSION_ID"
        );
        let e = record_error(
            "Contact",
            &json!([{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]),
            "body",
        );
        assert!(matches!(e, ApplyError::Definite { .. }));
        let e = record_error("Order", &json!([{"statusCode": "UNABLE_TO_LOCK_ROW"}]), "");
        assert!(matches!(e, ApplyError::Transient { .. }));
        assert_eq!(utf8_percent_encode("SO 1/2"), "SO%201%2F2");
        // A single upsert's 400: judged by its error code, like a collection record.
        let body = r#"[{"errorCode":"INVALID_EMAIL_ADDRESS","fields":["Email"],"message":"Email: invalid email address: x"}]"#;
        let errors = single_record_errors(body).expect("an error list");
        match record_error("Contact", &errors, body) {
            ApplyError::Definite { reason, .. } => assert_eq!(
                reason,
                "Contact INVALID_EMAIL_ADDRESS: Email: invalid email address: x"
            ),
            e => panic!("{e}"),
        }
        let body = r#"[{"errorCode":"UNABLE_TO_LOCK_ROW","fields":[],"message":"unable to obtain exclusive access"}]"#;
        let errors = single_record_errors(body).expect("an error list");
        assert!(matches!(
            record_error("Order", &errors, body),
            ApplyError::Transient { .. }
        ));
        assert!(single_record_errors("{\"errors\": 1}").is_none());
        assert!(single_record_errors("not json").is_none());
    }

    use std::future::Future;
    use std::pin::pin;

    use tributary_proto::retail::v1::{Customer, EventMeta};
    use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
    use tributary_sandbox::{Fault, RunningEmulator};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Long enough that a batch which leaves did not wait it out.
    const NEVER: u64 = 600_000;

    fn target(sf: &RunningEmulator<Salesforce>, linger_ms: u64) -> SalesforceTarget {
        let (id, secret) = SalesforceOptions::default().clients[0].clone();
        let cfg: SalesforceSinkConfig = serde_json::from_value(json!({
            "base_url": sf.base_url(),
            "client_id": id,
            "client_secret": secret,
            "batch_linger_ms": linger_ms,
        }))
        .expect("a valid [sinks.salesforce]");
        SalesforceTarget::new(&cfg).expect("a Salesforce target")
    }

    fn customer(n: u32, version: u64) -> DomainEvent {
        DomainEvent {
            meta: Some(EventMeta {
                event_id: format!("ev-{n}-{version}"),
                entity: "customer".into(),
                event: "updated".into(),
                entity_key: format!("C-{n}"),
                entity_version: version,
                ..Default::default()
            }),
            entity: Some(Entity::Customer(Customer {
                customer_id: format!("C-{n}"),
                last_name: format!("Last{n}-v{version}"),
                ..Default::default()
            })),
        }
    }

    async fn apply(t: &SalesforceTarget, n: u32, version: u64) -> Result<Outcome, String> {
        t.apply(&customer(n, version), &mut EntityRecord::default(), "")
            .await
            .map_err(|e| e.to_string())
    }

    /// The records of each collection request, and the single upserts (as 1).
    fn request_sizes(sf: &Salesforce) -> Vec<usize> {
        sf.requests()
            .matching("/services/data/")
            .iter()
            .map(|r| {
                r.json()
                    .and_then(|b| b["records"].as_array().map(Vec::len))
                    .unwrap_or(1)
            })
            .collect()
    }

    /// Polls `f` for `d`: `Some` if it completed.
    async fn within<F: Future + Unpin>(d: Duration, f: &mut F) -> Option<F::Output> {
        tokio::time::timeout(d, f).await.ok()
    }

    #[tokio::test]
    async fn a_batch_leaves_without_its_linger_once_no_lane_can_add() -> TestResult {
        let sf = salesforce::start(SalesforceOptions::default()).await?;
        let t = target(&sf, NEVER);
        let activity = t.activity().ok_or("batching is on")?;
        let _lanes: Vec<_> = (0..4).map(|_| activity.lane()).collect();
        let mut batch = pin!(futures::future::join_all((0..3).map(|n| apply(&t, n, 1))));
        // The fourth lane holds an event it has not handed in yet: the batch waits for it.
        assert!(within(Duration::from_millis(300), &mut batch)
            .await
            .is_none());
        // Idle, but the dispatcher may hand it the next message at any moment.
        let _idle = activity.idle();
        assert!(within(Duration::from_millis(300), &mut batch)
            .await
            .is_none());
        // The dispatcher is stuck behind a full lane: nothing can reach the idle lane.
        let _blocked = activity.dispatcher_blocked();
        let results = within(Duration::from_secs(30), &mut batch)
            .await
            .ok_or("the batch waited for its linger")?;
        for r in results {
            assert_eq!(r?, Outcome::Applied);
        }
        assert_eq!(
            request_sizes(&sf),
            vec![3],
            "one collection of the three records"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_partial_batch_waits_for_the_request_in_flight() -> TestResult {
        let sf = salesforce::start(SalesforceOptions::default()).await?;
        let t = target(&sf, NEVER);
        let activity = t.activity().ok_or("batching is on")?;
        let first_lane = activity.lane();
        // The session first: the token request would otherwise take the fault below.
        assert_eq!(apply(&t, 0, 1).await?, Outcome::Applied);
        // The next request is applied at once and answered 1.5 s later.
        sf.faults()
            .fail_next(1, Fault::TimeoutAfterApply(Duration::from_millis(1500)));
        let mut first = pin!(apply(&t, 1, 1));
        let held = within(Duration::from_millis(300), &mut first).await;
        assert!(held.is_none());
        assert_eq!(sf.writes().len(), 2, "sent alone (no other lane)");
        // A second lane's record: no lane can add, but the answer in flight brings the first
        // lane back, maybe with a record for the same request.
        let _second_lane = activity.lane();
        let mut second = pin!(apply(&t, 2, 1));
        let held = within(Duration::from_millis(300), &mut second).await;
        assert!(held.is_none());
        assert_eq!(sf.writes().len(), 2, "the second record was sent");
        let answer = within(Duration::from_secs(30), &mut first).await;
        assert_eq!(answer.ok_or("no answer")??, Outcome::Applied);
        // The first lane has nothing more: the second record goes.
        drop(first_lane);
        let answer = within(Duration::from_secs(30), &mut second).await;
        assert_eq!(
            answer.ok_or("the batch waited for its linger")??,
            Outcome::Applied
        );
        assert_eq!(sf.writes().len(), 3);
        assert_eq!(request_sizes(&sf), vec![1, 1, 1]);
        Ok(())
    }

    #[tokio::test]
    async fn lanes_batched_together_keep_each_entitys_order() -> TestResult {
        let sf = salesforce::start(SalesforceOptions::default()).await?;
        let t = std::sync::Arc::new(target(&sf, 20));
        let activity = t.activity().ok_or("batching is on")?;
        let (lanes, entities_per_lane, versions) = (16u32, 8u32, 5u64);
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..lanes {
            let (t, activity) = (t.clone(), activity.clone());
            tasks.spawn(async move {
                // Like a sink lane: one record in flight, the next event after its answer.
                let _lane = activity.lane();
                for version in 1..=versions {
                    for e in 0..entities_per_lane {
                        apply(&t, lane * entities_per_lane + e, version).await?;
                    }
                }
                Ok::<(), String>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let writes = sf.writes();
        assert_eq!(
            writes.len() as u64,
            u64::from(lanes * entities_per_lane) * versions
        );
        let mut last: HashMap<String, u64> = HashMap::new();
        for w in &writes {
            let name = w.fields["LastName"].as_str().unwrap_or_default();
            let version: u64 = name.rsplit("-v").next().unwrap_or("").parse()?;
            let before = last.insert(w.external_id.clone(), version).unwrap_or(0);
            assert_eq!(
                version,
                before + 1,
                "{}: v{version} after v{before}",
                w.external_id
            );
        }
        assert!(
            request_sizes(&sf).iter().any(|n| *n > 1),
            "records of several lanes shared a request"
        );
        Ok(())
    }
}

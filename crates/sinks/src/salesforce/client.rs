//! The HTTP side: authenticated PATCHes, single and collection upserts, and the batcher's
//! `send`.

use serde_json::{Map, Value};
use tributary_config::SalesforceSinkConfig;

use super::encode::{utf8_percent_encode, Attributes, CollectionBody, CollectionRecord};
use super::errors::{error_code, record_error, single_record_errors};
use crate::batch::BatchSend;
use crate::{http, metrics as m, ApplyError};
use tributary_salesforce::{Auth, Session, UsagePacer};

/// The shared session and usage pacing, and the HTTP client.
pub(super) struct Api {
    pub cfg: SalesforceSinkConfig,
    pub auth: Auth,
    pub call_options: String,
    pub client: reqwest::Client,
    pub usage: UsagePacer,
}

/// One record waiting for a collection request.
pub(super) struct Pending {
    pub object: &'static str,
    pub record: Map<String, Value>,
}

/// Records are collected per object for up to `batch_linger_ms` (or `batch_size`) and sent
/// as one collection upsert per object; every record's result goes back to its lane.
/// Requests run concurrently (up to [`super::MAX_CONCURRENT_REQUESTS`]) while the next batch
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

impl Api {
    fn data_url(&self, session: &Session, path: &str) -> String {
        format!(
            "{}/services/data/v{}{path}",
            session.instance_url.trim_end_matches('/'),
            self.cfg.api_version.trim_start_matches('v')
        )
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
            http::check_fence(None)?;
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
                session = self.session(Some(&session)).await?;
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
    pub(super) async fn upsert_one(
        &self,
        object: &str,
        record: &Map<String, Value>,
    ) -> Result<(), ApplyError> {
        let ext = &self.cfg.external_id_field;
        let value = record.get(ext).and_then(Value::as_str).unwrap_or_default();
        let mut body = record.clone();
        body.remove(ext);
        let path = format!("/sobjects/{object}/{ext}/{}", utf8_percent_encode(value));
        self.write_one(object, &path, body, &format!("{ext}={value}"))
            .await
    }

    /// `PATCH /sobjects/<Object>/<id>`: an update of a record Salesforce created itself (an
    /// entity keyed `SF-<record id>`), which carries no external id to upsert by.
    pub(super) async fn update_by_id(
        &self,
        object: &str,
        id: &str,
        record: &Map<String, Value>,
    ) -> Result<(), ApplyError> {
        let mut body = record.clone();
        body.remove(&self.cfg.external_id_field);
        let path = format!("/sobjects/{object}/{}", utf8_percent_encode(id));
        self.write_one(object, &path, body, &format!("Id={id}"))
            .await
    }

    async fn write_one(
        &self,
        object: &str,
        path: &str,
        body: Map<String, Value>,
        key: &str,
    ) -> Result<(), ApplyError> {
        metrics::counter!(m::SF_REQUESTS, "sink" => "salesforce", "kind" => "single").increment(1);
        let (status, text) = match self.patch(path, &Value::Object(body)).await {
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
                format!("{object} {key} matches several records"),
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

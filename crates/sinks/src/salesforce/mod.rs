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

mod auth;
mod client;
mod encode;
mod errors;
mod limits;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tributary_config::SalesforceSinkConfig;
use tributary_proto::retail::v1::DomainEvent;

use crate::activity::Activity;
use crate::batch::{BatchOptions, Batcher};
use crate::http;
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::{ApplyError, SinkError};
use client::{Api, Pending};

/// Collection requests in flight at once (a new batch gathers while earlier ones are sent).
const MAX_CONCURRENT_REQUESTS: usize = 4;

pub struct SalesforceTarget {
    api: std::sync::Arc<Api>,
    batches: Option<Batcher<Pending>>,
}

impl SalesforceTarget {
    /// Must run inside the Tokio runtime (the batcher is a task).
    pub fn new(cfg: &SalesforceSinkConfig) -> Result<Self, SinkError> {
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
        let client = http::client(Duration::from_millis(cfg.delivery.request_timeout_ms))?;
        let api = std::sync::Arc::new(Api {
            auth: auth::auth(cfg, client.clone())?,
            client,
            cfg: cfg.clone(),
            call_options: format!("client={client_tag}"),
            usage: tributary_salesforce::UsagePacer::new(cfg.api_usage_ceiling),
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
        let Some((object, record)) = encode::map_event(&self.api.cfg, event) else {
            return Ok(Outcome::Ignored("not for salesforce"));
        };
        let key = record.get(&self.api.cfg.external_id_field);
        if let Some(id) = key
            .and_then(serde_json::Value::as_str)
            .and_then(encode::own_record_id)
        {
            // A record the org created itself (a return Case an agent opened): upserting by
            // external id would create a second one.
            self.api.update_by_id(object, id, &record).await?;
            return Ok(Outcome::Applied);
        }
        match &self.batches {
            None => self.api.upsert_one(object, &record).await?,
            Some(batches) => batches.submit(Pending { object, record }).await?,
        }
        Ok(Outcome::Applied)
    }
}

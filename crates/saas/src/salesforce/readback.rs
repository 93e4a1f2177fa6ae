//! Gap events carry no field data: the record is re-read through the REST API
//! (`GET /services/data/v<version>/sobjects/<entity>/<id>`) and stored as a READ change.
//! Overflow events do not even name the records: their ids come from a SOQL query over
//! `SystemModstamp` ([`modified_ids`]).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::auth::Session;
use super::subscriber::Feed;
use crate::SaasError;

/// The record's fields (without `attributes`), or None when it no longer exists (404).
/// Errors are `End`-compatible through the caller: a 401 refreshes the token once.
pub(crate) async fn read(
    feed: &Feed,
    session: &Arc<Session>,
    entity: &str,
    id: &str,
) -> Result<Option<Map<String, Value>>, SaasError> {
    let mut session = session.clone();
    for attempt in 0..2 {
        let url = format!(
            "{}/services/data/v{}/sobjects/{}/{}",
            session.instance_url.trim_end_matches('/'),
            feed.cfg.api_version.trim_start_matches('v'),
            entity,
            id
        );
        let what = || format!("read-back of {entity} {id}");
        let resp = feed
            .auth
            .http
            .get(&url)
            .bearer_auth(&session.access_token)
            .send()
            .await
            .map_err(|e| SaasError::http(what(), e))?;
        match resp.status().as_u16() {
            200 => {
                let mut v: Map<String, Value> =
                    resp.json().await.map_err(|e| SaasError::http(what(), e))?;
                v.remove("attributes");
                return Ok(Some(v));
            }
            404 => return Ok(None),
            401 if attempt == 0 => session = feed.auth.refresh(&session).await?,
            status => {
                let body = resp.text().await.unwrap_or_default();
                return Err(SaasError::http(what(), format!("{status}: {body}")));
            }
        }
    }
    Err(SaasError::http(
        format!("read-back of {entity} {id}"),
        "401 after a new token",
    ))
}

/// Ids of the `entity` records whose `SystemModstamp` lies in [`from`, `to`] (RFC 3339), all
/// pages (`nextRecordsUrl`) of the SOQL query.
pub(crate) async fn modified_ids(
    feed: &Feed,
    session: &Arc<Session>,
    entity: &str,
    from: &str,
    to: &str,
) -> Result<Vec<String>, SaasError> {
    let mut session = session.clone();
    let base = session.instance_url.trim_end_matches('/').to_string();
    let soql = format!(
        "SELECT Id FROM {entity} WHERE SystemModstamp >= {from} AND SystemModstamp <= {to} ORDER BY SystemModstamp"
    );
    let what = || format!("overflow read-back query of {entity}");
    let mut url = reqwest::Url::parse(&format!(
        "{base}/services/data/v{}/query",
        feed.cfg.api_version.trim_start_matches('v')
    ))
    .map_err(|e| SaasError::http(what(), e))?;
    url.query_pairs_mut().append_pair("q", &soql);
    let mut ids = Vec::new();
    let mut refreshed = false;
    loop {
        let resp = feed
            .auth
            .http
            .get(url.clone())
            .bearer_auth(&session.access_token)
            .send()
            .await
            .map_err(|e| SaasError::http(what(), e))?;
        match resp.status().as_u16() {
            200 => {}
            401 if !refreshed => {
                refreshed = true;
                session = feed.auth.refresh(&session).await?;
                continue;
            }
            status => {
                let body = resp.text().await.unwrap_or_default();
                return Err(SaasError::http(what(), format!("{status}: {body}")));
            }
        }
        let page: Value = resp.json().await.map_err(|e| SaasError::http(what(), e))?;
        ids.extend(
            page["records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["Id"].as_str().map(str::to_string)),
        );
        match page["nextRecordsUrl"].as_str() {
            Some(next) if page["done"].as_bool() != Some(true) => {
                url = reqwest::Url::parse(&format!("{base}{next}"))
                    .map_err(|e| SaasError::http(what(), e))?;
            }
            _ => return Ok(ids),
        }
    }
}

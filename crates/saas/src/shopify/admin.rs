//! A small Admin GraphQL client for the reconciliation poll: token header, cost-based
//! throttling (THROTTLED in the body with HTTP 200 or 429: wait for the bucket, retry).

use std::time::Duration;

use serde_json::{json, Value};
use tributary_config::ShopifyAdminConfig;

use crate::SaasError;

pub(super) struct AdminClient {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

impl AdminClient {
    pub fn new(cfg: &ShopifyAdminConfig, key: &str) -> Result<AdminClient, SaasError> {
        let token = cfg
            .access_token
            .resolve()
            .map_err(|e| SaasError::config(format!("{key}.access_token"), e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SaasError::http("Shopify Admin API client", e))?;
        Ok(AdminClient {
            http,
            endpoint: format!(
                "{}/admin/api/{}/graphql.json",
                cfg.url.trim_end_matches('/'),
                cfg.api_version
            ),
            token,
        })
    }

    /// Runs a query; returns `data`.
    pub async fn query(&self, query: &str, variables: Value) -> Result<Value, SaasError> {
        let what = || format!("Shopify Admin API {}", self.endpoint);
        let body = json!({"query": query, "variables": variables});
        for _ in 0..20 {
            let resp = self
                .http
                .post(&self.endpoint)
                .header("X-Shopify-Access-Token", &self.token)
                .json(&body)
                .send()
                .await
                .map_err(|e| SaasError::http(what(), e))?;
            let status = resp.status();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            let throttled = status.as_u16() == 429
                || answer
                    .pointer("/errors/0/extensions/code")
                    .and_then(Value::as_str)
                    == Some("THROTTLED");
            if throttled {
                let wait = answer
                    .pointer("/extensions/cost")
                    .and_then(|c| {
                        let need = c.get("requestedQueryCost")?.as_f64()?;
                        let t = c.get("throttleStatus")?;
                        let have = t.get("currentlyAvailable")?.as_f64()?;
                        let rate = t.get("restoreRate")?.as_f64()?;
                        Some(((need - have).max(0.0) / rate.max(1.0)).min(10.0))
                    })
                    .unwrap_or(1.0);
                tokio::time::sleep(Duration::from_secs_f64(wait.max(0.1))).await;
                continue;
            }
            if !status.is_success() {
                return Err(SaasError::http(what(), format!("HTTP {status}: {answer}")));
            }
            if let Some(errors) = answer.get("errors").filter(|e| !e.is_null()) {
                return Err(SaasError::http(what(), errors.to_string()));
            }
            return Ok(answer.get("data").cloned().unwrap_or(Value::Null));
        }
        Err(SaasError::http(what(), "still throttled after 20 attempts"))
    }
}

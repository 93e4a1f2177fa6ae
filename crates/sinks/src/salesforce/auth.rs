//! The sink's OAuth2 session: client credentials or a JWT bearer assertion, the token cached
//! and renewed after `token_max_age_secs` or once Salesforce refuses it.

use std::time::{Duration, Instant};

use serde_json::Value;
use tributary_config::SalesforceSinkConfig;
use tributary_sfpubsub::jwt::JwtSigner;

use super::client::Api;
use crate::{http, metrics as m, ApplyError, SinkError};

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Clone)]
pub(super) struct Session {
    pub access_token: String,
    pub instance_url: String,
    obtained: Instant,
}

/// How the sink obtains tokens.
pub(super) enum Grant {
    ClientCredentials(String),
    JwtBearer(Box<JwtSigner>),
}

impl Grant {
    /// Resolves the secret or loads (and tries) the signing key, naming the key on failure.
    pub(super) fn from_config(cfg: &SalesforceSinkConfig) -> Result<Grant, SinkError> {
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
        Ok(grant)
    }
}

impl Api {
    /// The cached token, renewed when older than `token_max_age_secs` or when `stale` is the
    /// token that was just refused.
    pub(super) async fn session(&self, stale: Option<&str>) -> Result<Session, ApplyError> {
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
}

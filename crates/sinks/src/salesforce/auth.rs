//! The sink's side of the shared Salesforce session (`tributary-salesforce`): the grant from
//! `[sinks.salesforce]`, and token failures as transient apply errors (a refused credential
//! pauses the sink rather than parking every event).

use std::sync::Arc;
use std::time::Duration;

use tributary_config::SalesforceSinkConfig;
use tributary_salesforce::{Auth, Grant, Session};
use tributary_sfpubsub::jwt::JwtSigner;

use super::client::Api;
use crate::{metrics as m, ApplyError, SinkError};

/// The session source of `[sinks.salesforce]`: the secret resolved or the signing key loaded
/// (and tried), naming the key on failure.
pub(super) fn auth(cfg: &SalesforceSinkConfig, http: reqwest::Client) -> Result<Auth, SinkError> {
    let grant = match (&cfg.client_secret, &cfg.jwt_private_key) {
        (Some(secret), _) => Grant::ClientCredentials {
            client_id: cfg.client_id.clone(),
            secret: secret
                .resolve()
                .map_err(|e| SinkError::config("sinks.salesforce.client_secret", e.to_string()))?,
        },
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
    let max_age = Duration::from_secs(cfg.token_max_age_secs);
    Ok(
        Auth::new(http, &cfg.base_url, grant, Some(max_age)).on_token(|_| {
            metrics::counter!(m::SF_TOKENS, "sink" => "salesforce").increment(1);
        }),
    )
}

impl Api {
    /// The cached session; with `stale` (a session just refused) a new one unless another
    /// lane already replaced it.
    pub(super) async fn session(
        &self,
        stale: Option<&Session>,
    ) -> Result<Arc<Session>, ApplyError> {
        let session = match stale {
            None => self.auth.session().await,
            Some(s) => self.auth.refresh(s).await,
        };
        session.map_err(|e| ApplyError::transient(format!("Salesforce {e}")))
    }
}

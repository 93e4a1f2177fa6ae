//! OAuth2 for the Pub/Sub API (client credentials or JWT bearer): one session per org, shared
//! by its topic streams, replaced when Salesforce answers UNAUTHENTICATED (or a read-back 401).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Mutex;
use tracing::info;
use tributary_sfpubsub::jwt::JwtSigner;

use crate::metrics as m;
use crate::SaasError;

/// What the Pub/Sub API's auth metadata carries.
#[derive(Debug)]
pub(crate) struct Session {
    pub access_token: String,
    pub instance_url: String,
    pub tenant_id: String,
    /// Which token this is, so that concurrent refreshes after one expiry fetch only once.
    pub generation: u64,
}

/// How the token is obtained.
pub(crate) enum Grant {
    ClientCredentials {
        secret: String,
    },
    /// The signer carries `iss` (client id), `sub` (user) and `aud`.
    JwtBearer(Box<JwtSigner>),
}

pub(crate) struct Auth {
    pub feed: String,
    pub http: reqwest::Client,
    pub token_url: String,
    pub client_id: String,
    pub grant: Grant,
    current: Mutex<(u64, Option<Arc<Session>>)>,
}

impl Auth {
    pub fn new(feed: &str, http: reqwest::Client, login_url: &str, id: &str, grant: Grant) -> Self {
        Auth {
            feed: feed.to_string(),
            http,
            token_url: format!("{}/services/oauth2/token", login_url.trim_end_matches('/')),
            client_id: id.to_string(),
            grant,
            current: Mutex::new((0, None)),
        }
    }

    /// The current session, fetching a token the first time.
    pub async fn session(&self) -> Result<Arc<Session>, SaasError> {
        let mut cur = self.current.lock().await;
        if let Some(s) = &cur.1 {
            return Ok(s.clone());
        }
        let s = Arc::new(self.fetch(cur.0 + 1).await?);
        *cur = (s.generation, Some(s.clone()));
        Ok(s)
    }

    /// A new session unless someone already replaced `stale`.
    pub async fn refresh(&self, stale: &Session) -> Result<Arc<Session>, SaasError> {
        let mut cur = self.current.lock().await;
        if let Some(s) = &cur.1 {
            if s.generation != stale.generation {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(self.fetch(cur.0 + 1).await?);
        *cur = (s.generation, Some(s.clone()));
        Ok(s)
    }

    async fn fetch(&self, generation: u64) -> Result<Session, SaasError> {
        let what = || format!("salesforce_cdc {} token", self.feed);
        // The serializer is not Send: finish it before the first await.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            match &self.grant {
                Grant::ClientCredentials { secret } => form
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", &self.client_id)
                    .append_pair("client_secret", secret),
                Grant::JwtBearer(signer) => form
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair(
                        "assertion",
                        &signer.assertion().map_err(|e| {
                            SaasError::http(format!("salesforce_cdc {} JWT", self.feed), e)
                        })?,
                    ),
            };
            form.finish()
        };
        let resp = self
            .http
            .post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| SaasError::http(what(), e))?;
        let status = resp.status();
        let json: Value = resp.json().await.map_err(|e| SaasError::http(what(), e))?;
        if !status.is_success() {
            // The answer names the OAuth error, never the secret.
            return Err(SaasError::http(what(), format!("{status}: {json}")));
        }
        let text = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (access_token, instance_url) = (text("access_token"), text("instance_url"));
        if access_token.is_empty() || instance_url.is_empty() {
            return Err(SaasError::http(
                what(),
                "no access_token or instance_url in the answer",
            ));
        }
        // `id` is `<login>/id/<org id>/<user id>`: the org id is the Pub/Sub tenant id.
        let id = text("id");
        let tenant_id = id
            .split("/id/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        metrics::counter!(m::SAAS_TOKENS, "feed" => self.feed.clone()).increment(1);
        info!(feed = %self.feed, %instance_url, generation, "Salesforce access token obtained");
        Ok(Session {
            access_token,
            instance_url,
            tenant_id,
            generation,
        })
    }
}

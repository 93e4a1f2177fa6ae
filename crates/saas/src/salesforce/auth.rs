//! OAuth2 client credentials for the Pub/Sub API: one session per org, shared by its topic
//! streams, replaced when Salesforce answers UNAUTHENTICATED (or a read-back 401).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Mutex;
use tracing::info;

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

pub(crate) struct Auth {
    pub feed: String,
    pub http: reqwest::Client,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    current: Mutex<(u64, Option<Arc<Session>>)>,
}

impl Auth {
    pub fn new(
        feed: &str,
        http: reqwest::Client,
        login_url: &str,
        id: &str,
        secret: String,
    ) -> Self {
        Auth {
            feed: feed.to_string(),
            http,
            token_url: format!("{}/services/oauth2/token", login_url.trim_end_matches('/')),
            client_id: id.to_string(),
            client_secret: secret,
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
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .finish();
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

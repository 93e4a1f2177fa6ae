//! The CDC source's side of the shared Salesforce session (`tributary-salesforce`): one
//! session per org, shared by its topic streams, replaced when Salesforce answers
//! UNAUTHENTICATED (or a read-back 401); failures as this feed's errors.

use std::sync::Arc;

use tracing::info;
pub(crate) use tributary_salesforce::{Grant, Session};

use crate::metrics as m;
use crate::SaasError;

pub(crate) struct Auth {
    feed: String,
    /// The client the token requests use; the read-backs share it.
    pub http: reqwest::Client,
    inner: tributary_salesforce::Auth,
}

impl Auth {
    pub fn new(feed: &str, http: reqwest::Client, login_url: &str, grant: Grant) -> Self {
        let name = feed.to_string();
        // The Pub/Sub API gives no expiry: a session lives until it is refused.
        let inner = tributary_salesforce::Auth::new(http.clone(), login_url, grant, None).on_token(
            move |s| {
                metrics::counter!(m::SAAS_TOKENS, "feed" => name.clone()).increment(1);
                info!(feed = %name, instance_url = %s.instance_url, generation = s.generation, "Salesforce access token obtained");
            },
        );
        Auth {
            feed: feed.to_string(),
            http,
            inner,
        }
    }

    /// The current session, fetching a token the first time.
    pub async fn session(&self) -> Result<Arc<Session>, SaasError> {
        self.inner.session().await.map_err(|e| self.error(e))
    }

    /// A new session unless someone already replaced `stale`.
    pub async fn refresh(&self, stale: &Session) -> Result<Arc<Session>, SaasError> {
        self.inner.refresh(stale).await.map_err(|e| self.error(e))
    }

    fn error(&self, e: tributary_salesforce::AuthError) -> SaasError {
        SaasError::http(format!("salesforce_cdc {} token", self.feed), e)
    }
}

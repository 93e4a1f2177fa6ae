//! OAuth2 sessions: one per org, shared by everything that talks to it (the sink's lanes, a
//! CDC feed's topic streams and read-backs).
//!
//! ```text
//!  session() ──cached and younger than max_age──► Arc<Session>
//!     └─ else POST <login>/services/oauth2/token (client_credentials | jwt-bearer) ──► generation n+1
//!  refresh(stale) ── someone already replaced `stale` ──► the newer session (one fetch per expiry)
//!     └─ else fetch ──► generation n+1
//! ```
//!
//! A failed token request is an error the caller treats as transient (a refused credential
//! pauses the sink or the feed instead of losing events); the answer is quoted, the secret never.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;
use tributary_sfpubsub::jwt::{JwtError, JwtSigner};

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How much of a refused token answer an error quotes.
const MAX_QUOTED: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("signing the JWT assertion: {0}")]
    Sign(#[from] JwtError),
    #[error("token request to {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("token request refused: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("token answer without access_token or instance_url: {body}")]
    Incomplete { body: String },
}

/// How tokens are obtained.
pub enum Grant {
    ClientCredentials {
        client_id: String,
        secret: String,
    },
    /// The signer carries `iss` (client id), `sub` (user) and `aud`.
    JwtBearer(Box<JwtSigner>),
}

/// What a token answer carries.
#[derive(Debug)]
pub struct Session {
    pub access_token: String,
    pub instance_url: String,
    /// The org id (from the answer's `id`, `<login>/id/<org id>/<user id>`): the Pub/Sub
    /// API's tenant id. Empty when the answer has no `id`.
    pub tenant_id: String,
    /// Which token this is, so that concurrent refreshes after one expiry fetch only once.
    pub generation: u64,
    obtained: Instant,
}

/// Called with each new session (for a metric or a log line).
type OnToken = Box<dyn Fn(&Session) + Send + Sync>;

pub struct Auth {
    http: reqwest::Client,
    token_url: String,
    grant: Grant,
    max_age: Option<Duration>,
    on_token: OnToken,
    current: Mutex<(u64, Option<Arc<Session>>)>,
}

impl Auth {
    /// Sessions from `<login_url>/services/oauth2/token`; with `max_age` a session older than
    /// that is replaced before use (Salesforce does not say when a token expires).
    pub fn new(
        http: reqwest::Client,
        login_url: &str,
        grant: Grant,
        max_age: Option<Duration>,
    ) -> Self {
        Auth {
            http,
            token_url: format!("{}/services/oauth2/token", login_url.trim_end_matches('/')),
            grant,
            max_age,
            on_token: Box::new(|_| {}),
            current: Mutex::new((0, None)),
        }
    }

    /// Calls `f` with every session obtained.
    pub fn on_token(mut self, f: impl Fn(&Session) + Send + Sync + 'static) -> Self {
        self.on_token = Box::new(f);
        self
    }

    /// The current session, fetched the first time and when older than `max_age`.
    pub async fn session(&self) -> Result<Arc<Session>, AuthError> {
        let mut cur = self.current.lock().await;
        if let Some(s) = &cur.1 {
            let old = self.max_age.is_some_and(|m| s.obtained.elapsed() >= m);
            if !old {
                return Ok(s.clone());
            }
        }
        cur.1 = None;
        let s = Arc::new(self.fetch(cur.0 + 1).await?);
        *cur = (s.generation, Some(s.clone()));
        Ok(s)
    }

    /// A new session unless someone already replaced `stale` (refused by Salesforce).
    pub async fn refresh(&self, stale: &Session) -> Result<Arc<Session>, AuthError> {
        let mut cur = self.current.lock().await;
        if let Some(s) = &cur.1 {
            if s.generation != stale.generation {
                return Ok(s.clone());
            }
        }
        // A failed fetch leaves no session: the next caller tries again instead of reusing
        // the refused one.
        cur.1 = None;
        let s = Arc::new(self.fetch(cur.0 + 1).await?);
        *cur = (s.generation, Some(s.clone()));
        Ok(s)
    }

    async fn fetch(&self, generation: u64) -> Result<Session, AuthError> {
        let form: Vec<(&str, String)> = match &self.grant {
            Grant::ClientCredentials { client_id, secret } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", client_id.clone()),
                ("client_secret", secret.clone()),
            ],
            Grant::JwtBearer(signer) => vec![
                ("grant_type", JWT_BEARER_GRANT.into()),
                ("assertion", signer.assertion()?),
            ],
        };
        let http = |source| AuthError::Http {
            url: self.token_url.clone(),
            source,
        };
        let resp = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(http)?;
        let status = resp.status();
        let text = resp.text().await.map_err(http)?;
        let session = parse_answer(status.as_u16(), &text, generation)?;
        (self.on_token)(&session);
        Ok(session)
    }
}

/// A token answer as a session; the error quotes the answer (the OAuth error, never a secret).
fn parse_answer(status: u16, text: &str, generation: u64) -> Result<Session, AuthError> {
    let quoted = || truncate(text, MAX_QUOTED);
    if !(200..300).contains(&status) {
        return Err(AuthError::Refused {
            status,
            body: quoted(),
        });
    }
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let (access_token, instance_url) = (field("access_token"), field("instance_url"));
    if access_token.is_empty() || instance_url.is_empty() {
        return Err(AuthError::Incomplete { body: quoted() });
    }
    let tenant_id = field("id")
        .split("/id/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    Ok(Session {
        access_token,
        instance_url,
        tenant_id,
        generation,
        obtained: Instant::now(),
    })
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let cut = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers() -> Result<(), AuthError> {
        let ok = r#"{"access_token":"t","instance_url":"https://i","id":"https://l/id/00Dx/005y"}"#;
        let s = parse_answer(200, ok, 3)?;
        assert_eq!(
            (s.access_token.as_str(), s.instance_url.as_str()),
            ("t", "https://i")
        );
        assert_eq!((s.tenant_id.as_str(), s.generation), ("00Dx", 3));
        let refused =
            r#"{"error":"invalid_client","error_description":"invalid client credentials"}"#;
        match parse_answer(400, refused, 1) {
            Err(AuthError::Refused { status: 400, body }) => {
                assert!(body.contains("invalid_client"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_answer(200, r#"{"access_token":"t"}"#, 1),
            Err(AuthError::Incomplete { .. })
        ));
        assert!(matches!(
            parse_answer(200, "not json", 1),
            Err(AuthError::Incomplete { .. })
        ));
        assert_eq!(truncate("ééé", 3), "é…");
        Ok(())
    }
}

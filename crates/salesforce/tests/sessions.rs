//! The shared session against the Salesforce emulator: one token per org however many callers,
//! one fetch per refused token however many callers noticed, renewal after `max_age`, and a
//! refused credential as an error quoting the OAuth answer, never the secret.

use std::time::Duration;

use tributary_salesforce::{Auth, AuthError, Grant};
use tributary_sandbox::salesforce::{self, SalesforceOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn grant(id: &str, secret: &str) -> Grant {
    Grant::ClientCredentials {
        client_id: id.to_string(),
        secret: secret.to_string(),
    }
}

#[tokio::test]
async fn one_token_per_org_and_one_fetch_per_refusal() -> TestResult {
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let (id, secret) = SalesforceOptions::default().clients[0].clone();
    let auth = Auth::new(
        reqwest::Client::new(),
        sf.base_url(),
        grant(&id, &secret),
        None,
    );
    let sessions = futures::future::join_all((0..8).map(|_| auth.session())).await;
    let first = sessions.into_iter().next().ok_or("no session")??;
    assert_eq!(sf.tokens_issued(), 1, "eight callers, one token");
    assert!(!first.access_token.is_empty() && !first.instance_url.is_empty());
    // Eight callers see the same token refused: one new token, the others take it.
    let fresh = futures::future::join_all((0..8).map(|_| auth.refresh(&first))).await;
    assert_eq!(sf.tokens_issued(), 2);
    for s in fresh {
        assert_eq!(s?.generation, first.generation + 1);
    }
    assert_eq!(auth.session().await?.generation, first.generation + 1);
    Ok(())
}

#[tokio::test]
async fn a_session_older_than_max_age_is_renewed_before_use() -> TestResult {
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let (id, secret) = SalesforceOptions::default().clients[0].clone();
    let max_age = Some(Duration::from_millis(200));
    let auth = Auth::new(
        reqwest::Client::new(),
        sf.base_url(),
        grant(&id, &secret),
        max_age,
    );
    let first = auth.session().await?;
    assert_eq!(auth.session().await?.generation, first.generation);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(auth.session().await?.generation, first.generation + 1);
    assert_eq!(sf.tokens_issued(), 2);
    Ok(())
}

#[tokio::test]
async fn a_refused_credential_quotes_the_answer_not_the_secret() -> TestResult {
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let (id, _) = SalesforceOptions::default().clients[0].clone();
    let auth = Auth::new(
        reqwest::Client::new(),
        sf.base_url(),
        grant(&id, "wrong-Secret-42"),
        None,
    );
    match auth.session().await {
        Err(e @ AuthError::Refused { .. }) => {
            let text = e.to_string();
            assert!(text.contains("invalid_client"), "{text}");
            assert!(!text.contains("wrong-Secret-42"), "{text}");
        }
        Err(e) => return Err(format!("unexpected error {e}").into()),
        Ok(_) => return Err("a wrong secret got a session".into()),
    }
    Ok(())
}

//! The SaaS ends of the bridge: can the credentials of each feed and sink get in? Shopify's
//! Admin API (`shop { name }`), Salesforce's token endpoint (client credentials or JWT bearer)
//! and its API usage, the WMS's API key — one request each, nothing written.

use std::time::Duration;

use serde_json::{json, Value};
use tributary_config::{Config, SalesforceAuth, Secret};
use tributary_sfpubsub::jwt::JwtSigner;

use super::Check;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `(row label, check)` for every configured SaaS feed and sink.
pub(super) async fn check_saas(config: &Config) -> Vec<(String, Check)> {
    let mut out = Vec::new();
    let Ok(http) = reqwest::Client::builder().timeout(TIMEOUT).build() else {
        return out;
    };
    for s in &config.shopify {
        if let Some(a) = &s.admin {
            let check = shopify_admin(&http, &a.url, &a.api_version, &a.access_token).await;
            out.push((format!("shopify:{}", s.name), check));
        }
    }
    for s in &config.salesforce_cdc {
        let secret = match s.auth {
            SalesforceAuth::ClientCredentials => Grant::Secret(s.client_secret.as_ref()),
            SalesforceAuth::JwtBearer => Grant::Jwt {
                key: s.private_key.as_ref(),
                user: s.username.as_deref().unwrap_or_default(),
                audience: s.login_url.trim_end_matches('/'),
            },
        };
        let label = format!("salesforce:{}", s.name);
        for check in salesforce(&http, &s.login_url, &s.client_id, secret, &s.api_version).await {
            out.push((label.clone(), check));
        }
    }
    if let Some(sinks) = &config.sinks {
        if let Some(w) = &sinks.wms {
            out.push(("sink:wms".into(), wms(&http, &w.base_url, &w.api_key).await));
        }
        if let Some(s) = &sinks.shopify {
            let check = shopify_admin(&http, &s.base_url, &s.api_version, &s.access_token).await;
            out.push(("sink:shopify".into(), check));
        }
        if let Some(sf) = &sinks.salesforce {
            let secret = match &sf.jwt_private_key {
                Some(key) => Grant::Jwt {
                    key: Some(key),
                    user: sf.jwt_username.as_deref().unwrap_or_default(),
                    audience: &sf.jwt_audience,
                },
                None => Grant::Secret(sf.client_secret.as_ref()),
            };
            for check in
                salesforce(&http, &sf.base_url, &sf.client_id, secret, &sf.api_version).await
            {
                out.push(("sink:salesforce".into(), check));
            }
        }
    }
    out
}

async fn shopify_admin(http: &reqwest::Client, base: &str, version: &str, token: &Secret) -> Check {
    let token = match token.resolve() {
        Ok(t) => t,
        Err(e) => return Check::fail("admin_api", e.to_string(), "provide the access token"),
    };
    let url = format!(
        "{}/admin/api/{version}/graphql.json",
        base.trim_end_matches('/')
    );
    let answer = http
        .post(&url)
        .header("X-Shopify-Access-Token", token)
        .json(&json!({"query": "{ shop { name } }"}))
        .send()
        .await;
    match answer {
        Err(e) => Check::fail(
            "admin_api",
            format!("{url}: {e}"),
            "check the URL and that this host can reach Shopify",
        ),
        Ok(r) if r.status().is_success() => {
            let body: Value = r.json().await.unwrap_or(Value::Null);
            match body["data"]["shop"]["name"].as_str() {
                Some(name) => Check::pass("admin_api", format!("{url} answers for shop {name:?}")),
                None => Check::fail(
                    "admin_api",
                    format!("{url}: unexpected answer {}", truncate(&body.to_string())),
                    "check the API version and the app's scopes",
                ),
            }
        }
        Ok(r) => Check::fail(
            "admin_api",
            format!("{url}: HTTP {}", r.status()),
            "check the access token (401/403: invalid or missing scopes)",
        ),
    }
}

enum Grant<'a> {
    Secret(Option<&'a Secret>),
    Jwt {
        key: Option<&'a Secret>,
        user: &'a str,
        audience: &'a str,
    },
}

/// The token request, then `GET /limits` with the token: daily API usage.
async fn salesforce(
    http: &reqwest::Client,
    login: &str,
    client_id: &str,
    grant: Grant<'_>,
    version: &str,
) -> Vec<Check> {
    let grant = match grant {
        Grant::Secret(secret) => match secret.map(Secret::resolve) {
            Some(Ok(secret)) => tributary_salesforce::Grant::ClientCredentials {
                client_id: client_id.into(),
                secret,
            },
            Some(Err(e)) => return vec![Check::fail("token", e.to_string(), "provide the secret")],
            None => {
                return vec![Check::fail(
                    "token",
                    "no client secret",
                    "set client_secret",
                )]
            }
        },
        Grant::Jwt {
            key,
            user,
            audience,
        } => {
            let signer = key
                .ok_or_else(|| "no private key".to_string())
                .and_then(|k| k.resolve().map_err(|e| e.to_string()))
                .and_then(|pem| {
                    JwtSigner::new(&pem, client_id, user, audience).map_err(|e| e.to_string())
                });
            match signer {
                Ok(signer) => tributary_salesforce::Grant::JwtBearer(Box::new(signer)),
                Err(e) => {
                    return vec![Check::fail(
                        "token",
                        e,
                        "provide the connected app's PEM private key",
                    )]
                }
            }
        }
    };
    // The session code the sink and the CDC source use, so that preflight tests what they do.
    let auth = tributary_salesforce::Auth::new(http.clone(), login, grant, None);
    let session = match auth.session().await {
        Ok(s) => s,
        Err(e) => {
            use tributary_salesforce::AuthError;
            let hint = match &e {
                AuthError::Sign(_) => "provide the connected app's PEM private key",
                AuthError::Http { .. } => {
                    "check the login URL and that this host can reach Salesforce"
                }
                AuthError::Refused { .. } | AuthError::Incomplete { .. } => {
                    "check the connected app: client id, secret or certificate, the user's pre-authorization"
                }
            };
            return vec![Check::fail("token", e.to_string(), hint)];
        }
    };
    let (token, instance) = (&session.access_token, &session.instance_url);
    let mut out = vec![Check::pass(
        "token",
        format!("token granted; instance {instance}"),
    )];
    let limits = format!(
        "{}/services/data/v{}/limits",
        instance.trim_end_matches('/'),
        version.trim_start_matches('v')
    );
    let usage = match http.get(&limits).bearer_auth(token).send().await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    let daily = usage.as_ref().map(|u| &u["DailyApiRequests"]);
    match daily.and_then(|d| Some((d["Max"].as_u64()?, d["Remaining"].as_u64()?))) {
        Some((max, remaining)) if max > 0 && remaining * 10 < max => out.push(Check::warn(
            "api_usage",
            format!("{remaining} of {max} daily API requests left"),
            "other integrations use most of the org's limit; the sink pauses near its ceiling",
        )),
        Some((max, remaining)) => out.push(Check::pass(
            "api_usage",
            format!("{remaining} of {max} daily API requests left"),
        )),
        None => out.push(Check::warn(
            "api_usage",
            format!("{limits} did not answer with DailyApiRequests"),
            "the API version may be wrong, or the user lacks the View Setup permission",
        )),
    }
    out
}

/// The WMS's API key, by reading the stock of a SKU that does not exist (404 is success).
async fn wms(http: &reqwest::Client, base: &str, key: &Secret) -> Check {
    let key = match key.resolve() {
        Ok(k) => k,
        Err(e) => return Check::fail("api_key", e.to_string(), "provide the WMS API key"),
    };
    let url = format!("{}/inventory", base.trim_end_matches('/'));
    match http
        .get(&url)
        .query(&[("sku", "tributary-preflight")])
        .bearer_auth(key)
        .send()
        .await
    {
        Err(e) => Check::fail(
            "api_key",
            format!("{url}: {e}"),
            "check the URL and that this host can reach the WMS",
        ),
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {
            Check::pass("api_key", format!("{url} accepts the key"))
        }
        Ok(r) => Check::fail(
            "api_key",
            format!("{url}: HTTP {}", r.status()),
            "check the API key (401/403)",
        ),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

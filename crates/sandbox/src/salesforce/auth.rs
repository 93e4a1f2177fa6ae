//! `POST /services/oauth2/token`: client credentials and JWT bearer grants.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::{lock, Salesforce};
use crate::util::{hmac_sha256_base64, now_millis, random_hex};

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

pub(super) async fn token(
    State(sf): State<Salesforce>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let opts = lock(&sf.inner.opts).clone();
    let client_id = match get("grant_type") {
        Some("client_credentials") => {
            let (Some(id), Some(secret)) = (get("client_id"), get("client_secret")) else {
                return oauth_error("invalid_client_id", "client identifier invalid");
            };
            if !opts.clients.iter().any(|(i, s)| i == id && s == secret) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            id.to_string()
        }
        Some(JWT_GRANT) => match check_assertion(&sf, get("assertion").unwrap_or_default()) {
            Ok(id) => id,
            Err(r) => return r,
        },
        Some(_) => return oauth_error("unsupported_grant_type", "grant type not supported"),
        None => return oauth_error("invalid_request", "grant_type is required"),
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let instance_url = format!("http://{host}");
    let token = format!("00D000000000001!{}", random_hex(24));
    let issued_at = now_millis().to_string();
    {
        let mut s = lock(&sf.inner.state);
        s.tokens
            .insert(token.clone(), Instant::now() + opts.token_ttl);
        s.tokens_issued += 1;
    }
    let signature = hmac_sha256_base64(
        client_id.as_bytes(),
        format!("{instance_url}/id/00D000000000001AAA/005000000000001AAA{issued_at}").as_bytes(),
    );
    Json(json!({
        "access_token": token, "instance_url": instance_url,
        "id": format!("{instance_url}/id/00D000000000001AAA/005000000000001AAA"),
        "token_type": "Bearer", "issued_at": issued_at, "signature": signature, "scope": "api",
    }))
    .into_response()
}

/// Checks a JWT bearer assertion: RS256, known `iss`, a `sub`, an `aud` naming Salesforce or
/// this instance, `exp` in the future; the signature when a public key is configured.
fn check_assertion(sf: &Salesforce, assertion: &str) -> Result<String, Response> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = assertion.split('.').collect();
    let invalid = || oauth_error("invalid_grant", "invalid assertion");
    let [h, p, sig] = parts.as_slice() else {
        return Err(invalid());
    };
    let decode = |s: &str| {
        b64.decode(s.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(header), Some(claims)) = (decode(h), decode(p)) else {
        return Err(invalid());
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(oauth_error("invalid_grant", "invalid assertion algorithm"));
    }
    let opts = lock(&sf.inner.opts).clone();
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !opts.clients.iter().any(|(id, _)| id == iss) {
        return Err(oauth_error(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(oauth_error(
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !(aud.contains("salesforce.com")
        || aud.starts_with("http://127.0.0.1")
        || aud.starts_with("http://localhost"))
    {
        return Err(oauth_error("invalid_grant", "audience is invalid"));
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp * 1000 <= now_millis() {
        return Err(oauth_error("invalid_grant", "expired authorization code"));
    }
    if let Some(key) = opts
        .jwt_public_keys
        .iter()
        .find(|(id, _)| id == iss)
        .map(|(_, k)| k)
    {
        let Ok(sig) = b64.decode(sig) else {
            return Err(invalid());
        };
        let signed = format!("{h}.{p}");
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key,
        );
        if public.verify(signed.as_bytes(), &sig).is_err() {
            return Err(oauth_error("invalid_grant", "invalid assertion signature"));
        }
    }
    Ok(iss.to_string())
}

//! OAuth2 JWT bearer assertions for Salesforce (the CDC source and the sink): RS256 over
//! `{iss, sub, aud, exp}`, signed with the connected app's private key (PEM, PKCS#8 or PKCS#1).

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pemfile::Item;

/// How long an assertion is valid; Salesforce accepts at most 3 minutes.
const LIFETIME_SECS: u64 = 180;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the private key is not PEM with an RSA PRIVATE KEY or PRIVATE KEY block")]
    NoKey,
    #[error("the private key is not a usable RSA key: {0}")]
    BadKey(String),
    #[error("signing failed")]
    Sign,
}

/// A loaded signing key.
pub struct JwtSigner {
    key: RsaKeyPair,
    issuer: String,
    subject: String,
    audience: String,
}

impl JwtSigner {
    pub fn new(pem: &str, issuer: &str, subject: &str, audience: &str) -> Result<Self, JwtError> {
        let mut reader = std::io::BufReader::new(pem.as_bytes());
        let key = loop {
            match rustls_pemfile::read_one(&mut reader) {
                Ok(Some(Item::Pkcs8Key(k))) => {
                    break RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                        .map_err(|e| JwtError::BadKey(e.to_string()))?
                }
                Ok(Some(Item::Pkcs1Key(k))) => {
                    break RsaKeyPair::from_der(k.secret_pkcs1_der())
                        .map_err(|e| JwtError::BadKey(e.to_string()))?
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return Err(JwtError::NoKey),
            }
        };
        Ok(JwtSigner {
            key,
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            audience: audience.to_string(),
        })
    }

    /// A fresh assertion valid from now.
    pub fn assertion(&self) -> Result<String, JwtError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + LIFETIME_SECS;
        let header = b64.encode(br#"{"alg":"RS256"}"#);
        let claims = b64.encode(
            serde_json::json!({"iss": self.issuer, "sub": self.subject, "aud": self.audience, "exp": exp})
                .to_string(),
        );
        let signed = format!("{header}.{claims}");
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .map_err(|_| JwtError::Sign)?;
        Ok(format!("{signed}.{}", b64.encode(sig)))
    }
}

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A secret value: a literal, an environment variable or a file.
///
/// ```toml
/// password = "literal"              # discouraged outside of demos
/// password = { env = "PG_PASSWORD" }
/// password = { file = "/run/secrets/pg_password" }
/// ```
/// Never printed: `Debug` shows only where it comes from, and a value of the wrong shape is
/// refused without quoting it.
#[derive(Clone)]
pub enum Secret {
    Literal(String),
    Env { env: String },
    File { file: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl Secret {
    /// Resolves the secret's value; file contents lose one trailing newline.
    pub fn resolve(&self) -> Result<String, SecretError> {
        match self {
            Secret::Literal(s) => Ok(s.clone()),
            Secret::Env { env } => {
                std::env::var(env).map_err(|_| SecretError::MissingEnv(env.clone()))
            }
            Secret::File { file } => {
                let text = std::fs::read_to_string(file).map_err(|source| SecretError::File {
                    path: file.clone(),
                    source,
                })?;
                Ok(text
                    .strip_suffix('\n')
                    .map(|s| s.strip_suffix('\r').unwrap_or(s))
                    .unwrap_or(&text)
                    .to_string())
            }
        }
    }
}

const EXPECTED: &str = "a string, { env = \"VAR\" } or { file = \"PATH\" }";

/// Hand-written rather than derived: serde's own errors quote the value they reject
/// (`invalid type: integer `1234``), which for a secret is the secret.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn wrong<E: de::Error>(what: &str) -> E {
        E::custom(format!("a secret is {EXPECTED}, not {what}"))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::Literal(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::Literal(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::wrong("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::wrong("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::wrong("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::wrong("a number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::wrong("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut found: Option<Secret> = None;
        while let Some(key) = map.next_key::<String>()? {
            let make: fn(String) -> Secret = match key.as_str() {
                "env" => |v| Secret::Env { env: v },
                "file" => |v| Secret::File { file: v },
                // toml hands dates over as a one-key table with a private key name.
                k if k.starts_with("$__toml") => return Err(Self::wrong("a date")),
                other => {
                    map.next_value::<IgnoredAny>()?;
                    return Err(de::Error::custom(format!(
                        "unknown secret form `{other}`: a secret is {EXPECTED}"
                    )));
                }
            };
            // Variable names and paths are not secret; they may be quoted in errors.
            let value = make(map.next_value::<String>()?);
            if found.replace(value).is_some() {
                return Err(de::Error::custom(
                    "a secret table has exactly one of `env` or `file`",
                ));
            }
        }
        found.ok_or_else(|| Self::wrong("an empty table"))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret(***)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {file})"),
        }
    }
}

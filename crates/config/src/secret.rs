use std::fmt;

use serde::Deserialize;

/// A secret value: a literal, an environment variable or a file.
///
/// ```toml
/// password = "literal"              # discouraged outside of demos
/// password = { env = "PG_PASSWORD" }
/// password = { file = "/run/secrets/pg_password" }
/// ```
/// Never printed: `Debug` shows only where it comes from.
#[derive(Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
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

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret(***)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {file})"),
        }
    }
}

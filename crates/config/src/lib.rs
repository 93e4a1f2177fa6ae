//! Tributary configuration: TOML types, loading, validation and secrets.

mod domain;
mod feeds;
mod ha;
mod model;
mod priority;
mod reconcile;
mod redact;
mod saas;
mod secret;
mod sinks;
mod sinks_erp;
mod tracker;
mod validate;

pub use domain::*;
pub use feeds::{WmsFeed, DEPRECATED_WMS_KEY};
pub use ha::HaConfig;
pub use model::*;
pub use priority::{PriorityClass, SinkPriority, ENTITIES};
pub use reconcile::{InventoryReconcileConfig, ReconcileConfig};
pub use saas::*;
pub use secret::{Secret, SecretError};
pub use sinks::*;
pub use sinks_erp::ErpSinkConfig;
pub use tracker::TrackerConfig;
pub use validate::{webhook_secret_problem, MIN_WEBHOOK_SECRET_BYTES};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Checks `(key, value)` pairs that must be at least 1 (intervals, rates, sizes).
    pub(crate) fn check_positive(pairs: &[(&str, u64)]) -> Result<(), ConfigError> {
        match pairs.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(ConfigError::invalid(*key, "must be at least 1")),
            None => Ok(()),
        }
    }

    /// Checks a subject prefix that events are published under (no wildcard, no space).
    pub(crate) fn check_subject_prefix(key: &str, prefix: &str) -> Result<(), ConfigError> {
        if prefix.is_empty() || prefix.contains(['*', '>', ' ']) {
            return Err(ConfigError::invalid(
                key,
                format!("{prefix:?} is not a subject prefix"),
            ));
        }
        Ok(())
    }
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Parse { message, .. } => ConfigError::Parse {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })
}

/// Parses and validates configuration text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "<inline>".into(),
        message: redact::parse_error(text, &e),
    })?;
    validate::validate(&config)?;
    Ok(config)
}

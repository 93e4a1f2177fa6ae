//! What the feeds' stream set-up shares: the domain config they publish with and the grouping
//! of raw streams. A leaf, so that each feed lists its own streams and `streams::all` lists
//! every feed's without the two importing each other.

use std::collections::BTreeMap;

use tributary_config::{Config, DomainConfig, NatsConfig};
use tributary_nats::StreamSpec;

use crate::SaasError;

/// The `[domain]` block, or its defaults when the feeds publish domain events without one
/// (then partitioned as the sinks of this configuration expect: `sinks.partitions`).
pub fn domain_config(config: &Config) -> Result<DomainConfig, SaasError> {
    match &config.domain {
        Some(d) => Ok(d.clone()),
        None => {
            let mut d: DomainConfig =
                toml::from_str("").map_err(|e| SaasError::config("domain", e.to_string()))?;
            if let Some(sinks) = &config.sinks {
                d.partitions = sinks.partitions;
            }
            Ok(d)
        }
    }
}

pub(crate) struct Raw {
    pub(crate) window: u64,
    pub(crate) component: &'static str,
    pub(crate) name_key: &'static str,
}

impl Raw {
    pub(crate) fn grouped<'a>(
        &self,
        nats: &NatsConfig,
        feeds: impl IntoIterator<Item = (&'a String, String)>,
    ) -> Vec<StreamSpec> {
        let mut streams: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for (stream, subject) in feeds {
            streams.entry(stream).or_default().push(subject);
        }
        streams
            .into_iter()
            .map(|(name, subjects)| StreamSpec {
                settings: nats.stream_named(name, Some(self.window)),
                subjects,
                component: self.component.to_string(),
                name_key: self.name_key,
            })
            .collect()
    }
}

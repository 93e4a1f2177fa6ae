//! The streams the SaaS feeds create, listed in one place for their start-up and for
//! `tributary preflight`.

use std::collections::BTreeMap;

use tributary_config::{Config, DomainConfig, NatsConfig};
use tributary_nats::StreamSpec;

use crate::{salesforce, shopify, wms, SaasError};

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

/// The Shopify feeds' raw streams (shops sharing a stream share it).
pub fn shopify(config: &Config) -> Vec<StreamSpec> {
    let feeds = config
        .shopify
        .iter()
        .map(|s| (&s.stream, shopify::envelope::shop_wildcard(&s.name)));
    let raw = Raw {
        window: shopify::RAW_DUPLICATE_WINDOW_SECS,
        component: "shopify",
        name_key: "shopify.stream",
    };
    raw.grouped(&config.nats, feeds)
}

/// The Salesforce CDC feeds' raw streams.
pub fn salesforce(config: &Config) -> Vec<StreamSpec> {
    let feeds = config
        .salesforce_cdc
        .iter()
        .map(|s| (&s.stream, salesforce::envelope::feed_wildcard(&s.name)));
    let raw = Raw {
        window: salesforce::RAW_DUPLICATE_WINDOW_SECS,
        component: "salesforce_cdc",
        name_key: "salesforce_cdc.stream",
    };
    raw.grouped(&config.nats, feeds)
}

/// The WMS webhooks' raw stream.
pub fn wms(config: &Config) -> Vec<StreamSpec> {
    let feed = config.wms_feed();
    let raw = Raw {
        window: wms::RAW_DUPLICATE_WINDOW_SECS,
        component: "wms_webhooks",
        name_key: match feed {
            Some(f) if f.key == tributary_config::DEPRECATED_WMS_KEY => "sinks.wms.webhooks.stream",
            _ => "wms.stream",
        },
    };
    let feeds = feed.map(|f| (&f.cfg.stream, format!("{}.>", wms::SUBJECT_PREFIX)));
    raw.grouped(&config.nats, feeds)
}

/// Every stream the SaaS feeds create: the raw ones, and the domain streams when a feed
/// publishes domain events.
pub fn all(config: &Config) -> Result<Vec<StreamSpec>, SaasError> {
    let mut out = shopify(config);
    out.extend(salesforce(config));
    out.extend(wms(config));
    let feeds = [
        (config.shopify.iter().any(|s| s.domain_events), "shopify"),
        (
            config.salesforce_cdc.iter().any(|s| s.domain_events),
            "salesforce_cdc",
        ),
        (!wms(config).is_empty(), "wms_webhooks"),
    ];
    if let Some((_, component)) = feeds.into_iter().find(|(publishes, _)| *publishes) {
        out.extend(tributary_domain::streams(
            &config.nats,
            &domain_config(config)?,
            component,
        ));
    }
    Ok(out)
}

struct Raw {
    window: u64,
    component: &'static str,
    name_key: &'static str,
}

impl Raw {
    fn grouped<'a>(
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

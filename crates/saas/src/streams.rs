//! The streams the SaaS feeds create, listed in one place for their start-up and for
//! `tributary preflight`.

use tributary_config::Config;
use tributary_nats::StreamSpec;

pub use crate::stream_spec::domain_config;
use crate::{salesforce, shopify, wms, SaasError};

/// Every stream the SaaS feeds create: the raw ones, and the domain streams when a feed
/// publishes domain events.
pub fn all(config: &Config) -> Result<Vec<StreamSpec>, SaasError> {
    let mut out = shopify::streams(config);
    out.extend(salesforce::streams(config));
    out.extend(wms::streams(config));
    let feeds = [
        (config.shopify.iter().any(|s| s.domain_events), "shopify"),
        (
            config.salesforce_cdc.iter().any(|s| s.domain_events),
            "salesforce_cdc",
        ),
        (!wms::streams(config).is_empty(), "wms_webhooks"),
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

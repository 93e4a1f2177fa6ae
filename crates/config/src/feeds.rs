//! Where each feed is configured, when a feed has more than one key (a deprecated one).

/// The old home of the WMS feed, read for one release with a warning.
pub const DEPRECATED_WMS_KEY: &str = "sinks.wms.webhooks";

/// The WMS feed as configured, whichever key holds it.
#[derive(Debug, Clone, Copy)]
pub struct WmsFeed<'a> {
    /// Prefix of the feed's config keys in errors: `wms[0]` or `sinks.wms.webhooks`.
    pub key: &'a str,
    pub cfg: &'a crate::WmsWebhookSourceConfig,
}

impl crate::Config {
    /// The WMS lifecycle webhook feed: `[[wms]]`, or the deprecated `[sinks.wms.webhooks]`
    /// (validation refuses both at once and more than one `[[wms]]`).
    pub fn wms_feed(&self) -> Option<WmsFeed<'_>> {
        if let Some(cfg) = self.wms.first() {
            return Some(WmsFeed { key: "wms[0]", cfg });
        }
        let old = self.sinks.as_ref()?.wms.as_ref()?.webhooks.as_ref()?;
        Some(WmsFeed {
            key: DEPRECATED_WMS_KEY,
            cfg: old,
        })
    }

    /// Keys that still work but have moved, as warnings to log at start-up (each names the
    /// new key).
    pub fn deprecations(&self) -> Vec<String> {
        let old = self.sinks.as_ref().and_then(|s| s.wms.as_ref());
        if old.is_some_and(|w| w.webhooks.is_some()) {
            vec![format!(
                "config key `{DEPRECATED_WMS_KEY}` is deprecated and will be removed in the next release: move the table to `[[wms]]` (same keys)"
            )]
        } else {
            Vec::new()
        }
    }
}

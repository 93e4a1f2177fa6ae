//! API usage pacing (`tributary_salesforce::UsagePacer`): above `api_usage_ceiling` of the
//! daily limit the sink pauses, throttled, before Salesforce refuses.

use super::client::Api;
use crate::{metrics as m, ApplyError};

impl Api {
    /// Above the usage ceiling (as last reported), wait instead of spending the org's limit.
    pub(super) fn check_usage(&self) -> Result<(), ApplyError> {
        self.usage.check().map_err(|p| ApplyError::Transient {
            reason: format!(
                "API usage {}/{} above the ceiling {}",
                p.usage.used,
                p.usage.limit,
                self.usage.ceiling()
            ),
            retry_after: Some(p.retry_after),
            throttled: true,
        })
    }

    pub(super) fn remember_usage(&self, resp: &reqwest::Response) {
        if let Some(u) = self.usage.remember(resp).filter(|u| u.limit > 0) {
            metrics::gauge!(m::SF_API_USAGE, "sink" => "salesforce").set(u.fraction());
        }
    }
}

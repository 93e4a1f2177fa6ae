//! API usage pacing: `Sforce-Limit-Info` is remembered, and above `api_usage_ceiling` of the
//! daily limit the sink pauses before Salesforce refuses.

use std::time::{Duration, Instant};

use super::client::Api;
use crate::{metrics as m, ApplyError};

/// While above the usage ceiling, one request is let through this often to re-read the usage.
const LIMIT_PROBE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
pub(super) struct Usage {
    used: u64,
    limit: u64,
    at: Instant,
}

impl Api {
    /// Above the usage ceiling (as last reported), wait instead of spending the org's limit.
    pub(super) fn check_usage(&self) -> Result<(), ApplyError> {
        let usage = *self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let Some(u) = usage else { return Ok(()) };
        let ceiling = (u.limit as f64 * self.cfg.api_usage_ceiling) as u64;
        let since = u.at.elapsed();
        if u.limit > 0 && u.used >= ceiling && since < LIMIT_PROBE_INTERVAL {
            return Err(ApplyError::Transient {
                reason: format!(
                    "API usage {}/{} above the ceiling {}",
                    u.used, u.limit, self.cfg.api_usage_ceiling
                ),
                retry_after: Some(LIMIT_PROBE_INTERVAL - since),
                throttled: true,
            });
        }
        Ok(())
    }

    pub(super) fn remember_usage(&self, resp: &reqwest::Response) {
        let Some(v) = resp
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let Some((used, limit)) = v
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("api-usage="))
            .and_then(|u| u.split_once('/'))
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        else {
            return;
        };
        if limit > 0 {
            metrics::gauge!(m::SF_API_USAGE, "sink" => "salesforce")
                .set(used as f64 / limit as f64);
        }
        *self.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(Usage {
            used,
            limit,
            at: Instant::now(),
        });
    }
}

//! The org's daily API usage, as every REST answer reports it (`Sforce-Limit-Info:
//! api-usage=<used>/<limit>`), and a pause above a ceiling so that the bridge stops before
//! Salesforce refuses the whole org's integrations with `REQUEST_LIMIT_EXCEEDED`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// While above the ceiling, one request is let through this often to re-read the usage.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);

/// Requests used today and the daily limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub limit: u64,
}

impl ApiUsage {
    /// The `api-usage` entry of a `Sforce-Limit-Info` header value.
    pub fn parse(header: &str) -> Option<ApiUsage> {
        let (used, limit) = header
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("api-usage="))?
            .split_once('/')?;
        Some(ApiUsage {
            used: used.trim().parse().ok()?,
            limit: limit.trim().parse().ok()?,
        })
    }

    /// The `Sforce-Limit-Info` of an answer, if it has one.
    pub fn of(resp: &reqwest::Response) -> Option<ApiUsage> {
        ApiUsage::parse(resp.headers().get("sforce-limit-info")?.to_str().ok()?)
    }

    /// Used / limit (0 with no limit).
    pub fn fraction(&self) -> f64 {
        if self.limit == 0 {
            0.0
        } else {
            self.used as f64 / self.limit as f64
        }
    }
}

/// Why a request waits: the usage last reported, and how long until the next probe.
#[derive(Debug, Clone, Copy)]
pub struct Paused {
    pub usage: ApiUsage,
    pub retry_after: Duration,
}

/// The last usage reported, checked before each request.
pub struct UsagePacer {
    /// Fraction of the daily limit that may be used.
    ceiling: f64,
    last: Mutex<Option<(ApiUsage, Instant)>>,
}

impl UsagePacer {
    pub fn new(ceiling: f64) -> Self {
        UsagePacer {
            ceiling,
            last: Mutex::new(None),
        }
    }

    /// Remembers the usage an answer reports; returns it.
    pub fn remember(&self, resp: &reqwest::Response) -> Option<ApiUsage> {
        let usage = ApiUsage::of(resp)?;
        // A poisoned lock only means another request panicked while holding a copy.
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((usage, Instant::now()));
        Some(usage)
    }

    /// `Err` while the last reported usage is at or above the ceiling, for up to
    /// [`PROBE_INTERVAL`] after it was reported (then one request goes to re-read it).
    pub fn check(&self) -> Result<(), Paused> {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let Some((usage, at)) = last else {
            return Ok(());
        };
        let ceiling = (usage.limit as f64 * self.ceiling) as u64;
        let since = at.elapsed();
        if usage.limit > 0 && usage.used >= ceiling && since < PROBE_INTERVAL {
            return Err(Paused {
                usage,
                retry_after: PROBE_INTERVAL - since,
            });
        }
        Ok(())
    }

    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info() {
        assert_eq!(
            ApiUsage::parse("api-usage=25/15000"),
            Some(ApiUsage {
                used: 25,
                limit: 15000
            })
        );
        assert_eq!(
            ApiUsage::parse("per-app-api-usage=1/10(appName=x), api-usage= 9 / 10"),
            Some(ApiUsage { used: 9, limit: 10 })
        );
        assert_eq!(ApiUsage::parse("api-usage=x/10"), None);
        assert_eq!(ApiUsage::parse(""), None);
        assert_eq!(ApiUsage { used: 1, limit: 0 }.fraction(), 0.0);
    }
}

//! Leaky buckets: GraphQL cost points per access token, REST call count per access token.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

/// A bucket of `max` points refilled at `restore_rate` points per second.
#[derive(Clone, Debug)]
pub struct Limiter {
    pub max: f64,
    pub restore_rate: f64,
    pub enabled: bool,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Limiter {
    pub fn new(max: f64, restore_rate: f64, enabled: bool) -> Self {
        Self {
            max,
            restore_rate,
            enabled,
            buckets: HashMap::new(),
        }
    }

    /// Points available to `token` now.
    pub fn available(&mut self, token: &str) -> f64 {
        let (max, rate) = (self.max, self.restore_rate);
        let entry = self
            .buckets
            .entry(token.to_string())
            .or_insert((max, Instant::now()));
        let now = Instant::now();
        entry.0 = (entry.0 + now.duration_since(entry.1).as_secs_f64() * rate).min(max);
        entry.1 = now;
        entry.0
    }

    /// Takes `cost` points if available (always when disabled); returns whether it did and
    /// what is left.
    pub fn take(&mut self, token: &str, cost: f64) -> (bool, f64) {
        let available = self.available(token);
        if !self.enabled {
            return (true, available);
        }
        if cost > available {
            return (false, available);
        }
        if let Some(e) = self.buckets.get_mut(token) {
            e.0 -= cost;
        }
        (true, available - cost)
    }

    /// Gives back `points` (a query's requested − actual cost), up to the bucket's size;
    /// returns what is available after.
    pub fn refund(&mut self, token: &str, points: f64) -> f64 {
        let available = self.available(token);
        if !self.enabled || points <= 0.0 {
            return available;
        }
        let max = self.max;
        self.buckets.get_mut(token).map_or(available, |e| {
            e.0 = (e.0 + points).min(max);
            e.0
        })
    }

    /// Seconds until `cost` points are available.
    pub fn wait_secs(&mut self, token: &str, cost: f64) -> f64 {
        let available = self.available(token);
        ((cost - available).max(0.0) / self.restore_rate.max(0.001)).ceil()
    }

    /// `extensions.cost` of a GraphQL answer.
    pub fn cost_extension(&self, requested: f64, actual: f64, available: f64) -> Value {
        json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
            "throttleStatus": {"maximumAvailable": self.max, "currentlyAvailable": available.floor(),
                               "restoreRate": self.restore_rate}}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_and_refuses() {
        let mut l = Limiter::new(100.0, 1.0, true);
        assert!(l.take("t", 60.0).0);
        assert!(!l.take("t", 60.0).0);
        assert!(l.take("other", 60.0).0);
        assert_eq!(l.refund("t", 50.0).floor(), 90.0);
        assert_eq!(l.refund("t", 50.0), 100.0);
        l.enabled = false;
        assert!(l.take("t", 60.0).0);
    }
}

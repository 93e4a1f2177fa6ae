//! `[sinks.<name>.priority]`: which entities a sink applies first when its target throttles or
//! slows (docs/sinks.md, "Priority classes").
//!
//! ```toml
//! [sinks.shopify.priority]
//! high = ["order", "fulfillment", "inventory"]   # every other entity the sink reads is low
//! reserve = 0.5            # share of the target's request budget kept for the high class
//! throttle_hold_ms = 2000  # low class waits this long after the target throttled
//! latency_bound_ms = 2000  # … and while high-class applies take longer than this
//! ```

use serde::Deserialize;

/// The entities of the retail model, as they appear in subjects (`retail.v1.<entity>.<event>`).
pub const ENTITIES: [&str; 9] = [
    "customer",
    "product",
    "price",
    "order",
    "order_line",
    "inventory",
    "fulfillment",
    "return",
    "refund",
];

/// A sink event's priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriorityClass {
    High,
    Low,
}

impl PriorityClass {
    /// The `class` metric label and consumer name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            PriorityClass::High => "high",
            PriorityClass::Low => "low",
        }
    }
}

/// Priority classes of a sink's events: the high class keeps its latency while the target
/// throttles or slows, the low class waits (docs/sinks.md, "Priority classes").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkPriority {
    /// Off: one consumer for all the sink's events, nothing deferred.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Entities of the high class (`inventory_level` is accepted for `inventory`). The sink's
    /// other entities are the low class: their own durable consumer, deferred while the target
    /// is under pressure.
    #[serde(default = "default_high")]
    pub high: Vec<String>,
    /// Share (0 – 0.9) of the target's request budget a low-class request must leave for the
    /// high class: a low-class Shopify request waits until the cost bucket holds its cost plus
    /// this share of the bucket.
    #[serde(default = "default_reserve")]
    pub reserve: f64,
    /// After the target throttled (429, THROTTLED, an API limit, or a low-class request that
    /// found the budget below the reserve), low-class events wait at least this long (ms).
    #[serde(default = "default_throttle_hold_ms")]
    pub throttle_hold_ms: u64,
    /// While a high-class apply takes longer than this (ms), the low class waits
    /// `throttle_hold_ms` after it (a target that slows down); 0 turns this off.
    #[serde(default = "default_latency_bound_ms")]
    pub latency_bound_ms: u64,
}

impl Default for SinkPriority {
    fn default() -> Self {
        SinkPriority {
            enabled: true,
            high: default_high(),
            reserve: default_reserve(),
            throttle_hold_ms: default_throttle_hold_ms(),
            latency_bound_ms: default_latency_bound_ms(),
        }
    }
}

impl SinkPriority {
    /// The class of an entity's events (as named in subjects).
    pub fn class_of(&self, entity: &str) -> PriorityClass {
        let named = |h: &String| h == entity || (h == "inventory_level" && entity == "inventory");
        if !self.enabled || self.high.iter().any(named) {
            PriorityClass::High
        } else {
            PriorityClass::Low
        }
    }

    /// Checks the table of `sinks.<sink>`; errors name the key.
    pub(crate) fn validate(&self, sink: &str) -> Result<(), crate::ConfigError> {
        let key = |k: &str| format!("sinks.{sink}.priority.{k}");
        if let Some(bad) = self
            .high
            .iter()
            .find(|h| !ENTITIES.contains(&h.as_str()) && h.as_str() != "inventory_level")
        {
            return Err(crate::ConfigError::invalid(
                key("high"),
                format!("unknown entity {bad:?} (one of: {})", ENTITIES.join(", ")),
            ));
        }
        // A Shopify fulfilment needs its order's link: in a class behind it, every fulfilment
        // would wait for the low class.
        if self.class_of("fulfillment") == PriorityClass::High
            && self.class_of("order") == PriorityClass::Low
        {
            return Err(crate::ConfigError::invalid(
                key("high"),
                "lists \"fulfillment\" but not \"order\": a fulfilment waits for its order's event, which would then be deferred with the low class",
            ));
        }
        if !(0.0..=0.9).contains(&self.reserve) {
            return Err(crate::ConfigError::invalid(
                key("reserve"),
                "must be between 0 and 0.9",
            ));
        }
        if self.throttle_hold_ms == 0 || self.throttle_hold_ms > 600_000 {
            return Err(crate::ConfigError::invalid(
                key("throttle_hold_ms"),
                "must be between 1 and 600000",
            ));
        }
        Ok(())
    }
}

fn default_true() -> bool {
    true
}

fn default_high() -> Vec<String> {
    [
        "order",
        "order_line",
        "inventory",
        "fulfillment",
        "return",
        "refund",
    ]
    .map(String::from)
    .to_vec()
}

fn default_reserve() -> f64 {
    0.5
}

fn default_throttle_hold_ms() -> u64 {
    2000
}

fn default_latency_bound_ms() -> u64 {
    2000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_put_profiles_and_prices_behind_the_order_flow() {
        let p = SinkPriority::default();
        for e in [
            "order",
            "order_line",
            "inventory",
            "fulfillment",
            "return",
            "refund",
        ] {
            assert_eq!(p.class_of(e), PriorityClass::High, "{e}");
        }
        for e in ["customer", "product", "price"] {
            assert_eq!(p.class_of(e), PriorityClass::Low, "{e}");
        }
        let off = SinkPriority {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(off.class_of("customer"), PriorityClass::High);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = SinkPriority {
            high: vec!["orders".into()],
            ..Default::default()
        };
        let e = bad
            .validate("shopify")
            .expect_err("unknown entity")
            .to_string();
        assert!(
            e.contains("sinks.shopify.priority.high") && e.contains("\"orders\""),
            "{e}"
        );
        let split = SinkPriority {
            high: vec!["fulfillment".into()],
            ..Default::default()
        };
        let e = split
            .validate("shopify")
            .expect_err("fulfillment without order")
            .to_string();
        assert!(e.contains("sinks.shopify.priority.high"), "{e}");
        let reserve = SinkPriority {
            reserve: 1.5,
            ..Default::default()
        };
        let e = reserve
            .validate("salesforce")
            .expect_err("reserve out of range")
            .to_string();
        assert!(e.contains("sinks.salesforce.priority.reserve"), "{e}");
        let alias = SinkPriority {
            high: vec!["order".into(), "inventory_level".into()],
            ..Default::default()
        };
        assert!(alias.validate("shopify").is_ok());
        assert_eq!(alias.class_of("inventory"), PriorityClass::High);
    }
}

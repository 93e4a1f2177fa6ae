//! Metric names of the ownership layer (listed in docs/metrics.md).

/// Gauge, 1 while this replica holds the unit's lease: `unit`.
pub const LEASE_HELD: &str = "tributary_ha_lease_held";
/// Counter of ownership changes seen by this replica: `unit`, `event` =
/// acquired | released | lost | handed_over.
pub const HANDOVERS: &str = "tributary_ha_handovers_total";
/// Counter of side effects refused by a fence: `unit`.
pub const FENCED: &str = tributary_core::FENCED;
/// Histogram of the time a unit had no owner before this replica acquired it (seconds): `unit`.
pub const UNOWNED_SECONDS: &str = "tributary_ha_unowned_seconds";
/// Gauge of live members (replicas) this replica sees.
pub const MEMBERS: &str = "tributary_ha_members";
/// Counter of failed lease renewals (each retried until the lease's validity runs out): `unit`.
pub const RENEW_FAILURES: &str = "tributary_ha_renew_failures_total";

/// Creates every unit's series at zero (no lease held, no handover yet), so that a unit no
/// replica has acquired shows as `lease_held` 0 on every replica instead of as no series.
pub fn register<'a>(units: impl Iterator<Item = &'a str>) {
    metrics::gauge!(MEMBERS).set(0.0);
    for unit in units {
        metrics::gauge!(LEASE_HELD, "unit" => unit.to_string()).set(0.0);
        for event in ["acquired", "released", "handed_over", "lost"] {
            metrics::counter!(HANDOVERS, "unit" => unit.to_string(), "event" => event).increment(0);
        }
        for name in [FENCED, RENEW_FAILURES] {
            metrics::counter!(name, "unit" => unit.to_string()).increment(0);
        }
    }
}

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

//! Every metric of the inventory reconciliation, named once. Labels are bounded: `target`
//! (wms, shopify), `outcome` (completed, failed).

pub const PAIRS: &str = "tributary_inventory_drift_pairs";
pub const UNITS: &str = "tributary_inventory_drift_units";
pub const CHECKED: &str = "tributary_inventory_drift_checked_pairs";
pub const IN_FLIGHT: &str = "tributary_inventory_drift_in_flight_pairs";
pub const REPAIRS: &str = "tributary_inventory_drift_repairs_total";
pub const SWEEPS: &str = "tributary_inventory_drift_sweeps_total";
pub const LAST_SWEEP: &str = "tributary_inventory_drift_last_sweep_timestamp_seconds";
pub const ACCURACY: &str = "tributary_o2c_inventory_accuracy_ratio";

/// The targets compared with the ERP (`target` label).
pub const TARGETS: [&str; 2] = ["wms", "shopify"];
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";

pub fn describe() {
    metrics::describe_gauge!(
        PAIRS,
        "SKU-locations whose level at the target differs from the ERP's, no event in flight (last sweep)"
    );
    metrics::describe_gauge!(
        UNITS,
        "sum of |target level - ERP level| over the drifting SKU-locations of the target (last sweep)"
    );
    metrics::describe_gauge!(
        CHECKED,
        "SKU-locations compared at the target, no event in flight (last sweep)"
    );
    metrics::describe_gauge!(
        IN_FLIGHT,
        "SKU-locations left out at the target because the sink had not applied the ERP's latest version, or it changed during the sweep (last sweep)"
    );
    metrics::describe_counter!(
        REPAIRS,
        "repair events published (repair = true): the ERP's level re-applied through the target's sink"
    );
    metrics::describe_counter!(
        SWEEPS,
        "inventory reconciliation sweeps, by outcome (completed, failed: a target or NATS could not be read)"
    );
    metrics::describe_gauge!(LAST_SWEEP, "Unix time of the last completed sweep");
    metrics::describe_gauge!(
        ACCURACY,
        "inventory sync accuracy: SKU-locations that agree in every system holding them / SKU-locations compared (last sweep; 1 when none)"
    );
}

/// Creates every series at zero, so that dashboards and alerts see them from the start.
pub fn register() {
    for target in TARGETS {
        for name in [PAIRS, UNITS, CHECKED, IN_FLIGHT] {
            metrics::gauge!(name, "target" => target).set(0.0);
        }
        metrics::counter!(REPAIRS, "target" => target).increment(0);
    }
    for outcome in [COMPLETED, FAILED] {
        metrics::counter!(SWEEPS, "outcome" => outcome).increment(0);
    }
    metrics::gauge!(LAST_SWEEP).set(0.0);
    // No sweep yet: nothing is known to disagree.
    metrics::gauge!(ACCURACY).set(1.0);
}

/// Sets the gauges from a completed sweep.
pub fn record(report: &crate::report::Report) {
    for target in TARGETS {
        let c = report.targets.get(target).cloned().unwrap_or_default();
        metrics::gauge!(PAIRS, "target" => target).set(c.drifting as f64);
        metrics::gauge!(UNITS, "target" => target).set(c.units as f64);
        metrics::gauge!(CHECKED, "target" => target).set(c.checked as f64);
        metrics::gauge!(IN_FLIGHT, "target" => target).set(c.in_flight as f64);
    }
    metrics::gauge!(ACCURACY).set(report.accuracy_ratio);
    metrics::gauge!(LAST_SWEEP).set(report.finished_micros as f64 / 1e6);
    metrics::counter!(SWEEPS, "outcome" => COMPLETED).increment(1);
}

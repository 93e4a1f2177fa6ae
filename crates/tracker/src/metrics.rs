//! Every metric of the order-to-cash tracker, named once. Labels are bounded: `stage` (the
//! fixed stages of `process.rs`), `process` (order, return), `milestone` (the fixed
//! milestones), `kind` (order_stuck, refund_delayed), `outcome` (applied, repeated, ignored;
//! redriven, dropped), `sink` (the configured sinks, and `domain`).

use crate::process::{Kind, Milestone, STAGES};

pub const EVENTS: &str = "tributary_o2c_events_total";
pub const MILESTONES: &str = "tributary_o2c_milestones_total";
pub const STAGE_SECONDS: &str = "tributary_o2c_stage_seconds";
pub const REFUND_CYCLE_SECONDS: &str = "tributary_o2c_refund_cycle_seconds";
pub const ORDERS_UNALLOCATED: &str = "tributary_o2c_orders_unallocated";
pub const ORDERS_UNSHIPPED: &str = "tributary_o2c_orders_unshipped";
pub const REFUNDS_DELAYED: &str = "tributary_o2c_refunds_delayed";
pub const EXCEPTION_QUEUE: &str = "tributary_o2c_exception_queue_depth";
pub const EXCEPTIONS: &str = "tributary_o2c_exceptions_total";
pub const STATE_CONFLICTS: &str = "tributary_o2c_state_conflicts_total";
pub const SWEEPS: &str = "tributary_o2c_sweeps_total";
pub const SWEEPS_DEFERRED: &str = "tributary_o2c_sweeps_deferred_total";
pub const RESOLUTION_SECONDS: &str = "tributary_o2c_exception_resolution_seconds";

/// Exception kinds (`kind` label, and the subjects' last tokens with a dot).
pub const KIND_ORDER_STUCK: &str = "order_stuck";
pub const KIND_REFUND_DELAYED: &str = "refund_delayed";

/// Outcomes of one consumed event.
pub const APPLIED: &str = "applied";
pub const REPEATED: &str = "repeated";
pub const IGNORED: &str = "ignored";

/// Outcomes of a dead letter's resolution (`tributary dlq redrive` / `drop`).
pub const REDRIVEN: &str = "redriven";
pub const DROPPED: &str = "dropped";
/// The `sink` label of the domain stage's dead letters (changes no mapping could map).
pub const DOMAIN: &str = "domain";

/// Buckets of the business latencies: seconds up to days (a refund may take a week).
pub const BUSINESS_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14_400.0,
    28_800.0, 86_400.0, 172_800.0, 604_800.0,
];

pub fn describe() {
    metrics::describe_counter!(
        EVENTS,
        "domain events the tracker consumed, by outcome (applied, repeated: seen before, ignored: no process)"
    );
    metrics::describe_counter!(
        MILESTONES,
        "milestones reached for the first time, per process and milestone"
    );
    metrics::describe_histogram!(
        STAGE_SECONDS,
        metrics::Unit::Seconds,
        "business time between two milestones of one order or return, per stage, from the events' own timestamps"
    );
    metrics::describe_histogram!(
        REFUND_CYCLE_SECONDS,
        metrics::Unit::Seconds,
        "business time from a return's request to its refund"
    );
    metrics::describe_gauge!(
        ORDERS_UNALLOCATED,
        "orders placed longer than tracker.unallocated_after_secs ago and neither confirmed nor cancelled (last sweep)"
    );
    metrics::describe_gauge!(
        ORDERS_UNSHIPPED,
        "orders confirmed longer than tracker.unshipped_after_secs ago and neither shipped nor cancelled (last sweep)"
    );
    metrics::describe_gauge!(
        REFUNDS_DELAYED,
        "returns requested longer than tracker.refund_delayed_after_secs ago and not refunded (last sweep)"
    );
    metrics::describe_gauge!(
        EXCEPTION_QUEUE,
        "exceptions published and still open: orders and returns still waiting past their threshold (last sweep)"
    );
    metrics::describe_counter!(EXCEPTIONS, "exception events published, per kind");
    metrics::describe_counter!(
        STATE_CONFLICTS,
        "process record writes that lost the compare-and-set and were applied again"
    );
    metrics::describe_counter!(SWEEPS, "sweeps of the process records completed");
    metrics::describe_counter!(
        SWEEPS_DEFERRED,
        "sweeps put off because the tracker had not caught up with the domain stream"
    );
    metrics::describe_histogram!(
        RESOLUTION_SECONDS,
        metrics::Unit::Seconds,
        "time from a dead letter's parking to its redrive or drop (tributary dlq), per sink and outcome"
    );
}

/// Creates every series at zero, so that dashboards and alerts see them from the start;
/// `dead_letter_owners`: the configured sinks, and `domain` with a domain stage.
pub fn register(dead_letter_owners: &[&str]) {
    use metrics::{counter, gauge, histogram};
    for outcome in [APPLIED, REPEATED, IGNORED] {
        counter!(EVENTS, "outcome" => outcome).increment(0);
    }
    for (kind, milestones) in [
        (Kind::Order, &Milestone::ORDER[..]),
        (Kind::Return, &Milestone::RETURN[..]),
    ] {
        for m in milestones {
            counter!(MILESTONES, "process" => kind.as_str(), "milestone" => m.as_str())
                .increment(0);
        }
    }
    for kind in [KIND_ORDER_STUCK, KIND_REFUND_DELAYED] {
        counter!(EXCEPTIONS, "kind" => kind).increment(0);
    }
    // A histogram's series appear with its first observation; naming them here makes the
    // exporter list their buckets at zero.
    for stage in &STAGES {
        let _ = histogram!(STAGE_SECONDS, "stage" => stage.name);
    }
    let _ = histogram!(REFUND_CYCLE_SECONDS);
    for owner in dead_letter_owners {
        for outcome in [REDRIVEN, DROPPED] {
            let _ =
                histogram!(RESOLUTION_SECONDS, "sink" => owner.to_string(), "outcome" => outcome);
        }
    }
    for name in [
        ORDERS_UNALLOCATED,
        ORDERS_UNSHIPPED,
        REFUNDS_DELAYED,
        EXCEPTION_QUEUE,
    ] {
        gauge!(name).set(0.0);
    }
    counter!(STATE_CONFLICTS).increment(0);
    counter!(SWEEPS).increment(0);
    counter!(SWEEPS_DEFERRED).increment(0);
}

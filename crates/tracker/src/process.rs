//! One order's or one return's way through its milestones: the record the tracker keeps
//! per process in KV, and the pure rules that move it (no I/O, unit-tested here).
//!
//! A record changes only when an event it has not seen reaches a milestone it has not
//! reached, so that a redelivered or replayed event leaves it as it is and counts nothing
//! again: milestones are set once (the first event that shows one wins), stage latencies
//! are observed once (their names are kept in `observed`), and exceptions are published
//! once (their stage is kept in `exceptions`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What the tracker follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Order,
    Return,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Return => "return",
        }
    }
}

/// A step of the order-to-cash process (docs/order-to-cash.md says which event shows each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Milestone {
    Placed,
    Confirmed,
    Released,
    Shipped,
    Delivered,
    Cancelled,
    Requested,
    Received,
    Credited,
    Refunded,
}

impl Milestone {
    pub const ORDER: [Milestone; 7] = [
        Milestone::Placed,
        Milestone::Confirmed,
        Milestone::Released,
        Milestone::Shipped,
        Milestone::Delivered,
        Milestone::Cancelled,
        Milestone::Refunded,
    ];
    pub const RETURN: [Milestone; 4] = [
        Milestone::Requested,
        Milestone::Received,
        Milestone::Credited,
        Milestone::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::Placed => "placed",
            Milestone::Confirmed => "confirmed",
            Milestone::Released => "released",
            Milestone::Shipped => "shipped",
            Milestone::Delivered => "delivered",
            Milestone::Cancelled => "cancelled",
            Milestone::Requested => "requested",
            Milestone::Received => "received",
            Milestone::Credited => "credited",
            Milestone::Refunded => "refunded",
        }
    }
}

/// A latency between two milestones, observed once per process when both are known.
pub struct Stage {
    pub name: &'static str,
    pub from: Milestone,
    pub to: Milestone,
}

/// The stages of `tributary_o2c_stage_seconds` (orders and returns).
pub const STAGES: [Stage; 8] = [
    stage(
        "placed_to_confirmed",
        Milestone::Placed,
        Milestone::Confirmed,
    ),
    stage(
        "confirmed_to_released",
        Milestone::Confirmed,
        Milestone::Released,
    ),
    stage(
        "released_to_shipped",
        Milestone::Released,
        Milestone::Shipped,
    ),
    stage(
        "shipped_to_delivered",
        Milestone::Shipped,
        Milestone::Delivered,
    ),
    stage("placed_to_shipped", Milestone::Placed, Milestone::Shipped),
    stage(
        "requested_to_received",
        Milestone::Requested,
        Milestone::Received,
    ),
    stage(
        "received_to_credited",
        Milestone::Received,
        Milestone::Credited,
    ),
    stage(
        "received_to_refunded",
        Milestone::Received,
        Milestone::Refunded,
    ),
];

/// `tributary_o2c_refund_cycle_seconds`: a return's request to its refund.
pub const REFUND_CYCLE: Stage = stage(
    "requested_to_refunded",
    Milestone::Requested,
    Milestone::Refunded,
);

const fn stage(name: &'static str, from: Milestone, to: Milestone) -> Stage {
    Stage { name, from, to }
}

/// An open step a process may be stuck in (the exception it raises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// Placed, neither confirmed nor cancelled: `order.stuck`.
    Unallocated,
    /// Confirmed (or released), neither shipped nor cancelled: `order.stuck`.
    Unshipped,
    /// A return requested and not refunded: `refund.delayed`.
    Refund,
}

impl Waiting {
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Unallocated => "unallocated",
            Waiting::Unshipped => "unshipped",
            Waiting::Refund => "refund",
        }
    }
}

/// When and from which event a milestone was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    /// Business time (the event's own timestamp), microseconds since the Unix epoch.
    pub at_micros: i64,
    pub event_id: String,
}

/// One applied event, for `tributary orders show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at_micros: i64,
    /// `<entity>.<event>` of the domain event.
    pub event: String,
    pub system: String,
    /// The status the event carried (order status, fulfilment status, return state).
    pub status: String,
    pub event_id: String,
}

/// The KV record of one order or return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub kind: Kind,
    pub key: String,
    /// The order a return belongs to (the key itself for an order).
    #[serde(default)]
    pub order_id: String,
    pub milestones: BTreeMap<Milestone, Reached>,
    /// Stage latencies already observed (metric names' `stage` label).
    #[serde(default)]
    pub observed: BTreeSet<String>,
    /// Exceptions published: waiting step → wall-clock micros of the publication.
    #[serde(default)]
    pub exceptions: BTreeMap<String, i64>,
    /// Applied events, oldest first (at most [`MAX_TIMELINE`]); also what makes a replayed
    /// event a repeat.
    #[serde(default)]
    pub timeline: Vec<Entry>,
    /// The process that carries this order on: a storefront order's record, once the ERP's
    /// order of it is known (same storefront id). Such a record waits for nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continued_as: Option<String>,
}

/// An order's id in a system (`<system>:<id>`); `own` when the event is that system's own
/// record of the order (the storefront's order event), not another system's copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    pub own: bool,
}

/// Events kept per process; an order sees a handful, this bounds a pathological one.
pub const MAX_TIMELINE: usize = 256;

/// What a domain event shows about one process (see `events.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub kind: Kind,
    pub key: String,
    pub order_id: String,
    pub entry: Entry,
    /// Milestones the event shows, each with its business time.
    pub milestones: Vec<(Milestone, i64)>,
    /// Order events: the order's ids in other systems.
    pub links: Vec<Link>,
}

/// What applying an observation changed.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub reached: Vec<(Milestone, i64)>,
    /// (stage name, seconds) newly observable.
    pub latencies: Vec<(&'static str, f64)>,
    /// Seconds from a return's request to its refund, when newly known.
    pub refund_cycle: Option<f64>,
}

impl Process {
    pub fn new(kind: Kind, key: &str, order_id: &str) -> Self {
        Process {
            kind,
            key: key.to_string(),
            order_id: order_id.to_string(),
            milestones: BTreeMap::new(),
            observed: BTreeSet::new(),
            exceptions: BTreeMap::new(),
            timeline: Vec::new(),
            continued_as: None,
        }
    }

    /// Applies an observation; None when its event was applied before (nothing changes).
    pub fn apply(&mut self, obs: &Observation) -> Option<Outcome> {
        if self
            .timeline
            .iter()
            .any(|e| e.event_id == obs.entry.event_id)
        {
            return None;
        }
        if self.order_id.is_empty() {
            self.order_id = obs.order_id.clone();
        }
        self.timeline.push(obs.entry.clone());
        if self.timeline.len() > MAX_TIMELINE {
            self.timeline.remove(0);
        }
        let mut out = Outcome::default();
        for &(milestone, at_micros) in &obs.milestones {
            if self.milestones.contains_key(&milestone) {
                continue;
            }
            self.milestones.insert(
                milestone,
                Reached {
                    at_micros,
                    event_id: obs.entry.event_id.clone(),
                },
            );
            out.reached.push((milestone, at_micros));
        }
        for stage in STAGES.iter().chain([&REFUND_CYCLE]) {
            if let Some(seconds) = self.newly_observable(stage) {
                if stage.name == REFUND_CYCLE.name {
                    out.refund_cycle = Some(seconds);
                } else {
                    out.latencies.push((stage.name, seconds));
                }
            }
        }
        Some(out)
    }

    fn newly_observable(&mut self, stage: &Stage) -> Option<f64> {
        let from = self.milestones.get(&stage.from)?.at_micros;
        let to = self.milestones.get(&stage.to)?.at_micros;
        if !self.observed.insert(stage.name.to_string()) {
            return None;
        }
        // Clocks of different systems may disagree by a little: never a negative latency.
        Some((to - from).max(0) as f64 / 1e6)
    }

    fn at(&self, m: Milestone) -> Option<i64> {
        self.milestones.get(&m).map(|r| r.at_micros)
    }

    /// The step the process waits in and since when (business time), if any.
    pub fn waiting(&self) -> Option<(Waiting, i64)> {
        use Milestone::*;
        if self.continued_as.is_some() {
            return None;
        }
        match self.kind {
            Kind::Order => {
                if [Cancelled, Shipped, Delivered]
                    .iter()
                    .any(|m| self.milestones.contains_key(m))
                {
                    return None;
                }
                let confirmed = [self.at(Confirmed), self.at(Released)]
                    .into_iter()
                    .flatten()
                    .min();
                match (confirmed, self.at(Placed)) {
                    (Some(since), _) => Some((Waiting::Unshipped, since)),
                    (None, Some(since)) => Some((Waiting::Unallocated, since)),
                    (None, None) => None,
                }
            }
            Kind::Return => match (self.at(Requested), self.at(Refunded)) {
                (Some(since), None) => Some((Waiting::Refund, since)),
                _ => None,
            },
        }
    }

    /// The newest business time of the process (its last applied event).
    pub fn last_at(&self) -> i64 {
        self.timeline.iter().map(|e| e.at_micros).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(id: &str, milestones: &[(Milestone, i64)]) -> Observation {
        Observation {
            kind: Kind::Order,
            key: "SO-1".into(),
            order_id: "SO-1".into(),
            entry: Entry {
                at_micros: milestones.first().map(|m| m.1).unwrap_or(0),
                event: "order.status_changed".into(),
                system: "erp".into(),
                status: String::new(),
                event_id: id.into(),
            },
            milestones: milestones.to_vec(),
            links: Vec::new(),
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn a_record_continued_by_another_waits_for_nothing() {
        let mut p = Process::new(Kind::Order, "WEB-1", "WEB-1");
        p.apply(&obs("e1", &[(Milestone::Placed, S)]));
        assert_eq!(p.waiting(), Some((Waiting::Unallocated, S)));
        p.continued_as = Some("SO-W1".into());
        assert_eq!(p.waiting(), None);
    }

    #[test]
    fn milestones_are_set_once_and_latencies_observed_once() {
        let mut p = Process::new(Kind::Order, "SO-1", "SO-1");
        let placed = p.apply(&obs("a", &[(Milestone::Placed, 100 * S)]));
        assert_eq!(placed.map(|o| o.reached.len()), Some(1));
        assert_eq!(p.waiting(), Some((Waiting::Unallocated, 100 * S)));
        let confirmed = p
            .apply(&obs("b", &[(Milestone::Confirmed, 160 * S)]))
            .unwrap_or_default();
        assert_eq!(confirmed.latencies, vec![("placed_to_confirmed", 60.0)]);
        assert_eq!(p.waiting(), Some((Waiting::Unshipped, 160 * S)));
        // The same event again: nothing.
        let before = p.clone();
        assert_eq!(p.apply(&obs("b", &[(Milestone::Confirmed, 160 * S)])), None);
        assert_eq!(p, before);
        // Another event showing a milestone already reached: applied, nothing observed.
        let again = p
            .apply(&obs("c", &[(Milestone::Confirmed, 999 * S)]))
            .unwrap_or_default();
        assert!(again.reached.is_empty() && again.latencies.is_empty());
        let shipped = p
            .apply(&obs("d", &[(Milestone::Shipped, 400 * S)]))
            .unwrap_or_default();
        let mut names: Vec<_> = shipped.latencies.iter().map(|l| l.0).collect();
        names.sort();
        assert_eq!(names, vec!["placed_to_shipped"]);
        assert_eq!(shipped.latencies.iter().map(|l| l.1).sum::<f64>(), 300.0);
        assert_eq!(p.waiting(), None);
    }

    #[test]
    fn a_return_waits_for_its_refund_and_measures_the_cycle() {
        let mut p = Process::new(Kind::Return, "R-1", "SO-1");
        let mut o = obs("r", &[(Milestone::Requested, 10 * S)]);
        o.kind = Kind::Return;
        p.apply(&o);
        assert_eq!(p.waiting(), Some((Waiting::Refund, 10 * S)));
        let refunded = p
            .apply(&obs("f", &[(Milestone::Refunded, 70 * S)]))
            .unwrap_or_default();
        assert_eq!(refunded.refund_cycle, Some(60.0));
        assert_eq!(p.waiting(), None);
    }

    #[test]
    fn a_late_earlier_milestone_still_yields_its_latency_once() {
        // A fulfilment from the WMS can come before the ERP's confirmation is seen.
        let mut p = Process::new(Kind::Order, "SO-2", "SO-2");
        p.apply(&obs("a", &[(Milestone::Placed, 0)]));
        p.apply(&obs("b", &[(Milestone::Released, 50 * S)]));
        let late = p
            .apply(&obs("c", &[(Milestone::Confirmed, 20 * S)]))
            .unwrap_or_default();
        let mut got = late.latencies.clone();
        got.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(
            got,
            vec![
                ("confirmed_to_released", 30.0),
                ("placed_to_confirmed", 20.0)
            ]
        );
    }
}

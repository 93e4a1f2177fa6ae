//! Repair events: the inventory reconciliation (`tributary_reconcile`) re-applies the ERP's
//! level to one target that drifted, through that target's sink, like a normal inventory
//! event. It is a `DomainEvent` on `<prefix>.inventory.repair` whose `entity_version` is the
//! version the reconciliation compared at, with two headers: the sink it is for and the
//! reason, which the sink records in the entity's record, its log and a metric.
//!
//! A sink applies a repair only while its record is at exactly that version: a record
//! behind it means the domain's newer event is still on its way to the sink (it will set
//! the level itself), a record past it means a newer level was applied since. Either way
//! the repair is skipped, so it never overwrites what an in-flight event is about to set.

use async_nats::HeaderMap;
use tributary_proto::retail::v1::DomainEvent;

/// Event name (subject token and `meta.event`) of a repair.
pub const REPAIR_EVENT: &str = "repair";
/// Header naming the sink a repair is for (`wms`, `shopify`).
pub const TARGET_HEADER: &str = "Tributary-Repair-Target";
/// Header carrying the reason (what drifted, found by which sweep).
pub const REASON_HEADER: &str = "Tributary-Repair-Reason";

/// The subject repairs of `entity` go to (before any partition token).
pub fn repair_subject(prefix: &str, entity: &str) -> String {
    format!("{prefix}.{entity}.{REPAIR_EVENT}")
}

/// What a repair asks of one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repair {
    pub target: String,
    pub reason: String,
}

/// The repair `event` carries, if it is one (by its event name; the headers say for whom).
pub(crate) fn repair_of(event: &DomainEvent, headers: Option<&HeaderMap>) -> Option<Repair> {
    let meta = event.meta.as_ref()?;
    if meta.event != REPAIR_EVENT {
        return None;
    }
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    Some(Repair {
        target: header(TARGET_HEADER),
        reason: header(REASON_HEADER),
    })
}

/// Whether a sink applies a repair: one for it, computed at the version its record holds.
pub(crate) fn applies(
    repair: &Repair,
    sink: &str,
    event_version: u64,
    record_version: u64,
) -> bool {
    repair.target == sink && event_version == record_version
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::retail::v1::EventMeta;

    #[test]
    fn a_repair_applies_only_to_its_sink_at_the_version_it_was_computed_at() {
        let mut headers = HeaderMap::new();
        headers.insert(TARGET_HEADER, "wms");
        headers.insert(REASON_HEADER, "drift: wms 7, erp 10");
        let event = DomainEvent {
            meta: Some(EventMeta {
                event: REPAIR_EVENT.into(),
                entity_version: 4,
                ..Default::default()
            }),
            entity: None,
        };
        let repair = repair_of(&event, Some(&headers)).expect("a repair");
        assert_eq!(repair.reason, "drift: wms 7, erp 10");
        assert!(applies(&repair, "wms", 4, 4));
        assert!(!applies(&repair, "shopify", 4, 4));
        // The sink is behind (the domain's event is in flight) or past it (a newer level).
        assert!(!applies(&repair, "wms", 4, 3));
        assert!(!applies(&repair, "wms", 4, 5));
        let normal = DomainEvent {
            meta: Some(EventMeta {
                event: "level_changed".into(),
                ..Default::default()
            }),
            entity: None,
        };
        assert!(repair_of(&normal, Some(&headers)).is_none());
    }
}

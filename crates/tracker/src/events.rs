//! Which milestone a domain event shows (docs/order-to-cash.md, "Milestones").
//!
//! | event | milestone |
//! |---|---|
//! | `order.*` with status `placed` (or `order.placed`) | order placed, at `placed_at` |
//! | `order.*` with status `confirmed` / `allocated` | confirmed |
//! | `order.*` with status `released` | released |
//! | `order.*` with status `shipped` / `delivered` / `completed` / `cancelled` | shipped / delivered / delivered / cancelled |
//! | `order.*` with payment state `refunded` | order refunded |
//! | `fulfillment.*` with status `pending` / `allocated` / `picked` (the WMS has the order) | released |
//! | `fulfillment.*` with status `shipped` / `delivered` | shipped (at `shipped_at`) / delivered (and shipped at `shipped_at`, if not yet) |
//! | `return.*` with state `requested` / `received` / `credited` / `refunded` | that return milestone |
//! | `refund.*` naming a return | the return refunded, at `refunded_at` |
//! | `refund.*` naming only an order | the order refunded |
//!
//! An order event's external ids are its links to other systems' records of the same order:
//! the storefront's own event names its order (`shopify` id, the event's own system), the
//! ERP's event of the order it took from the storefront names the same id. The record of the
//! ERP's order carries the process on; the storefront's is closed (`component.rs`).
//!
//! Times are the events' business timestamps: the entity's own time where it has one
//! (`placed_at`, `shipped_at`, `requested_at`, `refunded_at`), else the source's commit time
//! (`meta.event_time_micros`). Never the time the tracker processes the event.

use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

use crate::process::{Entry, Kind, Link, Milestone, Observation};

/// The process and milestones `event` shows; None for events the tracker does not follow
/// (customers, products, inventory, order lines carry no milestone).
pub fn observe(event: &DomainEvent) -> Option<Observation> {
    let meta = event.meta.as_ref()?;
    let at = meta.event_time_micros;
    let own = |t: i64| if t > 0 { t } else { at };
    let mut links = Vec::new();
    let (kind, key, order_id, status, milestones) = match event.entity.as_ref()? {
        Entity::Order(o) => {
            links = o
                .external_ids
                .iter()
                .filter(|e| !e.system.is_empty() && !e.id.is_empty())
                .map(|e| Link {
                    id: format!("{}:{}", e.system, e.id),
                    own: e.system == meta.system_of_record,
                })
                .collect();
            let key = first(&o.order_id, &meta.entity_key);
            let mut ms = Vec::new();
            if meta.event == "placed" || o.status == "placed" {
                ms.push((Milestone::Placed, own(o.placed_at_micros)));
            }
            if let Some(m) = order_status(&o.status) {
                ms.push((m, at));
            }
            if o.payment_state == "refunded" {
                ms.push((Milestone::Refunded, at));
            }
            (Kind::Order, key.clone(), key, o.status.clone(), ms)
        }
        Entity::Fulfillment(f) => {
            let key = first(&f.order_id, &meta.entity_key);
            let ms = match f.status.as_str() {
                "pending" | "allocated" | "picked" => vec![(Milestone::Released, at)],
                "shipped" => vec![(Milestone::Shipped, own(f.shipped_at_micros))],
                // Webhooks overtake each other: a `delivered` that comes before its `shipped`
                // (which the feed then drops as stale) still says when the parcel left.
                "delivered" if f.shipped_at_micros > 0 => vec![
                    (Milestone::Shipped, f.shipped_at_micros),
                    (Milestone::Delivered, at),
                ],
                "delivered" => vec![(Milestone::Delivered, at)],
                _ => Vec::new(),
            };
            (Kind::Order, key.clone(), key, f.status.clone(), ms)
        }
        Entity::ProductReturn(r) => {
            let key = first(&r.return_id, &meta.entity_key);
            let m = match r.state.as_str() {
                "requested" => Some((Milestone::Requested, own(r.requested_at_micros))),
                "received" => Some((Milestone::Received, at)),
                "credited" => Some((Milestone::Credited, at)),
                "refunded" => Some((Milestone::Refunded, at)),
                _ => None,
            };
            let ms: Vec<_> = m.into_iter().collect();
            (Kind::Return, key, r.order_id.clone(), r.state.clone(), ms)
        }
        Entity::Refund(r) => {
            let when = own(r.refunded_at_micros);
            let ms = vec![(Milestone::Refunded, when)];
            if r.return_id.is_empty() {
                let key = r.order_id.clone();
                (Kind::Order, key.clone(), key, r.state.clone(), ms)
            } else {
                let key = r.return_id.clone();
                (Kind::Return, key, r.order_id.clone(), r.state.clone(), ms)
            }
        }
        _ => return None,
    };
    if key.is_empty() {
        return None;
    }
    Some(Observation {
        kind,
        key,
        order_id,
        entry: Entry {
            at_micros: milestones.first().map(|m| m.1).unwrap_or(at),
            event: format!("{}.{}", meta.entity, meta.event),
            system: meta.system_of_record.clone(),
            status,
            event_id: meta.event_id.clone(),
        },
        milestones,
        links,
    })
}

fn first(a: &str, b: &str) -> String {
    if a.is_empty() { b } else { a }.to_string()
}

fn order_status(status: &str) -> Option<Milestone> {
    Some(match status {
        "confirmed" | "allocated" => Milestone::Confirmed,
        "released" => Milestone::Released,
        "shipped" => Milestone::Shipped,
        "delivered" | "completed" => Milestone::Delivered,
        "cancelled" | "canceled" => Milestone::Cancelled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::retail::v1::{EventMeta, Fulfillment, Order, Refund, Return};

    fn meta(entity: &str, event: &str, key: &str) -> Option<EventMeta> {
        Some(EventMeta {
            event_id: format!("{key}/{event}"),
            entity: entity.into(),
            event: event.into(),
            entity_key: key.into(),
            event_time_micros: 5_000,
            system_of_record: "erp".into(),
            ..Default::default()
        })
    }

    #[test]
    fn orders_fulfilments_returns_and_refunds_show_their_milestones() {
        let placed = DomainEvent {
            meta: meta("order", "placed", "SO-1"),
            entity: Some(Entity::Order(Order {
                order_id: "SO-1".into(),
                status: "placed".into(),
                placed_at_micros: 1_000,
                ..Default::default()
            })),
        };
        let o = observe(&placed).expect("observed");
        assert_eq!((o.kind, o.key.as_str()), (Kind::Order, "SO-1"));
        assert_eq!(o.milestones, vec![(Milestone::Placed, 1_000)]);

        let shipped = DomainEvent {
            meta: meta("fulfillment", "updated", "SO-1"),
            entity: Some(Entity::Fulfillment(Fulfillment {
                status: "shipped".into(),
                ..Default::default()
            })),
        };
        let o = observe(&shipped).expect("observed");
        assert_eq!(
            (o.key.as_str(), o.milestones.clone()),
            ("SO-1", vec![(Milestone::Shipped, 5_000)])
        );

        // A `delivered` that overtook its `shipped` still gives the shipment time.
        let delivered = DomainEvent {
            meta: meta("fulfillment", "updated", "SO-1"),
            entity: Some(Entity::Fulfillment(Fulfillment {
                status: "delivered".into(),
                shipped_at_micros: 3_000,
                ..Default::default()
            })),
        };
        let o = observe(&delivered).expect("observed");
        assert_eq!(
            o.milestones,
            vec![(Milestone::Shipped, 3_000), (Milestone::Delivered, 5_000)]
        );

        let ret = DomainEvent {
            meta: meta("return", "created", "R-1"),
            entity: Some(Entity::ProductReturn(Return {
                return_id: "R-1".into(),
                order_id: "SO-1".into(),
                state: "requested".into(),
                requested_at_micros: 2_000,
                ..Default::default()
            })),
        };
        let o = observe(&ret).expect("observed");
        assert_eq!((o.kind, o.order_id.as_str()), (Kind::Return, "SO-1"));
        assert_eq!(o.milestones, vec![(Milestone::Requested, 2_000)]);

        let refund = DomainEvent {
            meta: meta("refund", "created", "SHOP-9"),
            entity: Some(Entity::Refund(Refund {
                refund_id: "SHOP-9".into(),
                order_id: "SO-1".into(),
                return_id: "R-1".into(),
                refunded_at_micros: 9_000,
                ..Default::default()
            })),
        };
        let o = observe(&refund).expect("observed");
        assert_eq!((o.kind, o.key.as_str()), (Kind::Return, "R-1"));
        assert_eq!(o.milestones, vec![(Milestone::Refunded, 9_000)]);
    }

    #[test]
    fn events_without_a_milestone_are_still_followed_but_other_entities_are_not() {
        let line = DomainEvent {
            meta: meta("order", "status_changed", "SO-1"),
            entity: Some(Entity::Order(Order {
                order_id: "SO-1".into(),
                status: "on_hold".into(),
                ..Default::default()
            })),
        };
        assert!(observe(&line).is_some_and(|o| o.milestones.is_empty()));
        let other = DomainEvent {
            meta: meta("customer", "updated", "C-1"),
            entity: Some(Entity::Customer(Default::default())),
        };
        assert!(observe(&other).is_none());
    }
}

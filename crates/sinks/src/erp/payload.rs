//! What an inbox row carries: the event's entity as JSON in the shape the ERP's processing
//! reads (docs/order-to-cash.md, "The inbox row"). Money stays exact decimal text.

use serde_json::{json, Value};
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent, Money};

fn money(m: Option<&Money>) -> Value {
    match m.filter(|m| !m.amount.is_empty()) {
        Some(m) => json!({"amount": m.amount, "currency": m.currency}),
        None => Value::Null,
    }
}

/// The payload of an order, refund, return or shipment event; None for the entities the ERP
/// does not take.
pub(super) fn of(event: &DomainEvent) -> Option<Value> {
    match event.entity.as_ref()? {
        Entity::Order(o) => Some(json!({
            "order_id": o.order_id,
            "customer_id": o.customer_id,
            "status": o.status,
            "channel": o.channel,
            "payment_state": o.payment_state,
            "total": money(o.total.as_ref()),
            "placed_at_micros": o.placed_at_micros,
            "shipping_address": o.shipping_address.as_ref().map(|a| json!({
                "lines": a.lines,
                "city": a.city,
                "postal_code": a.postal_code,
                "region": a.region,
                "country": a.country,
            })),
            "external_ids": o.external_ids.iter()
                .map(|e| (e.system.clone(), Value::String(e.id.clone())))
                .collect::<serde_json::Map<_, _>>(),
            "lines": o.lines.iter().map(|l| json!({
                "line_id": l.line_id,
                "sku": l.sku,
                "quantity": l.quantity,
                "unit_price": money(l.unit_price.as_ref()),
            })).collect::<Vec<_>>(),
        })),
        Entity::Refund(r) => Some(json!({
            "refund_id": r.refund_id,
            "order_id": r.order_id,
            "return_id": r.return_id,
            "amount": money(r.amount.as_ref()),
            "state": r.state,
            "refunded_at_micros": r.refunded_at_micros,
        })),
        Entity::ProductReturn(r) => Some(json!({
            "return_id": r.return_id,
            "order_id": r.order_id,
            "sku": r.sku,
            "quantity": r.quantity,
            "reason": r.reason,
            "state": r.state,
            "refund_amount": money(r.refund_amount.as_ref()),
        })),
        Entity::Fulfillment(f) => Some(json!({
            "fulfillment_id": f.fulfillment_id,
            "order_id": f.order_id,
            "status": f.status,
            "carrier": f.carrier,
            "tracking_number": f.tracking_number,
            "shipped_at_micros": f.shipped_at_micros,
            "lines": f.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity}))
                .collect::<Vec<_>>(),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::retail::v1::{ExternalId, Order, OrderLine};

    #[test]
    fn order_payload_keeps_lines_links_and_exact_money() {
        let ev = DomainEvent {
            meta: None,
            entity: Some(Entity::Order(Order {
                order_id: "WEB-7".into(),
                total: Some(Money {
                    amount: "10.10".into(),
                    currency: "EUR".into(),
                }),
                external_ids: vec![ExternalId {
                    system: "shopify".into(),
                    id: "gid://shopify/Order/7".into(),
                }],
                lines: vec![OrderLine {
                    sku: "SKU-1".into(),
                    quantity: 2,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        let p = of(&ev).unwrap_or_default();
        assert_eq!(p["total"]["amount"], "10.10");
        assert_eq!(p["external_ids"]["shopify"], "gid://shopify/Order/7");
        assert_eq!(p["lines"][0]["sku"], "SKU-1");
        assert_eq!(p["lines"][0]["quantity"], 2);
        assert_eq!(p["lines"][0]["unit_price"], Value::Null);
    }
}

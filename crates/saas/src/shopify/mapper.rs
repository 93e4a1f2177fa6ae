//! Shopify topics → `tributary.retail.v1` entities (REST payload shape; the reconciliation
//! poll converts GraphQL nodes to it).
//!
//! | topic | subject | entity key |
//! |---|---|---|
//! | `orders/create` | `order.placed` | `<SHOP>-<order id>` |
//! | `orders/updated` | `order.status_changed` | same |
//! | `refunds/create` | `refund.created` | `<SHOP>-<refund id>` |
//! | `inventory_levels/update` | `inventory.level_changed` | `<SHOP>-ITEM-<item id>:<SHOP>-LOC-<location id>` |
//! | `customers/update` | `customer.updated` | `<SHOP>-<customer id>` |
//! | `fulfillments/create` | `fulfillment.updated` | the order's key |
//!
//! `<SHOP>` is the configured shop name in upper case. The entity's `as_of` (its order among
//! this feed's events) is the payload's `updated_at` (else `created_at`, else
//! `X-Shopify-Triggered-At`): the same value whether a webhook or the reconciliation poll
//! brings the state, so both produce the same event id.

use serde_json::Value;
use tributary_proto::retail::v1::{
    domain_event::Entity, Address, Customer, ExternalId, Fulfillment, InventoryLevel, Money, Order,
    OrderLine, Refund,
};

use crate::time::parse_rfc3339_micros;

/// One topic's payload mapped to an entity.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub entity: &'static str,
    pub event: &'static str,
    pub key: String,
    /// Shopify's GID of the record (part of the event id).
    pub gid: String,
    pub as_of_micros: i64,
    pub body: Entity,
}

/// Mapping name of a topic (event ids, dead-letter subjects).
pub fn mapping_name(topic: &str) -> String {
    format!("shopify_{}", topic.replace('/', "_"))
}

/// `Ok(None)`: a topic that is not mapped. `Err`: a payload that cannot be mapped (reason).
pub fn map(
    shop: &str,
    topic: &str,
    payload: &Value,
    triggered_micros: i64,
) -> Result<Option<Mapped>, String> {
    let prefix = shop.to_uppercase();
    let time = |field: &str| {
        payload
            .get(field)
            .and_then(Value::as_str)
            .and_then(parse_rfc3339_micros)
    };
    let as_of = time("updated_at")
        .or_else(|| time("created_at"))
        .unwrap_or(triggered_micros);
    let id = |v: &Value, field: &str| -> Result<String, String> {
        match v.get(field) {
            Some(Value::Number(n)) => Ok(n.to_string()),
            // A GID's last segment; `gid://shopify/Order/` has none, and an empty id would
            // make every such record the same entity.
            Some(Value::String(s)) => match s.rsplit('/').next() {
                Some(last) if !last.is_empty() => Ok(last.to_string()),
                _ => Err(format!("`{field}` is empty")),
            },
            _ => Err(format!("`{field}` is missing")),
        }
    };
    // The GID names the record in the event id (`<shop>:<gid>@<as_of>`): one without an id
    // (empty, or `gid://shopify/Order/`) would give two records the same event id, and
    // JetStream would drop the second as a duplicate.
    let payload_gid = payload
        .get("admin_graphql_api_id")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty() && !g.ends_with('/'))
        .map(str::to_string);
    let gid = |kind: &str, idv: &str| {
        payload_gid
            .clone()
            .unwrap_or_else(|| format!("gid://shopify/{kind}/{idv}"))
    };
    let text = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let external = |g: &str| {
        vec![ExternalId {
            system: "shopify".into(),
            id: g.to_string(),
        }]
    };
    let (entity, event, key, g, body) = match topic {
        "orders/create" | "orders/updated" => {
            let oid = id(payload, "id")?;
            let key = format!("{prefix}-{oid}");
            let g = gid("Order", &oid);
            let currency = text(payload, "currency");
            let customer_id = payload
                .get("customer")
                .filter(|c| !c.is_null())
                .and_then(|c| id(c, "id").ok())
                .map(|c| format!("{prefix}-{c}"))
                .unwrap_or_default();
            let lines = payload
                .get("line_items")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|l| OrderLine {
                            order_id: key.clone(),
                            line_id: id(l, "id").unwrap_or_default(),
                            sku: text(l, "sku"),
                            quantity: l.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                            unit_price: Some(Money {
                                amount: money(l.get("price")),
                                currency: currency.clone(),
                            }),
                            customer_id: customer_id.clone(),
                            channel: "web".into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let total = payload.get("total_price").map(|t| Money {
                amount: money(Some(t)),
                currency: currency.clone(),
            });
            let order = Order {
                order_id: key.clone(),
                customer_id,
                status: order_status(payload).into(),
                channel: "web".into(),
                total,
                tax: None,
                payment_state: payment_state(&text(payload, "financial_status")),
                placed_at_micros: time("created_at").unwrap_or(0),
                lines,
                external_ids: external(&g),
                store_id: String::new(),
                shipping_address: payload
                    .get("shipping_address")
                    .and_then(shipping_address)
                    .map(Box::new),
            };
            let event = if topic == "orders/create" {
                "placed"
            } else {
                "status_changed"
            };
            ("order", event, key, g, Entity::Order(order))
        }
        "refunds/create" => {
            let rid = id(payload, "id")?;
            let order = id(payload, "order_id")?;
            let g = gid("Refund", &rid);
            let amount: f64 = payload
                .get("transactions")
                .and_then(Value::as_array)
                .map(|ts| {
                    ts.iter()
                        .filter(|t| text(t, "kind") == "refund" && text(t, "status") != "failure")
                        .filter_map(|t| money(t.get("amount")).parse::<f64>().ok())
                        .sum()
                })
                .unwrap_or(0.0);
            let refund = Refund {
                refund_id: format!("{prefix}-{rid}"),
                order_id: format!("{prefix}-{order}"),
                return_id: String::new(),
                amount: Some(Money {
                    amount: format!("{amount:.2}"),
                    currency: text(payload, "currency"),
                }),
                state: "refunded".into(),
                refunded_at_micros: time("created_at").unwrap_or(triggered_micros),
            };
            (
                "refund",
                "created",
                format!("{prefix}-{rid}"),
                g,
                Entity::Refund(refund),
            )
        }
        "inventory_levels/update" => {
            let item = id(payload, "inventory_item_id")?;
            let location = id(payload, "location_id")?;
            let sku = format!("{prefix}-ITEM-{item}");
            let loc = format!("{prefix}-LOC-{location}");
            let g = payload_gid.clone().unwrap_or_else(|| {
                format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}")
            });
            let level = InventoryLevel {
                sku: sku.clone(),
                location: loc.clone(),
                available: payload
                    .get("available")
                    .and_then(Value::as_i64)
                    .ok_or("`available` is missing")?,
                reporting_system: "shopify".into(),
                updated_at_micros: as_of,
                ..Default::default()
            };
            (
                "inventory",
                "level_changed",
                format!("{sku}:{loc}"),
                g,
                Entity::Inventory(level),
            )
        }
        "customers/update" => {
            let cid = id(payload, "id")?;
            let g = gid("Customer", &cid);
            let customer = Customer {
                customer_id: format!("{prefix}-{cid}"),
                email: text(payload, "email"),
                phone: text(payload, "phone"),
                first_name: text(payload, "first_name"),
                last_name: text(payload, "last_name"),
                external_ids: external(&g),
                created_at_micros: time("created_at").unwrap_or(0),
                updated_at_micros: as_of,
                ..Default::default()
            };
            (
                "customer",
                "updated",
                format!("{prefix}-{cid}"),
                g,
                Entity::Customer(customer),
            )
        }
        "fulfillments/create" => {
            let fid = id(payload, "id")?;
            let order = id(payload, "order_id")?;
            let g = gid("Fulfillment", &fid);
            let status = match text(payload, "status").as_str() {
                "success" => "shipped",
                "cancelled" | "failure" | "error" => "cancelled",
                _ => "pending",
            };
            let f = Fulfillment {
                fulfillment_id: format!("{prefix}-{fid}"),
                order_id: format!("{prefix}-{order}"),
                lines: vec![],
                carrier: text(payload, "tracking_company"),
                tracking_number: text(payload, "tracking_number"),
                tracking_url: text(payload, "tracking_url"),
                status: status.into(),
                location: payload
                    .get("location_id")
                    .and_then(|_| id(payload, "location_id").ok())
                    .map(|l| format!("{prefix}-LOC-{l}"))
                    .unwrap_or_default(),
                shipped_at_micros: time("created_at").unwrap_or(as_of),
            };
            (
                "fulfillment",
                "updated",
                format!("{prefix}-{order}"),
                g,
                Entity::Fulfillment(f),
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(Mapped {
        entity,
        event,
        key,
        gid: g,
        as_of_micros: as_of,
        body,
    }))
}

fn money(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Shopify's `shipping_address` (REST shape): the lines that are not empty, the province
/// code as the region; None when the order has none (nothing to ship).
fn shipping_address(a: &Value) -> Option<Address> {
    let text = |f: &str| a.get(f).and_then(Value::as_str).unwrap_or_default().trim();
    if !a.is_object() {
        return None;
    }
    Some(Address {
        kind: "shipping".into(),
        lines: ["address1", "address2"]
            .iter()
            .map(|f| text(f))
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        city: text("city").into(),
        postal_code: text("zip").into(),
        region: text("province_code").into(),
        country: text("country_code").to_uppercase(),
    })
}

fn order_status(o: &Value) -> &'static str {
    let set = |f: &str| o.get(f).is_some_and(|v| !v.is_null());
    if set("cancelled_at") {
        "cancelled"
    } else if set("closed_at") {
        "completed"
    } else if o.get("fulfillment_status").and_then(Value::as_str) == Some("fulfilled") {
        "shipped"
    } else {
        "placed"
    }
}

fn payment_state(financial_status: &str) -> String {
    match financial_status {
        "paid" => "paid",
        "pending" => "pending",
        "authorized" => "authorized",
        "refunded" | "partially_refunded" => "refunded",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_and_inventory() {
        let o = json!({"id": 7, "admin_graphql_api_id": "gid://shopify/Order/7",
            "financial_status": "paid", "updated_at": "2026-01-01T00:00:01.000Z",
            "created_at": "2026-01-01T00:00:00.000Z", "customer": {"id": 3},
            "line_items": [{"id": 9, "sku": "MUG-1", "quantity": 2, "price": "9.50"}]});
        let m = map("web", "orders/create", &o, 0).unwrap().unwrap();
        assert_eq!(
            (m.entity, m.event, m.key.as_str()),
            ("order", "placed", "WEB-7")
        );
        let Entity::Order(order) = m.body else {
            panic!()
        };
        assert_eq!(order.customer_id, "WEB-3");
        assert_eq!(order.lines[0].sku, "MUG-1");
        assert_eq!(order.shipping_address, None);
        let mut with_address = o.clone();
        with_address["shipping_address"] = json!({"address1": "Hauptstr. 5", "address2": null,
            "city": "Berlin", "province_code": "BE", "zip": "10115", "country_code": "de"});
        let Entity::Order(order) = map("web", "orders/create", &with_address, 0)
            .unwrap()
            .unwrap()
            .body
        else {
            panic!()
        };
        let a = order.shipping_address.unwrap();
        assert_eq!(a.lines, vec!["Hauptstr. 5".to_string()]);
        assert_eq!(
            (a.city.as_str(), a.postal_code.as_str()),
            ("Berlin", "10115")
        );
        assert_eq!((a.region.as_str(), a.country.as_str()), ("BE", "DE"));
        let i = json!({"inventory_item_id": 5, "location_id": 2, "available": 4,
            "updated_at": "2026-01-01T00:00:00.000Z"});
        let m = map("web", "inventory_levels/update", &i, 0)
            .unwrap()
            .unwrap();
        assert_eq!(m.key, "WEB-ITEM-5:WEB-LOC-2");
        assert!(map("web", "products/update", &i, 0).unwrap().is_none());
        assert!(map("web", "orders/create", &json!({}), 0).is_err());
    }

    /// Fuzzing findings: an empty `admin_graphql_api_id` became the record's GID, so two
    /// records changed in the same microsecond shared an event id; an id that is a GID
    /// without its last segment mapped to the key `WEB-`.
    #[test]
    fn an_empty_gid_is_not_used() {
        for gid in ["", "gid://shopify/Customer/"] {
            let c =
                json!({"id": 5, "admin_graphql_api_id": gid, "updated_at": "2026-01-01T00:00:00Z"});
            let m = map("web", "customers/update", &c, 0).unwrap().unwrap();
            assert_eq!(m.gid, "gid://shopify/Customer/5");
        }
        let i = json!({"inventory_item_id": 5, "location_id": 2, "available": 4,
            "admin_graphql_api_id": ""});
        let m = map("web", "inventory_levels/update", &i, 0)
            .unwrap()
            .unwrap();
        assert_eq!(m.gid, "gid://shopify/InventoryLevel/2?inventory_item_id=5");
        for empty in ["", "/", "gid://shopify/Order/"] {
            let o = json!({"id": empty, "updated_at": "2026-01-01T00:00:00Z"});
            assert!(map("web", "orders/updated", &o, 0).is_err(), "{empty:?}");
        }
    }
}

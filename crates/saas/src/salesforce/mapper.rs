//! Raw Salesforce changes → `tributary.retail.v1` entities.
//!
//! | entity | change | subject | entity key |
//! |---|---|---|---|
//! | Contact | CREATE | `customer.created` | `SF-<record id>`, or the entity key the crosswalk knows |
//! | Contact | UPDATE, UNDELETE, gap read-back | `customer.updated` | same |
//! | Account | as Contact (`name` = Account Name) | `customer.…` | same |
//! | Order | CREATE | `order.placed` | `SF-<record id>` |
//! | Order | UPDATE, UNDELETE, gap read-back | `order.status_changed` | same |
//! | Case with `Type` = Return | CREATE | `return.requested` | `SF-<record id>` |
//!
//! A return Case is a customer's request that the ERP takes (its inbox): only its creation is
//! mapped, and only when it names an order (`Order_External_Id__c`). Later edits of the Case
//! are the agent's notes, and the Cases the Salesforce sink writes for the ERP's returns are
//! echoes (dropped before mapping).
//!
//! Deletes, raw gap headers (their read-backs are mapped), overflow and undecodable events are
//! not mapped. Pub/Sub updates carry only the changed fields: the entity holds those, the rest
//! empty (consumers and the sinks treat empty as "not carried"). A record merged into one
//! event with others (`recordIds` of several) yields one entity per record.
//!
//! `as_of` is the raw event's `commit_time_micros`, the feed clock (`position.rs`): it
//! increases strictly along a topic, and a redelivered change has the same value, so the
//! entity state turns it into a repeat.

use serde_json::Value;
use tributary_proto::retail::v1::{
    domain_event::Entity, Customer, ExternalId, Money, Order, Return,
};

/// One record of a change mapped to an entity.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub entity: &'static str,
    pub event: &'static str,
    pub key: String,
    pub record_id: String,
    pub as_of_micros: i64,
    pub body: Entity,
}

fn text(fields: &Value, k: &str) -> String {
    match fields.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// Mapping name (event ids, dead-letter subjects) of an entity name.
pub fn mapping_name(entity_name: &str) -> String {
    format!("salesforce_{}", entity_name.to_ascii_lowercase())
}

/// `Ok(vec![])`: not mapped. `Err`: a payload that cannot be mapped (reason).
pub fn map(payload: &Value, read_back: bool, as_of: i64) -> Result<Vec<Mapped>, String> {
    let header = payload
        .get("ChangeEventHeader")
        .ok_or("no ChangeEventHeader")?;
    let fields = payload.get("fields").cloned().unwrap_or(Value::Null);
    let change = header
        .get("changeType")
        .and_then(Value::as_str)
        .unwrap_or("");
    let entity_name = header
        .get("entityName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let created = match (change, read_back) {
        ("CREATE", false) => true,
        ("UPDATE" | "UNDELETE", false) => false,
        (c, true) if c.starts_with("GAP_") && c != "GAP_DELETE" => c == "GAP_CREATE",
        _ => return Ok(vec![]),
    };
    let ids: Vec<String> = header
        .get("recordIds")
        .and_then(Value::as_array)
        .map(|a| {
            // An empty id names no record: it would map to the entity `SF-`, shared by
            // every such change.
            a.iter()
                .filter_map(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Err("no recordIds".into());
    }
    // Entity keys the crosswalk resolved at capture (`crosswalk.rs`), else `SF-<id>`.
    let key_of = |id: &str| {
        payload
            .get("externalIds")
            .and_then(|m| m.get(id))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map_or_else(|| format!("SF-{id}"), str::to_string)
    };
    let mut out = Vec::new();
    for id in ids.into_iter().filter(|i| !i.contains('*')) {
        let key = key_of(&id);
        let external_ids = vec![ExternalId {
            system: "salesforce".into(),
            id: id.clone(),
        }];
        let (entity, event, body) = match entity_name {
            "Contact" | "Account" => {
                let customer = Customer {
                    customer_id: key.clone(),
                    email: text(&fields, "Email"),
                    phone: text(&fields, "Phone"),
                    first_name: text(&fields, "FirstName"),
                    last_name: text(&fields, "LastName"),
                    name: text(&fields, "Name"),
                    external_ids,
                    updated_at_micros: as_of,
                    created_at_micros: if created { as_of } else { 0 },
                    ..Default::default()
                };
                let event = if created { "created" } else { "updated" };
                ("customer", event, Entity::Customer(customer))
            }
            "Order" => {
                let amount = text(&fields, "Total_Amount__c");
                let account = text(&fields, "AccountId");
                let order = Order {
                    order_id: key.clone(),
                    customer_id: if account.is_empty() {
                        String::new()
                    } else {
                        key_of(&account)
                    },
                    status: text(&fields, "Status"),
                    channel: text(&fields, "Channel__c"),
                    payment_state: text(&fields, "Payment_State__c"),
                    total: (!amount.is_empty()).then(|| Money {
                        amount,
                        currency: text(&fields, "Currency__c"),
                    }),
                    placed_at_micros: if created { as_of } else { 0 },
                    external_ids,
                    ..Default::default()
                };
                let event = if created { "placed" } else { "status_changed" };
                ("order", event, Entity::Order(order))
            }
            "Case" if created && text(&fields, "Type") == "Return" => {
                let order_id = text(&fields, "Order_External_Id__c");
                if order_id.is_empty() {
                    return Ok(vec![]);
                }
                let amount = text(&fields, "Refund_Amount__c");
                // A number field: a double in Salesforce, text in the emulator's Avro schema.
                let quantity = text(&fields, "Quantity__c").parse::<f64>().ok();
                let product_return = Return {
                    return_id: key.clone(),
                    order_id,
                    sku: text(&fields, "SKU__c"),
                    // Salesforce numbers are doubles; a fractional or absurd quantity is
                    // refused by the ERP's checks, not rounded here.
                    quantity: quantity.map_or(0, |q| q as i64),
                    reason: match text(&fields, "Description") {
                        d if d.is_empty() => text(&fields, "Subject"),
                        d => d,
                    },
                    state: "requested".into(),
                    refund_amount: (!amount.is_empty()).then(|| Money {
                        amount,
                        currency: String::new(),
                    }),
                    requested_at_micros: as_of,
                    ..Default::default()
                };
                ("return", "requested", Entity::ProductReturn(product_return))
            }
            _ => return Ok(vec![]),
        };
        out.push(Mapped {
            entity,
            event,
            key,
            record_id: id,
            as_of_micros: as_of,
            body,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn maps_contacts_and_orders_per_record() {
        let p = json!({"ChangeEventHeader": {"entityName": "Contact", "changeType": "UPDATE",
            "recordIds": ["003A", "003B"], "commitTimestamp": 1_700_000_000_000i64, "sequenceNumber": 2},
            "fields": {"Email": "x@y.z"}});
        let m = super::map(&p, false, 7).unwrap_or_default();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].entity, m[0].event, m[0].key.as_str()),
            ("customer", "updated", "SF-003A")
        );
        assert_eq!(m[0].as_of_micros, 7);
        let o = json!({"ChangeEventHeader": {"entityName": "Order", "changeType": "CREATE",
            "recordIds": ["801A"], "commitTimestamp": 5}, "fields": {"Status": "Draft"}});
        let m = super::map(&o, false, 8).unwrap_or_default();
        assert_eq!((m[0].entity, m[0].event), ("order", "placed"));
        let d = json!({"ChangeEventHeader": {"entityName": "Order", "changeType": "DELETE",
            "recordIds": ["801A"], "commitTimestamp": 5}, "fields": {}});
        assert!(super::map(&d, false, 9).unwrap_or_default().is_empty());
        let gap = json!({"ChangeEventHeader": {"entityName": "Order", "changeType": "GAP_UPDATE",
            "recordIds": ["801A"], "commitTimestamp": 5}, "fields": {}});
        assert!(super::map(&gap, false, 9).unwrap_or_default().is_empty());
        assert_eq!(super::map(&gap, true, 10).unwrap_or_default().len(), 1);
    }

    #[test]
    fn maps_a_new_return_case_that_names_an_order() {
        let case = |ty: &str, change: &str, order: &str| {
            json!({"ChangeEventHeader": {"entityName": "Case", "changeType": change,
                "recordIds": ["500000000000001AAA"]}, "fields": {"Type": ty,
                "Order_External_Id__c": order, "SKU__c": "SKU-1", "Quantity__c": 2.0,
                "Description": "too small"}})
        };
        let m = super::map(&case("Return", "CREATE", "SO-1"), false, 7).unwrap_or_default();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].entity, m[0].event), ("return", "requested"));
        assert_eq!(m[0].key, "SF-500000000000001AAA");
        let super::Entity::ProductReturn(r) = &m[0].body else {
            panic!("not a return: {:?}", m[0].body);
        };
        assert_eq!(
            (r.order_id.as_str(), r.sku.as_str(), r.quantity),
            ("SO-1", "SKU-1", 2)
        );
        assert_eq!(
            (r.state.as_str(), r.reason.as_str()),
            ("requested", "too small")
        );
        for ignored in [
            case("Question", "CREATE", "SO-1"),
            case("Return", "UPDATE", "SO-1"),
            case("Return", "CREATE", ""),
        ] {
            assert!(super::map(&ignored, false, 7)
                .unwrap_or_default()
                .is_empty());
        }
    }

    /// Fuzzing finding: `recordIds: [""]` mapped to the entity key `SF-`.
    #[test]
    fn empty_record_ids_name_no_record() {
        let o = json!({"ChangeEventHeader": {"entityName": "Order", "changeType": "CREATE",
            "recordIds": ["", "801A"]}, "fields": {}});
        let m = super::map(&o, false, 8).unwrap_or_default();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].key, "SF-801A");
        let o = json!({"ChangeEventHeader": {"entityName": "Order", "changeType": "CREATE",
            "recordIds": [""]}, "fields": {}});
        assert_eq!(
            super::map(&o, false, 8).err().as_deref(),
            Some("no recordIds")
        );
    }
}

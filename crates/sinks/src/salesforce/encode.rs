//! Domain events as Salesforce records: which object and fields each event upserts, and the
//! collection request body.

use serde_json::{Map, Value};
use tributary_config::SalesforceSinkConfig;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

fn put_str(m: &mut Map<String, Value>, field: &str, value: &str) {
    if !value.is_empty() {
        m.insert(field.into(), Value::String(value.into()));
    }
}

pub(super) fn date_of(micros: i64) -> Option<String> {
    if micros <= 0 {
        return None;
    }
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = micros.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{d:02}"))
}

/// The object and fields an event upserts; `None` for events this target does not write.
/// Empty values are left out so that a partial event (a status change, a POS-owned
/// field) does not blank fields it does not carry.
/// The record id of an entity key `SF-<record id>`: the key the Salesforce feed gives a record
/// nobody keyed (docs/saas-sources.md), i.e. the record itself. Record ids are 15 or 18
/// letters and digits.
pub(super) fn own_record_id(key: &str) -> Option<&str> {
    key.strip_prefix("SF-")
        .filter(|id| matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()))
}

pub(super) fn map_event(
    cfg: &SalesforceSinkConfig,
    event: &DomainEvent,
) -> Option<(&'static str, Map<String, Value>)> {
    let meta = event.meta.as_ref()?;
    let ext = cfg.external_id_field.as_str();
    let mut m = Map::new();
    let object = match event.entity.as_ref()? {
        Entity::Customer(c) => {
            // A person account carries the contact fields under `Person…` names.
            let person = cfg.customer_object == "PersonAccount";
            put_str(&mut m, ext, &meta.entity_key);
            put_str(&mut m, "FirstName", &c.first_name);
            put_str(&mut m, "LastName", &c.last_name);
            put_str(
                &mut m,
                if person { "PersonEmail" } else { "Email" },
                &c.email,
            );
            put_str(&mut m, "Phone", &c.phone);
            if let Some(consent) = &c.consent {
                m.insert(
                    if person {
                        "PersonHasOptedOutOfEmail"
                    } else {
                        "HasOptedOutOfEmail"
                    }
                    .into(),
                    Value::Bool(!consent.email_marketing),
                );
            }
            if person {
                "Account"
            } else {
                "Contact"
            }
        }
        Entity::Order(o) => {
            put_str(&mut m, ext, &o.order_id);
            let status = cfg
                .order_status_map
                .get(&o.status)
                .map(String::as_str)
                .unwrap_or(&o.status);
            put_str(&mut m, "Status", status);
            put_str(&mut m, "Customer_External_Id__c", &o.customer_id);
            put_str(&mut m, "Payment_State__c", &o.payment_state);
            put_str(&mut m, "Channel__c", &o.channel);
            if let Some(total) = o.total.as_ref().filter(|t| !t.amount.is_empty()) {
                put_str(&mut m, "Total_Amount__c", &total.amount);
                put_str(&mut m, "Currency__c", &total.currency);
            }
            if let Some(date) = date_of(o.placed_at_micros) {
                m.insert("EffectiveDate".into(), Value::String(date));
            }
            "Order"
        }
        Entity::Fulfillment(f) => {
            put_str(&mut m, ext, &f.order_id);
            put_str(&mut m, "Tracking_Number__c", &f.tracking_number);
            put_str(&mut m, "Tracking_Url__c", &f.tracking_url);
            put_str(&mut m, "Carrier__c", &f.carrier);
            put_str(&mut m, "Fulfillment_Status__c", &f.status);
            "Order"
        }
        Entity::ProductReturn(r) => {
            put_str(&mut m, ext, &r.return_id);
            // A Case an agent opened keeps the agent's subject, origin and description; the
            // bridge fills in the return's progress.
            if own_record_id(&r.return_id).is_none() {
                put_str(
                    &mut m,
                    "Subject",
                    &format!("Return {} of order {}", r.return_id, r.order_id),
                );
                m.insert("Type".into(), Value::String("Return".into()));
                m.insert("Origin".into(), Value::String("Tributary".into()));
                put_str(&mut m, "Description", &r.reason);
            }
            put_str(&mut m, "Return_State__c", &r.state);
            put_str(&mut m, "Order_External_Id__c", &r.order_id);
            put_str(&mut m, "SKU__c", &r.sku);
            if r.quantity != 0 {
                m.insert("Quantity__c".into(), Value::from(r.quantity));
            }
            if let Some(amount) = r.refund_amount.as_ref().filter(|a| !a.amount.is_empty()) {
                put_str(&mut m, "Refund_Amount__c", &amount.amount);
            }
            "Case"
        }
        // Order lines (OrderItem needs price book entries), products, prices, stock.
        _ => return None,
    };
    // Without its external id a record cannot be upserted; the event is not for us.
    m.contains_key(ext).then_some((object, m))
}

/// `{allOrNone, records: [{attributes: {type}, …fields}]}`, serialised from the lanes'
/// records without copying them.
#[derive(serde::Serialize)]
pub(super) struct CollectionBody<'a> {
    #[serde(rename = "allOrNone")]
    pub all_or_none: bool,
    pub records: Vec<CollectionRecord<'a>>,
}

#[derive(serde::Serialize)]
pub(super) struct CollectionRecord<'a> {
    pub attributes: Attributes<'a>,
    #[serde(flatten)]
    pub fields: &'a Map<String, Value>,
}

#[derive(serde::Serialize)]
pub(super) struct Attributes<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// Percent-encodes a path segment (external ids may hold `/`, spaces, …).
pub(super) fn utf8_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

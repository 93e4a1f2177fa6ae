//! The raw Shopify event as a `tributary.cdc.v1.ChangeEvent`, so that consumers of raw feeds
//! read one envelope whether the change came from PostgreSQL or from a SaaS webhook.
//!
//! | field | Shopify |
//! |---|---|
//! | `event_id` (= `Nats-Msg-Id`) | `<shop>:<X-Shopify-Event-Id>`; reconciled records `<shop>:reconcile:<gid>@<updated_at>` |
//! | `source` / `database` / `schema` / `table` | shop name / shop domain / `shopify` / topic (`orders/updated`) |
//! | `op` | INSERT for `*/create`, DELETE for `*/delete`, UPDATE otherwise, READ for reconciled records |
//! | `after` | one `json` column `payload`: the webhook body, byte for byte |
//! | `commit_time_micros` | `X-Shopify-Triggered-At` (reconciled: the record's `updated_at`) |
//! | `origin` | `webhook:<X-Shopify-Webhook-Id>` or `reconciliation` |

use tributary_proto::cdc::v1::{value::Kind, ChangeEvent, Column, Operation, Row, Value};

/// Subject of a raw event: `saas.shopify.<shop>.<topic with '/' as '.'>`.
pub fn subject(shop: &str, topic: &str) -> String {
    let topic: Vec<String> = topic
        .split('/')
        .map(tributary_nats::subject::token)
        .collect();
    format!(
        "saas.shopify.{}.{}",
        tributary_nats::subject::token(shop),
        topic.join(".")
    )
}

/// Every subject of one shop.
pub fn shop_wildcard(shop: &str) -> String {
    format!("saas.shopify.{}.>", tributary_nats::subject::token(shop))
}

pub struct RawEvent<'a> {
    pub event_id: String,
    pub shop: &'a str,
    pub shop_domain: &'a str,
    pub topic: &'a str,
    pub body: &'a str,
    pub triggered_at_micros: i64,
    pub origin: String,
    pub reconciled: bool,
}

pub fn change_event(raw: &RawEvent<'_>) -> ChangeEvent {
    let op = if raw.reconciled {
        Operation::Read
    } else if raw.topic.ends_with("/create") {
        Operation::Insert
    } else if raw.topic.ends_with("/delete") {
        Operation::Delete
    } else {
        Operation::Update
    };
    let row = Row {
        values: vec![Value {
            kind: Some(Kind::Json(raw.body.to_string())),
        }],
    };
    let (before, after) = if op == Operation::Delete {
        (Some(row), None)
    } else {
        (None, Some(row))
    };
    ChangeEvent {
        event_id: raw.event_id.clone(),
        source: raw.shop.to_string(),
        database: raw.shop_domain.to_string(),
        schema: "shopify".into(),
        table: raw.topic.to_string(),
        op: op as i32,
        before,
        after,
        commit_time_micros: raw.triggered_at_micros,
        ordinal: 1,
        transaction_changes: 1,
        last_in_transaction: true,
        columns: vec![Column {
            name: "payload".into(),
            type_oid: 114,
            type_name: "json".into(),
            type_modifier: -1,
            key: false,
        }],
        origin: raw.origin.clone(),
        captured_at_micros: crate::time::now_micros(),
        ..Default::default()
    }
}

/// The JSON payload of a raw event (`after`, or `before` for deletes).
pub fn payload(change: &ChangeEvent) -> Option<&str> {
    let row = change.after.as_ref().or(change.before.as_ref())?;
    match row.values.first()?.kind.as_ref()? {
        Kind::Json(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects() {
        assert_eq!(
            super::subject("web", "inventory_levels/update"),
            "saas.shopify.web.inventory_levels.update"
        );
    }
}

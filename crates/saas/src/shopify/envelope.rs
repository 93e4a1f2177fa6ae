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

use tributary_proto::cdc::v1::{ChangeEvent, Operation};

use crate::json_change::JsonChange;

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
    JsonChange {
        event_id: raw.event_id.clone(),
        source: raw.shop,
        database: raw.shop_domain,
        schema: "shopify",
        table: raw.topic,
        op,
        payload: raw.body.to_string(),
        commit_micros: raw.triggered_at_micros,
        origin: raw.origin.clone(),
    }
    .into_event()
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

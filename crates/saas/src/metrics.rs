//! Every metric of the SaaS feeds, named once. Labels are bounded: `shop` (configured shops),
//! `reason` (the fixed set below), `topic` (the six mapped topics or `other`), `resource`
//! (`orders`, `customers`), `outcome` (`published`, `stale`, `repeated`, `ignored`, `dead_letter`).

pub const WEBHOOKS_RECEIVED: &str = "tributary_shopify_webhooks_received_total";
pub const WEBHOOKS_REJECTED: &str = "tributary_shopify_webhooks_rejected_total";
pub const WEBHOOKS_DUPLICATE: &str = "tributary_shopify_webhooks_duplicate_total";
pub const WEBHOOKS_STORED: &str = "tributary_shopify_webhooks_stored_total";
pub const WEBHOOK_LAG: &str = "tributary_shopify_webhook_lag_seconds";
pub const DOMAIN_EVENTS: &str = "tributary_shopify_domain_events_total";
pub const RECONCILE_POLLS: &str = "tributary_shopify_reconcile_polls_total";
pub const RECONCILE_RECOVERED: &str = "tributary_shopify_reconcile_recovered_total";
pub const RECONCILE_CURSOR: &str = "tributary_shopify_reconcile_cursor_seconds";
pub const ERRORS: &str = "tributary_shopify_errors_total";

/// The six mapped topics keep their name as a label; anything else is `other`.
pub fn topic_label(topic: &str) -> &'static str {
    match topic {
        "orders/create" => "orders/create",
        "orders/updated" => "orders/updated",
        "refunds/create" => "refunds/create",
        "inventory_levels/update" => "inventory_levels/update",
        "customers/update" => "customers/update",
        "fulfillments/create" => "fulfillments/create",
        _ => "other",
    }
}

pub fn describe() {
    metrics::describe_counter!(
        WEBHOOKS_RECEIVED,
        "webhook requests received, per shop and topic"
    );
    metrics::describe_counter!(
        WEBHOOKS_REJECTED,
        "webhook requests refused (401/400/503), per shop and reason"
    );
    metrics::describe_counter!(
        WEBHOOKS_DUPLICATE,
        "webhook redeliveries JetStream dropped by Nats-Msg-Id (answered 200), per shop"
    );
    metrics::describe_counter!(
        WEBHOOKS_STORED,
        "webhooks stored in the raw stream and answered 200, per shop and topic"
    );
    metrics::describe_gauge!(
        WEBHOOK_LAG,
        "now minus X-Shopify-Triggered-At of the last stored webhook, per shop"
    );
    metrics::describe_counter!(
        DOMAIN_EVENTS,
        "raw Shopify events through the domain mapping, per shop and outcome"
    );
    metrics::describe_counter!(
        RECONCILE_POLLS,
        "reconciliation polls, per shop and outcome"
    );
    metrics::describe_counter!(
        RECONCILE_RECOVERED,
        "records the reconciliation poll published because no webhook had brought them, per shop and resource"
    );
    metrics::describe_gauge!(
        RECONCILE_CURSOR,
        "reconciliation cursor (updated_at, Unix seconds), per shop and resource"
    );
    metrics::describe_counter!(
        ERRORS,
        "transient errors that restarted a Shopify task, per shop"
    );
}

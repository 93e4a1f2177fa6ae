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
pub const RECONCILE_CURSOR: &str = "tributary_shopify_reconcile_cursor_timestamp_seconds";
pub const ERRORS: &str = "tributary_shopify_errors_total";

// Salesforce CDC (label `feed`: configured `[[salesforce_cdc]]` names; `reason` fixed below).
pub const SAAS_RECEIVED: &str = "tributary_salesforce_cdc_events_received_total";
pub const SAAS_PUBLISHED: &str = "tributary_salesforce_cdc_events_published_total";
pub const SAAS_REJECTED: &str = "tributary_salesforce_cdc_events_rejected_total";
pub const SAAS_DEDUPLICATED: &str = "tributary_salesforce_cdc_events_deduplicated_total";
pub const SAAS_ECHOES: &str = "tributary_salesforce_cdc_echoes_dropped_total";
pub const SAAS_READBACKS: &str = "tributary_salesforce_cdc_gap_readbacks_total";
pub const SAAS_OVERFLOWS: &str = "tributary_salesforce_cdc_overflow_events_total";
pub const SAAS_LAG: &str = "tributary_salesforce_cdc_lag_seconds";
pub const SAAS_POSITION: &str = "tributary_salesforce_cdc_position_timestamp_seconds";
pub const SAAS_TOKENS: &str = "tributary_salesforce_cdc_tokens_total";
pub const SAAS_RESTARTS: &str = "tributary_salesforce_cdc_stream_restarts_total";
pub const SAAS_REPLAY_EXPIRED: &str = "tributary_salesforce_cdc_replay_id_expired_total";
pub const SAAS_DOMAIN_EVENTS: &str = "tributary_salesforce_cdc_domain_events_total";

// WMS lifecycle webhooks (no per-feed label: one `[[wms]]` at most).
pub const WMS_WEBHOOKS_RECEIVED: &str = "tributary_wms_webhooks_received_total";
pub const WMS_WEBHOOKS_REJECTED: &str = "tributary_wms_webhooks_rejected_total";
pub const WMS_WEBHOOKS_STORED: &str = "tributary_wms_webhooks_stored_total";
pub const WMS_WEBHOOKS_DUPLICATE: &str = "tributary_wms_webhooks_duplicate_total";
pub const WMS_DOMAIN_EVENTS: &str = "tributary_wms_domain_events_total";

// HTTP listeners (label `listener`: `shopify`, `wms`, `ops`).
pub const HTTP_REJECTED: &str = "tributary_http_rejected_total";
pub const HTTP_CONNECTIONS: &str = "tributary_http_connections";

/// Outcomes of a raw event through a domain mapping (the `outcome` label).
pub const OUTCOMES: [&str; 5] = ["published", "stale", "repeated", "ignored", "dead_letter"];
const TOPICS: [&str; 7] = [
    "orders/create",
    "orders/updated",
    "refunds/create",
    "inventory_levels/update",
    "customers/update",
    "fulfillments/create",
    "other",
];

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

pub fn describe_salesforce() {
    metrics::describe_counter!(
        SAAS_RECEIVED,
        "change events received from the Pub/Sub API, per feed"
    );
    metrics::describe_counter!(
        SAAS_PUBLISHED,
        "raw events stored in the feed's stream (read-backs included), per feed"
    );
    metrics::describe_counter!(
        SAAS_REJECTED,
        "events that could not be decoded (stored raw with the reason), per feed and reason"
    );
    metrics::describe_counter!(
        SAAS_DEDUPLICATED,
        "redeliveries JetStream dropped by Nats-Msg-Id, per feed"
    );
    metrics::describe_counter!(
        SAAS_ECHOES,
        "changes made by the bridge itself (changeOrigin client) dropped, per feed"
    );
    metrics::describe_counter!(
        SAAS_READBACKS,
        "records re-read through REST after a gap event, per feed"
    );
    metrics::describe_counter!(
        SAAS_OVERFLOWS,
        "GAP_OVERFLOW events (stored raw; not re-read), per feed"
    );
    metrics::describe_gauge!(
        SAAS_LAG,
        "now minus commitTimestamp of the last stored change, per feed"
    );
    metrics::describe_gauge!(
        SAAS_POSITION,
        "commitTimestamp (Unix seconds) of the last change whose replay id is stored, per feed"
    );
    metrics::describe_counter!(
        SAAS_TOKENS,
        "OAuth2 access tokens obtained (start, expiry, UNAUTHENTICATED), per feed"
    );
    metrics::describe_counter!(
        SAAS_RESTARTS,
        "Subscribe streams restarted, per feed and reason"
    );
    metrics::describe_counter!(
        SAAS_REPLAY_EXPIRED,
        "stored replay ids found past retention, per feed"
    );
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

/// Creates the feeds' series for the configured shops, Salesforce feeds, the WMS feed and
/// the webhook listeners at zero. Unix-time gauges (`…_timestamp_seconds`) are left out: 0
/// would read as 1970; they appear with the first position. Rejection reasons appear with
/// the first rejection.
pub fn register(config: &tributary_config::Config) {
    use metrics::{counter, gauge};
    for shop in config.shopify.iter().map(|s| s.name.clone()) {
        for topic in TOPICS {
            for name in [WEBHOOKS_RECEIVED, WEBHOOKS_STORED] {
                counter!(name, "shop" => shop.clone(), "topic" => topic).increment(0);
            }
        }
        for name in [WEBHOOKS_DUPLICATE, ERRORS] {
            counter!(name, "shop" => shop.clone()).increment(0);
        }
        gauge!(WEBHOOK_LAG, "shop" => shop.clone()).set(0.0);
        for outcome in OUTCOMES {
            counter!(DOMAIN_EVENTS, "shop" => shop.clone(), "outcome" => outcome).increment(0);
        }
        for outcome in ["ok", "error"] {
            counter!(RECONCILE_POLLS, "shop" => shop.clone(), "outcome" => outcome).increment(0);
        }
        for resource in ["orders", "customers"] {
            counter!(RECONCILE_RECOVERED, "shop" => shop.clone(), "resource" => resource)
                .increment(0);
        }
    }
    for feed in config.salesforce_cdc.iter().map(|f| f.name.clone()) {
        for name in [
            SAAS_RECEIVED,
            SAAS_PUBLISHED,
            SAAS_DEDUPLICATED,
            SAAS_ECHOES,
            SAAS_READBACKS,
            SAAS_OVERFLOWS,
            SAAS_TOKENS,
            SAAS_REPLAY_EXPIRED,
        ] {
            counter!(name, "feed" => feed.clone()).increment(0);
        }
        gauge!(SAAS_LAG, "feed" => feed.clone()).set(0.0);
        for reason in ["decode", "no_event"] {
            counter!(SAAS_REJECTED, "feed" => feed.clone(), "reason" => reason).increment(0);
        }
        for reason in ["unauthenticated", "replay_id_expired", "error", "mapper"] {
            counter!(SAAS_RESTARTS, "feed" => feed.clone(), "reason" => reason).increment(0);
        }
        for outcome in OUTCOMES {
            counter!(SAAS_DOMAIN_EVENTS, "feed" => feed.clone(), "outcome" => outcome).increment(0);
        }
    }
    let mut listeners = vec!["ops"];
    if !config.shopify.is_empty() {
        listeners.push("shopify");
    }
    if config.wms_feed().is_some() {
        listeners.push("wms");
        for name in [
            WMS_WEBHOOKS_RECEIVED,
            WMS_WEBHOOKS_STORED,
            WMS_WEBHOOKS_DUPLICATE,
        ] {
            counter!(name).increment(0);
        }
        for outcome in OUTCOMES {
            counter!(WMS_DOMAIN_EVENTS, "outcome" => outcome).increment(0);
        }
    }
    for listener in listeners {
        gauge!(HTTP_CONNECTIONS, "listener" => listener).set(0.0);
    }
}

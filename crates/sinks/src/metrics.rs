//! Every metric of the sink workers, named once. Labels are bounded: `sink` (configured
//! sinks), `entity` (entities of the retail model), `outcome` (a fixed set).

pub const APPLIED: &str = "tributary_sink_applied_total";
pub const SKIPPED: &str = "tributary_sink_skipped_total";
pub const RETRIES: &str = "tributary_sink_retries_total";
pub const THROTTLE_WAIT: &str = "tributary_sink_throttle_wait_seconds";
pub const DEAD_LETTERS: &str = "tributary_sink_dead_letters_total";
pub const APPLY_LATENCY: &str = "tributary_sink_apply_latency_seconds";
pub const PENDING: &str = "tributary_sink_consumer_pending";
pub const DEAD_LETTER_DEPTH: &str = "tributary_sink_dead_letter_depth";
pub const DEAD_LETTER_OLDEST_AGE: &str = "tributary_sink_dead_letter_oldest_age_seconds";
pub const ERRORS: &str = "tributary_sink_errors_total";
pub const SF_REQUESTS: &str = "tributary_sink_salesforce_requests_total";
pub const SF_BATCH_SIZE: &str = "tributary_sink_salesforce_batch_records";
pub const BATCH_TRIGGERS: &str = "tributary_sink_batch_triggers_total";
pub const SF_TOKENS: &str = "tributary_sink_salesforce_tokens_total";
pub const SF_API_USAGE: &str = "tributary_sink_salesforce_api_usage_ratio";
pub const REPAIRS: &str = "tributary_sink_repairs_total";
pub const LAG: &str = "tributary_sink_lag_seconds";
pub const SHOPIFY_STOCK_BATCH: &str = "tributary_sink_shopify_inventory_batch_fields";

/// Every value of the `trigger` label (`batch::trigger`).
pub const TRIGGERS: [&str; 3] = ["full", "settled", "linger"];

pub fn describe() {
    metrics::describe_gauge!(
        DEAD_LETTER_DEPTH,
        "Events of the sink parked in the dead-letter stream now (sampled every 5 s)"
    );
    metrics::describe_gauge!(
        DEAD_LETTER_OLDEST_AGE,
        metrics::Unit::Seconds,
        "Age of the sink's oldest dead letter still parked, 0 with none (sampled every 5 s)"
    );
    metrics::describe_counter!(
        APPLIED,
        "domain events the target confirmed, per sink and entity"
    );
    metrics::describe_counter!(
        SKIPPED,
        "events acked without a write, per sink, entity and reason (stale version, not for this target)"
    );
    metrics::describe_counter!(
        RETRIES,
        "attempts retried after a transient failure, per sink"
    );
    metrics::describe_histogram!(
        THROTTLE_WAIT,
        metrics::Unit::Seconds,
        "waits because the target throttled or the Shopify cost bucket was paced, per sink (the sum is the time waited)"
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "events the target refused for good, sent to the dead-letter stream, per sink"
    );
    metrics::describe_histogram!(
        APPLY_LATENCY,
        "event time at the source to the target's confirmation, per sink"
    );
    metrics::describe_gauge!(
        PENDING,
        "messages of the stream not yet delivered to the sink's consumer"
    );
    metrics::describe_counter!(
        ERRORS,
        "NATS errors that restarted a sink's consumer, per sink"
    );
    metrics::describe_counter!(
        SF_REQUESTS,
        "upsert requests sent to Salesforce, per kind (single, collection)"
    );
    metrics::describe_histogram!(
        SF_BATCH_SIZE,
        "records per sObject Collections upsert request"
    );
    metrics::describe_counter!(
        BATCH_TRIGGERS,
        "collection requests sent, per trigger (full, lanes_settled, linger)"
    );
    metrics::describe_counter!(
        SF_TOKENS,
        "OAuth2 access tokens obtained (start, age, 401 INVALID_SESSION_ID)"
    );
    metrics::describe_histogram!(
        SHOPIFY_STOCK_BATCH,
        "inventorySetQuantities fields (one per event) per GraphQL document of several"
    );
    metrics::describe_counter!(
        REPAIRS,
        "inventory repairs (from the reconciliation) the sink applied, per sink; the reason is in the entity's record"
    );
    metrics::describe_gauge!(
        LAG,
        "age of the oldest event a sink consumer has received and not yet handled (0: none), per sink, priority class (high, low; all for a sink with one class) and partition"
    );
    metrics::describe_gauge!(
        SF_API_USAGE,
        "daily API requests used / limit, from the last Sforce-Limit-Info header"
    );
}

/// The entities a sink's consumer receives: the subject token after the prefix of each of
/// its filter subjects (`retail.v1.order.>` → `order`).
fn entities(cfg: &tributary_config::SinksConfig, sink: &str) -> Vec<String> {
    let prefix = format!("{}.", cfg.subject_prefix);
    let mut out: Vec<String> = crate::filter_subjects(cfg, sink)
        .iter()
        .filter_map(|f| {
            f.strip_prefix(&prefix)?
                .split('.')
                .next()
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Creates every configured sink's series at zero: a sink that has applied nothing since
/// start has `tributary_sink_applied_total` 0, so TributarySinkStalled can fire for it.
pub fn register(config: &tributary_config::Config) {
    use metrics::{counter, gauge};
    let Some(cfg) = &config.sinks else {
        return;
    };
    for sink in crate::SINK_NAMES.iter().copied() {
        let consumers = crate::partition_consumers(cfg, sink);
        if consumers.is_empty() {
            continue;
        }
        for name in [RETRIES, DEAD_LETTERS, ERRORS, REPAIRS] {
            counter!(name, "sink" => sink).increment(0);
        }
        gauge!(DEAD_LETTER_DEPTH, "sink" => sink).set(0.0);
        gauge!(DEAD_LETTER_OLDEST_AGE, "sink" => sink).set(0.0);
        for consumer in &consumers {
            gauge!(PENDING, "sink" => sink, "partition" => consumer.label(), "class" => consumer.class_label())
                .set(0.0);
            gauge!(LAG, "sink" => sink, "class" => consumer.class_label(), "partition" => consumer.label())
                .set(0.0);
        }
        for entity in entities(cfg, sink) {
            counter!(APPLIED, "sink" => sink, "entity" => entity.clone()).increment(0);
            for reason in ["stale_version", "recorded", "held"] {
                counter!(SKIPPED, "sink" => sink, "entity" => entity.clone(), "reason" => reason)
                    .increment(0);
            }
        }
        if sink != "wms" {
            for trigger in TRIGGERS {
                counter!(BATCH_TRIGGERS, "sink" => sink, "trigger" => trigger).increment(0);
            }
        }
        if sink == "salesforce" {
            for kind in ["single", "collection"] {
                counter!(SF_REQUESTS, "sink" => sink, "kind" => kind).increment(0);
            }
            counter!(SF_TOKENS, "sink" => sink).increment(0);
            gauge!(SF_API_USAGE, "sink" => sink).set(0.0);
        }
    }
}

//! Every metric of the domain stage, named once. Labels are bounded: `source` (configured
//! sources), `mapping` (configured mappings), `entity` (configured entities).

pub const CHANGES: &str = "tributary_domain_changes_total";
pub const EVENTS: &str = "tributary_domain_events_total";
pub const DEAD_LETTERS: &str = "tributary_domain_dead_letters_total";
pub const REDELIVERIES_SKIPPED: &str = "tributary_domain_redeliveries_skipped_total";
pub const OWNED_FIELDS_KEPT: &str = "tributary_domain_owned_fields_kept_total";
pub const ERRORS: &str = "tributary_domain_errors_total";
pub const STATE_CONFLICTS: &str = "tributary_domain_state_conflicts_total";
pub const CONSUMER_RESETS: &str = "tributary_domain_consumer_resets_total";
pub const CONSUMER_PENDING: &str = "tributary_domain_consumer_pending";
pub const BATCH_SIZE: &str = "tributary_domain_batch_messages";
pub const BATCH_SECONDS: &str = "tributary_domain_batch_seconds";

pub fn describe() {
    metrics::describe_counter!(CHANGES, "CDC changes the domain stage consumed, per source");
    metrics::describe_counter!(
        EVENTS,
        "domain events published and acknowledged, per mapping"
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "changes that could not be mapped and went to the dead-letter stream, per mapping"
    );
    metrics::describe_counter!(
        REDELIVERIES_SKIPPED,
        "redelivered changes whose events were already published, per source"
    );
    metrics::describe_counter!(
        OWNED_FIELDS_KEPT,
        "field values from a non-authoritative system that were not applied, per entity"
    );
    metrics::describe_counter!(
        STATE_CONFLICTS,
        "entity state writes that lost a compare-and-set to another writer and were mapped again, per entity"
    );
    metrics::describe_counter!(
        CONSUMER_RESETS,
        "times a source's consumer was recreated at its ack floor to redeliver unacked changes at once"
    );
    metrics::describe_gauge!(
        CONSUMER_PENDING,
        "CDC messages of a source's stream not yet delivered to the domain stage (sampled every 5 s)"
    );
    metrics::describe_histogram!(
        BATCH_SIZE,
        "CDC messages the domain stage mapped and acked together"
    );
    metrics::describe_histogram!(
        BATCH_SECONDS,
        metrics::Unit::Seconds,
        "time to store, publish and ack one batch of the domain stage"
    );
    metrics::describe_counter!(
        ERRORS,
        "transient errors that restarted a source's domain task"
    );
}

/// Creates the stage's series for the configured sources, mappings and entities at zero, so
/// that a mapping that has published nothing yet has a series to alert on.
pub fn register(config: &tributary_config::Config) {
    use metrics::counter;
    let Some(cfg) = &config.domain else {
        return;
    };
    let sources = config
        .sources
        .iter()
        .filter(|s| cfg.mappings.iter().any(|m| m.source == s.name));
    for source in sources {
        for name in [CHANGES, REDELIVERIES_SKIPPED, ERRORS] {
            counter!(name, "source" => source.name.clone()).increment(0);
        }
        metrics::gauge!(CONSUMER_PENDING, "source" => source.name.clone()).set(0.0);
        let stream = config.nats.resolved_stream(source).name;
        counter!(CONSUMER_RESETS, "stream" => stream).increment(0);
    }
    for mapping in &cfg.mappings {
        for name in [EVENTS, DEAD_LETTERS] {
            counter!(name, "mapping" => mapping.name.clone()).increment(0);
        }
        for name in [OWNED_FIELDS_KEPT, STATE_CONFLICTS] {
            counter!(name, "entity" => mapping.entity.clone()).increment(0);
        }
    }
}

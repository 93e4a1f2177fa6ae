//! The dead letter of a change that a mapping cannot map: one shape for the database
//! mappings and the SaaS feeds, so `tributary dlq` and consumers of `dlq.domain.>` read both.

use async_nats::header::HeaderMap;

/// The subject prefix of the domain dead-letter stream.
pub const PREFIX: &str = "dlq.domain";

/// `dlq.domain.<mapping>`.
pub fn subject(mapping: &str) -> String {
    format!("{PREFIX}.{}", tributary_nats::subject::token(mapping))
}

/// Headers of a dead letter: `Nats-Msg-Id` = `<event id>/<mapping>/dlq` keeps a redelivered
/// change from being parked twice; the reason is folded onto one line.
pub fn headers(mapping: &str, event_id: &str, reason: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{event_id}/{mapping}/dlq").as_str(),
    );
    headers.insert("Tributary-Mapping", mapping);
    headers.insert(
        "Tributary-Reason",
        reason.replace(['\r', '\n'], " ").as_str(),
    );
    headers.insert("Tributary-Source-Event-Id", event_id);
    headers
}

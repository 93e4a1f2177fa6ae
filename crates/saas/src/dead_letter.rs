//! Parking a raw SaaS event that cannot be mapped: published to the domain dead-letter stream
//! (`dlq.domain.<mapping>`, as the database mappings do) with the reason, and the feed goes on.

use async_nats::jetstream;
use tracing::warn;

use crate::SaasError;

/// The subject prefix the domain stage's dead-letter stream listens on.
pub const PREFIX: &str = "dlq.domain";

/// Publishes `payload` (the raw change event) to `dlq.domain.<mapping>` and waits for the ack;
/// the id `<event id>/<mapping>/dlq` keeps a redelivered event from being parked twice.
pub async fn park(
    js: &jetstream::Context,
    feed: &str,
    mapping: &str,
    event_id: &str,
    payload: &[u8],
    reason: &str,
) -> Result<(), SaasError> {
    warn!(
        feed,
        mapping, event_id, reason, "event cannot be mapped: dead-lettered"
    );
    let mut headers = async_nats::header::HeaderMap::new();
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
    let subject = format!("{PREFIX}.{}", tributary_nats::subject::token(mapping));
    js.publish_with_headers(subject.clone(), headers, payload.to_vec().into())
        .await
        .map_err(|e| SaasError::nats(format!("publish to {subject}"), e))?
        .await
        .map_err(|e| SaasError::nats(format!("publish to {subject}"), e))?;
    Ok(())
}

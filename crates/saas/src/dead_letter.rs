//! Parking a raw SaaS event that cannot be mapped: published to the domain dead-letter stream
//! (`dlq.domain.<mapping>`, as the database mappings do) with the reason, and the feed goes on.

use async_nats::jetstream;
use tracing::warn;

use crate::SaasError;

/// The subject prefix the domain stage's dead-letter stream listens on.
pub const PREFIX: &str = tributary_domain::dead_letter::PREFIX;

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
    let headers = tributary_domain::dead_letter::headers(mapping, event_id, reason);
    let subject = tributary_domain::dead_letter::subject(mapping);
    js.publish_with_headers(subject.clone(), headers, payload.to_vec().into())
        .await
        .map_err(|e| SaasError::nats(format!("publish to {subject}"), e))?
        .await
        .map_err(|e| SaasError::nats(format!("publish to {subject}"), e))?;
    Ok(())
}

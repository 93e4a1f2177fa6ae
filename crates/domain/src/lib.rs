//! The domain stage: canonical `tributary.retail.v1` events from row changes.
//!
//! Declarative mappings (`[domain]` in the configuration, types in `tributary_config`) say
//! which table feeds which entity event, field by field. [`DomainStage`] consumes the CDC
//! streams, applies them, and publishes `DomainEvent`s on `retail.v1.<entity>.<event>`;
//! changes that cannot be mapped go to the dead-letter stream with the reason.

mod convert;
pub mod dead_letter;
mod error;
mod external;
mod mapping;
pub mod metrics;
mod schema;
mod stage;
mod state;

pub use error::{DomainError, MapError};
pub use external::{Applied, ExternalEvent, ExternalFeed};
pub use stage::DomainStage;
/// Entity state as the domain stage stores it (read by the inventory reconciliation).
pub use state::{EntityState, LastEvent};

use async_nats::jetstream;

/// The domain stream and its dead-letter stream of `cfg`, as `component` creates them (the
/// domain stage, or a SaaS feed publishing domain events).
pub fn streams(
    nats: &tributary_config::NatsConfig,
    cfg: &tributary_config::DomainConfig,
    component: &str,
) -> Vec<tributary_nats::StreamSpec> {
    [
        (&cfg.stream, cfg.subject_prefix.as_str(), "domain.stream"),
        (
            &cfg.dead_letter_stream,
            dead_letter::PREFIX,
            "domain.dead_letter_stream",
        ),
    ]
    .into_iter()
    .map(|(name, subject, name_key)| tributary_nats::StreamSpec {
        settings: nats.stream_named(name, None),
        subjects: vec![format!("{subject}.>")],
        component: component.to_string(),
        name_key,
    })
    .collect()
}

/// Name of the descriptor set object in the schema bucket.
pub const DESCRIPTOR_OBJECT: &str = "tributary.binpb";

/// Publishes every Tributary `.proto` as a `FileDescriptorSet` to the object store
/// `bucket`, so that consumers can fetch the schemas at run time.
pub async fn publish_descriptors(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<(), DomainError> {
    let store = tributary_nats::kv::open_object_store(
        js,
        bucket,
        "Tributary protobuf descriptor sets",
        "domain",
        replicas,
    )
    .await?;
    let mut data = tributary_proto::DESCRIPTOR_SET;
    store
        .put(DESCRIPTOR_OBJECT, &mut data)
        .await
        .map_err(|e| DomainError::nats(format!("object {bucket}/{DESCRIPTOR_OBJECT}"), e))?;
    Ok(())
}

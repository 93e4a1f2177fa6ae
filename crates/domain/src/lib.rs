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

use async_nats::jetstream::{self, object_store};

/// Name of the descriptor set object in the schema bucket.
pub const DESCRIPTOR_OBJECT: &str = "tributary.binpb";

/// Publishes every Tributary `.proto` as a `FileDescriptorSet` to the object store
/// `bucket`, so that consumers can fetch the schemas at run time.
pub async fn publish_descriptors(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<(), DomainError> {
    let store = match js.get_object_store(bucket).await {
        Ok(store) => store,
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: bucket.to_string(),
                description: Some("Tributary protobuf descriptor sets".into()),
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| DomainError::nats(format!("object store {bucket}"), e))?,
    };
    let mut data = tributary_proto::DESCRIPTOR_SET;
    store
        .put(DESCRIPTOR_OBJECT, &mut data)
        .await
        .map_err(|e| DomainError::nats(format!("object {bucket}/{DESCRIPTOR_OBJECT}"), e))?;
    Ok(())
}

//! A CDC payload as the mappings read it: decoded, with its schema reference resolved
//! (`schema = "reference"` sources) so that `columns` and `key_columns` are filled in.

use bytes::Bytes;
use prost::Message as _;
use tributary_core::{Classify, ErrorClass};
use tributary_nats::schemas::SchemaResolver;
use tributary_proto::cdc::v1::ChangeEvent;

use crate::{DomainError, MapError};

/// `Ok(Err)`: this change cannot be mapped (dead letter); `Err`: the stage stops or restarts
/// (a bucket that does not answer is retried rather than dead-lettering the change).
pub(super) async fn change(
    schemas: &SchemaResolver,
    payload: Bytes,
) -> Result<Result<ChangeEvent, MapError>, DomainError> {
    let mut change = match ChangeEvent::decode(payload) {
        Ok(c) => c,
        Err(e) => return Ok(Err(MapError::Decode(e.to_string()))),
    };
    match schemas.resolve(&mut change).await {
        Ok(()) => Ok(Ok(change)),
        Err(e) if matches!(e.class(), ErrorClass::Definite { .. }) => {
            Ok(Err(MapError::Decode(e.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

//! The domain stage starts after the sources' streams exist: each source task creates its
//! stream when its session starts, so a consumer started with the bridge waits for it instead
//! of failing and being restarted (a quiet start, and the same under `[ha]`, where the
//! source may run on another replica).

use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream::Stream};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::DomainError;

/// How often the stream is looked for while it does not exist.
const POLL: Duration = Duration::from_millis(200);

/// The stream `name` once it exists; `None` when `stop` is cancelled first.
pub(super) async fn source_stream(
    js: &jetstream::Context,
    name: &str,
    stop: &CancellationToken,
) -> Result<Option<Stream>, DomainError> {
    let mut announced = false;
    loop {
        match js.get_stream(name).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(e) if is_not_found(e.kind()) => {
                if !announced {
                    info!(stream = name, "waiting for the source to create its stream");
                    announced = true;
                }
            }
            Err(e) => return Err(DomainError::nats(format!("stream {name}"), e)),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(None),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

fn is_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

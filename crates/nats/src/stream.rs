use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tributary_config::{ResolvedStream, StorageKind};

use crate::NatsError;

/// Creates the stream or updates its settings to the configured ones.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &ResolvedStream,
    subjects: Vec<String>,
) -> Result<stream::Stream, NatsError> {
    let err = |message: String| NatsError::Stream {
        stream: settings.name.clone(),
        message,
    };
    let config = stream::Config {
        name: settings.name.clone(),
        subjects,
        storage: match settings.storage {
            StorageKind::File => stream::StorageType::File,
            StorageKind::Memory => stream::StorageType::Memory,
        },
        num_replicas: settings.replicas,
        max_age: Duration::from_secs(settings.max_age_secs),
        max_bytes: settings.max_bytes,
        duplicate_window: Duration::from_secs(settings.duplicate_window_secs),
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| err(e.to_string()))?;
    js.get_stream(&settings.name)
        .await
        .map_err(|e| err(e.to_string()))
}

/// The last sequence of the stream and the `Nats-Msg-Id` of the message stored there
/// (None when the stream is empty or that message has aged out).
pub async fn last_message_id(
    stream: &mut stream::Stream,
) -> Result<(u64, Option<String>), NatsError> {
    let name = stream.cached_info().config.name.clone();
    let info = stream.info().await.map_err(|e| NatsError::Stream {
        stream: name.clone(),
        message: e.to_string(),
    })?;
    let last = info.state.last_sequence;
    if last == 0 || info.state.messages == 0 {
        return Ok((last, None));
    }
    match stream.get_raw_message(last).await {
        Ok(msg) => Ok((
            last,
            msg.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_string()),
        )),
        Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok((last, None)),
        Err(e) => Err(NatsError::Stream {
            stream: name,
            message: e.to_string(),
        }),
    }
}

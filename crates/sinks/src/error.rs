//! Errors of the sink workers, classified by what the runtime does with them.

use std::time::Duration;

use tributary_core::{Classify, ErrorClass};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Start-up and infrastructure errors (NATS, configuration, stored records). An event the
/// target refuses is not one of these: it is an [`ApplyError`].
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink configuration `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("NATS ({context}): {source}")]
    Nats {
        context: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Stream(#[from] tributary_nats::NatsError),
    /// A stored entity record that does not decode: restarting would read it again.
    #[error("sink state {key} is unreadable: {source}")]
    CorruptState {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The ERP database of the inbox sink (start-up checks).
    #[error("ERP database ({context}): {source}")]
    Erp {
        context: String,
        #[source]
        source: tributary_postgres::PgError,
    },
    /// This replica no longer holds the sink's lease (HA): nothing more is applied or acked.
    #[error(transparent)]
    Fenced(#[from] tributary_core::Fenced),
}

impl Classify for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            SinkError::Config { .. } => ErrorClass::CONFIG,
            SinkError::Nats { .. } => ErrorClass::TRANSIENT,
            SinkError::Stream(e) => Classify::class(e),
            SinkError::CorruptState { .. } => ErrorClass::CORRUPT_STATE,
            SinkError::Erp { source, .. } => Classify::class(source),
            SinkError::Fenced(e) => e.class(),
        }
    }
}

impl SinkError {
    pub(crate) fn nats(context: impl Into<String>, e: impl Into<BoxError>) -> Self {
        SinkError::Nats {
            context: context.into(),
            source: e.into(),
        }
    }
    pub(crate) fn erp(context: impl Into<String>, source: tributary_postgres::PgError) -> Self {
        SinkError::Erp {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        SinkError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The outcome of one failed attempt to apply an event to a target.
#[derive(Debug, Clone)]
pub enum ApplyError {
    /// Worth retrying: 5xx, timeouts, connection errors, 429 / THROTTLED, 409 in flight.
    /// `retry_after` is the target's hint (Retry-After, the cost bucket's refill time).
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// The target refused the event for good (validation, other 4xx, userErrors): it goes
    /// to the dead-letter stream with `reason` and the target's answer in `body`.
    Definite { reason: String, body: String },
    /// The event needs another entity's event that has not been applied yet (a fulfilment
    /// before its order): the worker hands it back for redelivery after `wait_retry_ms`
    /// without holding its lane, and dead-letters it after `max_wait_secs`.
    Waiting { reason: String },
}

impl ApplyError {
    pub(crate) fn transient(reason: impl Into<String>) -> Self {
        ApplyError::Transient {
            reason: reason.into(),
            retry_after: None,
            throttled: false,
        }
    }
    pub(crate) fn definite(reason: impl Into<String>, body: impl Into<String>) -> Self {
        ApplyError::Definite {
            reason: reason.into(),
            body: body.into(),
        }
    }
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Transient { reason, .. } => write!(f, "transient: {reason}"),
            ApplyError::Definite { reason, .. } => write!(f, "definite: {reason}"),
            ApplyError::Waiting { reason } => write!(f, "waiting: {reason}"),
        }
    }
}

use tributary_core::{Classify, ErrorClass};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors that restart or stop the tracker. An event the tracker does not follow, or one
/// that does not decode, is not one: it is acked and counted (`outcome="ignored"`).
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("NATS {what}: {source}")]
    Nats {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Stream(#[from] tributary_nats::NatsError),
    /// A process record that does not decode: restarting would read it again.
    #[error("tracker state {key} is unreadable: {message}")]
    CorruptState { key: String, message: String },
    /// This replica no longer holds the unit's lease (HA): nothing more is written or acked.
    #[error(transparent)]
    Fenced(#[from] tributary_core::Fenced),
}

impl Classify for TrackerError {
    fn class(&self) -> ErrorClass {
        match self {
            TrackerError::Nats { .. } => ErrorClass::TRANSIENT,
            TrackerError::Stream(e) => Classify::class(e),
            TrackerError::CorruptState { .. } => ErrorClass::CORRUPT_STATE,
            TrackerError::Fenced(e) => e.class(),
        }
    }
}

impl TrackerError {
    pub(crate) fn nats(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        TrackerError::Nats {
            what: what.into(),
            source: e.into(),
        }
    }
}

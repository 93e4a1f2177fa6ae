use tributary_core::{Classify, ErrorClass};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of a sweep. A target that cannot be read (down, throttling past the retries) is
/// one too: the sweep is abandoned and counted, the component goes on to the next one.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("NATS {what}: {source}")]
    Nats {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Stream(#[from] tributary_nats::NatsError),
    #[error(transparent)]
    Sink(#[from] tributary_sinks::SinkError),
    /// Reading a target's stock failed (after retries for throttling and transient errors).
    #[error("reading stock from {target}: {reason}")]
    Target {
        target: &'static str,
        reason: String,
    },
    /// A stored state (domain entity, sweep report) that does not decode.
    #[error("state {key} is unreadable: {message}")]
    CorruptState { key: String, message: String },
    #[error(transparent)]
    Fenced(#[from] tributary_core::Fenced),
}

impl Classify for ReconcileError {
    fn class(&self) -> ErrorClass {
        match self {
            ReconcileError::Nats { .. } | ReconcileError::Target { .. } => ErrorClass::TRANSIENT,
            ReconcileError::Stream(e) => Classify::class(e),
            ReconcileError::Sink(e) => Classify::class(e),
            ReconcileError::CorruptState { .. } => ErrorClass::CORRUPT_STATE,
            ReconcileError::Fenced(e) => e.class(),
        }
    }
}

impl ReconcileError {
    pub(crate) fn nats(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        ReconcileError::Nats {
            what: what.into(),
            source: e.into(),
        }
    }
}

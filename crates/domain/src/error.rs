use tributary_core::{Classify, ErrorClass};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors that stop or restart the domain stage (configuration, NATS, corrupt state). A
/// change that cannot be mapped is not one of these: it is a [`MapError`] and goes to the
/// dead-letter stream.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("protobuf descriptors: {0}")]
    Descriptors(String),
    #[error("NATS {what}: {source}")]
    Nats {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Stream(#[from] tributary_nats::NatsError),
    /// An entity-state record that does not decode: restarting would read it again.
    #[error("state of {key} is unreadable: {message}")]
    CorruptState { key: String, message: String },
    /// A schema reference that cannot be resolved now (bucket unreachable) or ever (corrupt).
    #[error(transparent)]
    Schema(#[from] tributary_nats::schemas::SchemaError),
    /// This replica no longer holds the unit's lease (HA): nothing more is written or acked.
    #[error(transparent)]
    Fenced(#[from] tributary_core::Fenced),
}

impl Classify for DomainError {
    fn class(&self) -> ErrorClass {
        match self {
            DomainError::Config { .. } | DomainError::Descriptors(_) => ErrorClass::CONFIG,
            DomainError::Nats { .. } => ErrorClass::TRANSIENT,
            DomainError::Stream(e) => Classify::class(e),
            DomainError::CorruptState { .. } => ErrorClass::CORRUPT_STATE,
            DomainError::Fenced(e) => e.class(),
            DomainError::Schema(e) => e.class(),
        }
    }
}

impl DomainError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn nats(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        DomainError::Nats {
            what: what.into(),
            source: e.into(),
        }
    }
}

/// Why one change could not be mapped (a definite error: retrying cannot help). The text is
/// the `Tributary-Reason` header of the dead letter.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("undecodable change event: {0}")]
    Decode(String),
    #[error("key column `{0}` is missing or NULL")]
    MissingKey(String),
    #[error("required column `{0}` is missing or NULL")]
    MissingValue(String),
    #[error("column `{column}` ({value}) cannot be converted to {target} for field `{field}`")]
    Unconvertible {
        column: String,
        value: String,
        target: String,
        field: String,
    },
    #[error("parent row {table} {key} not found within {waited_ms} ms")]
    MissingParent {
        table: String,
        key: String,
        waited_ms: u64,
    },
    #[error("the change has no row image to map")]
    NoRow,
}

/// What can go wrong while coordinating ownership.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// The lease bucket could not be opened or created.
    #[error("lease bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: tributary_nats::NatsError,
    },
    /// A KV operation failed (usually transient: a leader election, a timeout).
    #[error("lease {key}: {op}: {source}")]
    Kv {
        key: String,
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored lease or member record is not what this version writes.
    #[error("lease {key}: unreadable record: {source}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A unit name that cannot be a KV key even after escaping.
    #[error("unit name {0:?} is empty")]
    InvalidUnit(String),
    /// Configuration that cannot work (e.g. a TTL too short to renew in).
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    /// A unit failed with an error its own supervision does not handle.
    #[error("unit {unit} failed: {source}")]
    Unit {
        unit: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl HaError {
    pub(crate) fn kv(
        key: &str,
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        HaError::Kv {
            key: key.to_string(),
            op,
            source: Box::new(source),
        }
    }
}

impl tributary_core::Classify for HaError {
    fn class(&self) -> tributary_core::ErrorClass {
        use tributary_core::ErrorClass;
        match self {
            HaError::Bucket { source, .. } => tributary_core::Classify::class(source),
            // A KV request that failed or timed out: a leader election, a node restarting.
            HaError::Kv { .. } => ErrorClass::TRANSIENT,
            HaError::Record { .. } => ErrorClass::CORRUPT_STATE,
            HaError::InvalidUnit(_) | HaError::Config { .. } => ErrorClass::CONFIG,
            // The unit's own supervision already decided that it cannot go on.
            HaError::Unit { .. } => ErrorClass::Definite {
                reason: "unit_failed",
            },
        }
    }
}

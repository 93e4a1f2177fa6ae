use tributary_core::{Classify, ErrorClass};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors that stop a SaaS feed at start-up or restart one of its tasks.
#[derive(Debug, thiserror::Error)]
pub enum SaasError {
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("NATS {what}: {source}")]
    Nats {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("{what}: gRPC {code}: {message}")]
    Grpc {
        what: String,
        code: String,
        message: String,
    },
    /// The operator has to choose (`on_replay_id_expired`); never skipped silently.
    #[error(
        "salesforce_cdc `{feed}`, topic {topic}: the stored replay id is no longer retained by \
         Salesforce (older than its 72 h retention, or unknown to the org), so the changes between \
         it and the oldest retained event cannot be read. Set on_replay_id_expired = \"earliest\" \
         (re-read everything still retained) or \"latest\" (new changes only, accepting the loss) \
         in the [[salesforce_cdc]] block, reconcile the records if needed, and restart"
    )]
    ReplayIdExpired { feed: String, topic: String },
    #[error(transparent)]
    Stream(#[from] tributary_nats::NatsError),
    #[error(transparent)]
    Domain(#[from] tributary_domain::DomainError),
    /// Under `[ha]`: this replica no longer holds the unit's lease; it must not act.
    #[error(transparent)]
    Fenced(#[from] tributary_core::Fenced),
    /// One of the feed's tasks stopped on an error a restart cannot fix.
    #[error(transparent)]
    Stopped(#[from] tributary_core::Stopped),
}

impl SaasError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        SaasError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn nats(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        SaasError::Nats {
            what: what.into(),
            source: e.into(),
        }
    }

    pub(crate) fn http(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        SaasError::Http {
            what: what.into(),
            source: e.into(),
        }
    }
}

impl Classify for SaasError {
    fn class(&self) -> ErrorClass {
        match self {
            SaasError::Config { .. } => ErrorClass::CONFIG,
            // The operator has to choose `on_replay_id_expired`.
            SaasError::ReplayIdExpired { .. } => ErrorClass::CONFIG,
            SaasError::Nats { .. } | SaasError::Http { .. } => ErrorClass::TRANSIENT,
            // A request the Pub/Sub API will refuse again (an unknown topic, a bad replay id).
            SaasError::Grpc { code, .. }
                if matches!(
                    code.as_str(),
                    "InvalidArgument" | "NotFound" | "PermissionDenied"
                ) =>
            {
                ErrorClass::Definite { reason: "grpc" }
            }
            SaasError::Grpc { .. } => ErrorClass::TRANSIENT,
            SaasError::Stream(e) => Classify::class(e),
            SaasError::Domain(e) => e.class(),
            SaasError::Stopped(e) => e.class(),
            SaasError::Fenced(e) => e.class(),
        }
    }
}

/// Errors that stop a SaaS feed at start-up or restart one of its tasks.
#[derive(Debug, thiserror::Error)]
pub enum SaasError {
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("NATS {what}: {message}")]
    Nats { what: String, message: String },
    #[error("{what}: {message}")]
    Http { what: String, message: String },
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
}

impl SaasError {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        SaasError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        SaasError::Nats {
            what: what.into(),
            message: e.to_string(),
        }
    }

    pub(crate) fn http(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        SaasError::Http {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// Errors that stop a SaaS feed at start-up or restart one of its tasks.
#[derive(Debug, thiserror::Error)]
pub enum SaasError {
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("NATS {what}: {message}")]
    Nats { what: String, message: String },
    #[error("{what}: {message}")]
    Http { what: String, message: String },
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

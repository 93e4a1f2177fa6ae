use tributary_nats::NatsError;
use tributary_postgres::PgError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("source {source_name}: {error}")]
    Postgres {
        source_name: String,
        #[source]
        error: PgError,
    },
    #[error("source {source_name}: {error}")]
    Nats {
        source_name: String,
        #[source]
        error: NatsError,
    },
    #[error("source {source_name}: {message}")]
    Fatal {
        source_name: String,
        message: String,
    },
    #[error("source {source_name}: publisher stopped: {message}")]
    PublisherGone {
        source_name: String,
        message: String,
    },
}

impl PipelineError {
    /// Transient errors are retried with backoff; the others stop the source.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Postgres { error, .. } => error.is_transient(),
            PipelineError::Nats { error, .. } => error.is_transient(),
            PipelineError::Fatal { .. } => false,
            PipelineError::PublisherGone { .. } => true,
        }
    }

    pub fn class(&self) -> &'static str {
        match self {
            PipelineError::Postgres { error, .. } => error.class(),
            PipelineError::Nats { error, .. } => error.class(),
            PipelineError::Fatal { .. } => "fatal",
            PipelineError::PublisherGone { .. } => "publisher",
        }
    }
}

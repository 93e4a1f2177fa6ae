use tributary_core::{Classify, ErrorClass};
use tributary_nats::NatsError;
use tributary_postgres::PgError;

use crate::snapshot_state::StateError;

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
    /// Snapshot progress in KV: a bucket that does not answer is retried, an unreadable
    /// record stops the source.
    #[error("source {source_name}: {error}")]
    SnapshotState {
        source_name: String,
        #[source]
        error: StateError,
    },
    /// A configuration the database contradicts (publication missing or not covering the
    /// tables, a secret that does not resolve) or a stream the source cannot continue
    /// (an unknown relation, a spool that cannot be written): an operator must act.
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
    /// Storing a relation schema (`schema = "reference"`) before the events naming it.
    #[error("source {source_name}: {error}")]
    Schema {
        source_name: String,
        #[source]
        error: tributary_nats::schemas::SchemaError,
    },
    /// This replica no longer holds the source's lease: nothing more is published or confirmed.
    #[error("source {source_name}: {error}")]
    Fenced {
        source_name: String,
        #[source]
        error: tributary_core::Fenced,
    },
}

impl PipelineError {
    /// Transient errors are retried with backoff; the others stop the source.
    pub fn is_transient(&self) -> bool {
        Classify::class(self).is_transient()
    }

    /// A short, bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            PipelineError::Postgres { error, .. } => error.class(),
            PipelineError::Nats { error, .. } => error.class(),
            PipelineError::SnapshotState { .. } => "snapshot_state",
            PipelineError::Fatal { .. } => "fatal",
            PipelineError::PublisherGone { .. } => "publisher",
            PipelineError::Fenced { .. } => "fenced",
            PipelineError::Schema { .. } => "schema",
        }
    }
}

impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Postgres { error, .. } => Classify::class(error),
            PipelineError::Nats { error, .. } => Classify::class(error),
            PipelineError::SnapshotState { error, .. } => error.class(),
            PipelineError::Fatal { .. } => ErrorClass::CONFIG,
            PipelineError::PublisherGone { .. } => ErrorClass::TRANSIENT,
            PipelineError::Fenced { error, .. } => error.class(),
            PipelineError::Schema { error, .. } => error.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_state(error: StateError) -> PipelineError {
        PipelineError::SnapshotState {
            source_name: "erp".into(),
            error,
        }
    }

    /// A KV timeout while a snapshot records its progress used to stop the source for good
    /// (`Fatal`); it is retried now, and only an unreadable record stops the source.
    #[test]
    fn a_snapshot_state_kv_hiccup_is_retried_a_corrupt_record_is_not() {
        let hiccup = snapshot_state(StateError::Kv(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        ))));
        assert!(hiccup.is_transient());
        assert!(std::error::Error::source(&hiccup).is_some(), "cause kept");

        let garbage = serde_json::from_slice::<crate::SnapshotState>(b"{").expect_err("garbage");
        let corrupt = snapshot_state(StateError::Corrupt {
            source_name: "erp".into(),
            error: garbage,
        });
        assert!(!corrupt.is_transient());
        assert_eq!(Classify::class(&corrupt), ErrorClass::CORRUPT_STATE);
    }
}

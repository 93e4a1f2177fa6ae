//! The runtime class of [`NatsError`]: what the supervisor does with it.

use tributary_core::{Classify, ErrorClass};

use crate::NatsError;

impl Classify for NatsError {
    fn class(&self) -> ErrorClass {
        match self {
            NatsError::Config { .. } => ErrorClass::CONFIG,
            // async-nats reports refused credentials as a connect error kind.
            NatsError::Connect { source, .. }
                if matches!(
                    source.kind(),
                    async_nats::ConnectErrorKind::AuthorizationViolation
                        | async_nats::ConnectErrorKind::Authentication
                ) =>
            {
                ErrorClass::Definite { reason: "auth" }
            }
            // A stream that is not the bridge's, of the wrong retention, claiming the bridge's
            // subjects, or a setting JetStream cannot change: an operator must act.
            NatsError::Foreign { .. }
            | NatsError::Retention { .. }
            | NatsError::Overlap { .. }
            | NatsError::Incompatible { .. } => ErrorClass::Definite {
                reason: "nats_stream_conflict",
            },
            NatsError::Api {
                transient: false, ..
            } => ErrorClass::Definite {
                reason: "jetstream_api",
            },
            // Connection refused or lost, timeouts, a stream or KV request without an answer,
            // a publish or ack that did not come back: NATS restarting or a leader moving.
            NatsError::Connect { .. }
            | NatsError::Api { .. }
            | NatsError::Stream { .. }
            | NatsError::Publish { .. }
            | NatsError::Ack(_) => ErrorClass::TRANSIENT,
        }
    }
}

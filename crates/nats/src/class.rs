//! The runtime class of [`NatsError`] (kept apart from the enum, which grows new kinds
//! elsewhere: a kind not named here is transient, the safe default for a network client).

use tributary_core::{Classify, ErrorClass};

use crate::NatsError;

impl Classify for NatsError {
    fn class(&self) -> ErrorClass {
        match self {
            NatsError::Config { .. } => ErrorClass::CONFIG,
            // async-nats reports refused credentials only as text.
            NatsError::Connect { message, .. }
                if message
                    .to_ascii_lowercase()
                    .contains("authorization violation") =>
            {
                ErrorClass::Definite { reason: "auth" }
            }
            // Connection refused or lost, timeouts, a stream or KV request without an answer,
            // a publish or ack that did not come back: NATS restarting or a leader moving.
            #[allow(unreachable_patterns)]
            _ => ErrorClass::TRANSIENT,
        }
    }
}

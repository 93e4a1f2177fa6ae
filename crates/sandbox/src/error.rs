//! Errors of the sandbox's own API (starting servers, sending webhooks).

use std::io;

/// Result alias for the sandbox API.
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// What went wrong starting an emulator or talking to a client of it.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("binding the emulator's listener: {0}")]
    Bind(#[source] io::Error),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("order {order} cannot move from {from} to {to}")]
    InvalidTransition {
        order: String,
        from: &'static str,
        to: &'static str,
    },
    #[error("unknown entity {0}")]
    UnknownEntity(String),
}

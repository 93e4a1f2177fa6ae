//! Error classes: what the runtime does with an error, whichever crate raised it.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// What the runtime does with an error. Every crate's error enum maps into one of these
/// ([`Classify`]); the decision is made once, where the error is understood, and not again
/// by each loop that happens to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying the same thing later can succeed without anyone acting: a connection
    /// refused or reset, a timeout, a server starting up or shutting down, a 5xx, a
    /// throttle, a lost race (compare-and-set conflict). `retry_after` is the other side's
    /// hint (a `Retry-After`, a cost bucket's refill time); the runtime waits at least that
    /// long and otherwise follows its [`RetryPolicy`](crate::RetryPolicy).
    ///
    /// [`supervise`](crate::supervise) restarts a component that fails with it, with capped
    /// backoff; at start-up [`retry_until`](crate::retry_until) keeps trying until the
    /// start-up deadline.
    Transient { retry_after: Option<Duration> },
    /// This request will never succeed as it is: the target refused the input (validation,
    /// a 4xx other than 408/409/429), the credentials are wrong, the named object (slot,
    /// publication, stream) does not exist. `reason` is a short, bounded label.
    ///
    /// For one input item the component handles it itself (the item goes to a dead-letter
    /// stream and the component goes on). A definite error that reaches
    /// [`supervise`](crate::supervise) needs an operator: the component stops, and with it
    /// the bridge, with the message and a non-zero exit. Nothing is retried.
    Definite { reason: &'static str },
    /// A restart cannot fix it: the configuration is invalid, or durable state is corrupt
    /// (a record that does not decode, a position that contradicts the stream). The bridge
    /// stops at once with a message naming the component and a non-zero exit, before it
    /// does anything that could make the damage worse.
    Fatal { kind: FatalKind },
}

/// Why a [`ErrorClass::Fatal`] error cannot be fixed by a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalKind {
    /// A configuration value is invalid or contradicts the outside world; the message names
    /// the key.
    Config,
    /// Durable state (a KV record, a stored position) is unreadable or inconsistent; the
    /// message names the key or record.
    CorruptState,
}

impl ErrorClass {
    /// A transient error without a hint.
    pub const TRANSIENT: ErrorClass = ErrorClass::Transient { retry_after: None };
    pub const CONFIG: ErrorClass = ErrorClass::Fatal {
        kind: FatalKind::Config,
    };
    pub const CORRUPT_STATE: ErrorClass = ErrorClass::Fatal {
        kind: FatalKind::CorruptState,
    };

    pub fn is_transient(&self) -> bool {
        matches!(self, ErrorClass::Transient { .. })
    }

    /// A short, bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorClass::Transient { .. } => "transient",
            ErrorClass::Definite { .. } => "definite",
            ErrorClass::Fatal {
                kind: FatalKind::Config,
            } => "config",
            ErrorClass::Fatal {
                kind: FatalKind::CorruptState,
            } => "corrupt_state",
        }
    }
}

/// Implemented by every crate's error enum: the class of this error (see [`ErrorClass`]).
///
/// Wrapping errors delegate to the error they wrap (keeping it as `#[source]`), so the
/// class of a NATS timeout stays transient however many layers report it.
pub trait Classify: Error + Send + Sync + 'static {
    fn class(&self) -> ErrorClass;
}

/// A classified error of any crate, as components return it to [`supervise`](crate::supervise).
/// Display and `source()` are those of the wrapped error, so the chain stays whole.
pub struct Failure(Box<dyn Classify>);

impl Failure {
    pub fn class(&self) -> ErrorClass {
        self.0.class()
    }

    /// The wrapped error.
    pub fn error(&self) -> &dyn Classify {
        self.0.as_ref()
    }
}

impl<E: Classify> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(Box::new(e))
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    impl Classify for Outer {
        fn class(&self) -> ErrorClass {
            ErrorClass::CORRUPT_STATE
        }
    }

    #[test]
    fn failure_keeps_message_class_and_source_chain() {
        let f = Failure::from(Outer(std::io::Error::other("inner")));
        assert_eq!(f.to_string(), "outer");
        assert_eq!(f.class(), ErrorClass::CORRUPT_STATE);
        assert_eq!(f.class().label(), "corrupt_state");
        assert_eq!(f.source().map(|s| s.to_string()).as_deref(), Some("inner"));
    }
}

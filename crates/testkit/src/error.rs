//! The single error type of the crate.

/// Everything that can go wrong while starting, stopping or talking to a
/// throwaway server.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A file-system or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A required executable could not be located.
    #[error("executable not found: {0}")]
    BinaryNotFound(String),
    /// A helper command (e.g. `initdb`) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line that was run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its captured stdout and stderr.
        output: String,
    },
    /// A server did not become ready (or exited) before the deadline.
    #[error("{what} did not become ready: {reason}\n--- last server log lines ---\n{log_tail}")]
    NotReady {
        /// Which server.
        what: String,
        /// Why we gave up.
        reason: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// A server did not shut down in time and had to be killed.
    #[error("{0} did not shut down in time and was killed")]
    ShutdownTimeout(String),
    /// The options passed to a `start_with` call are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An operating-system call (user lookup, signal) failed.
    #[error("{0}")]
    System(String),
    /// A PostgreSQL client error.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A NATS client error.
    #[error("nats: {0}")]
    Nats(String),
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

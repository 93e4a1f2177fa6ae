use tributary_core::Lsn;

/// Errors of the PostgreSQL side, classified by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to PostgreSQL at {0}")]
    ConnectTimeout(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("authentication failed for user {user:?} at {endpoint}: {message}")]
    Auth {
        user: String,
        endpoint: String,
        message: String,
    },
    #[error("PostgreSQL error {code}: {message}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        code: String,
        message: String,
        detail: Option<String>,
    },
    #[error("replication connection I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("replication protocol: {0}")]
    Protocol(String),
    #[error("connection closed by the server")]
    Closed,
    #[error("control connection: {}", describe(.0))]
    Control(#[from] tokio_postgres::Error),
    #[error("replication slot {slot:?} does not exist{}", if *.missing_since_restart { " any more (it was dropped or invalidated): take a new snapshot and recreate it deliberately" } else { "" })]
    SlotMissing {
        slot: String,
        missing_since_restart: bool,
    },
    #[error("replication slot {slot:?} was invalidated ({reason}); WAL from {confirmed} on is gone: a new slot and a new snapshot are needed")]
    SlotInvalidated {
        slot: String,
        reason: String,
        confirmed: Lsn,
    },
    #[error("replication slot {slot:?} uses plugin {plugin:?}, not pgoutput")]
    SlotWrongPlugin { slot: String, plugin: String },
    /// Slot names are per server: a slot of this name made for another database (often by
    /// another source) would stream that database's changes, or none of this one's.
    #[error("replication slot {slot:?} belongs to database {database:?}, not {expected:?} (config key `sources.slot`): slot names are per server; give this source its own slot name, or drop the slot if nothing uses it (tributary slots drop)")]
    SlotOtherDatabase {
        slot: String,
        database: String,
        expected: String,
    },
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Decode(#[from] crate::pgoutput::DecodeError),
}

impl PgError {
    /// Whether retrying (after a backoff) can succeed without an operator's action.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Connect { .. }
            | PgError::ConnectTimeout(_)
            | PgError::Io(_)
            | PgError::Closed => true,
            // Admin shutdown, crash recovery, too many connections, slot in use by a dying walsender.
            PgError::Server { code, .. } => {
                code.starts_with("57P")
                    || code.starts_with("08")
                    || code == "53300"
                    || code == "55006"
            }
            PgError::Control(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }

    /// A short, bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            PgError::Connect { .. } | PgError::ConnectTimeout(_) => "connect",
            PgError::Tls(_) => "tls",
            PgError::Auth { .. } => "auth",
            PgError::Server { .. } => "server",
            PgError::Io(_) | PgError::Closed => "io",
            PgError::Protocol(_) | PgError::Decode(_) => "protocol",
            PgError::Control(_) => "control",
            PgError::SlotMissing { .. }
            | PgError::SlotInvalidated { .. }
            | PgError::SlotWrongPlugin { .. }
            | PgError::SlotOtherDatabase { .. } => "slot",
            PgError::Precondition(_) => "precondition",
        }
    }
}

/// tokio-postgres shows a server error as "db error"; the server's own message says what happened.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} ({}): {}",
            db.message(),
            db.code().code(),
            db.detail().unwrap_or_default()
        )
        .trim_end_matches(": ")
        .to_string(),
        None => e.to_string(),
    }
}

impl tributary_core::Classify for PgError {
    fn class(&self) -> tributary_core::ErrorClass {
        use tributary_core::ErrorClass;
        if self.is_transient() {
            return ErrorClass::TRANSIENT;
        }
        match self {
            PgError::Tls(_) => ErrorClass::CONFIG,
            // Credentials, a missing or invalidated slot, a missing publication, a server
            // setting: retrying cannot help until someone acts.
            _ => ErrorClass::Definite {
                reason: self.class(),
            },
        }
    }
}

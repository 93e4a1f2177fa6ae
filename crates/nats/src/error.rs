use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, RequestErrorKind};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the NATS side, classified by what the caller does next ([`NatsError::is_transient`]):
/// an unreachable or slow server is retried; a stream that is not the bridge's, a stream of the
/// wrong kind or a subject another stream claims needs an operator, and retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {servers}: {source}")]
    Connect {
        servers: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    /// A JetStream API request about a stream failed: no answer, or an error answer.
    #[error("JetStream stream {stream}: {action}: {source}")]
    Api {
        stream: String,
        action: &'static str,
        transient: bool,
        #[source]
        source: BoxError,
    },
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
    /// A stream (or KV bucket / object store) of the bridge's name that the bridge did not
    /// create: adopting it would rewrite another application's subjects and limits.
    #[error(
        "JetStream stream {stream} exists but is not Tributary's ({detail}); it is left untouched. \
         Give the bridge another stream name ({fix}), or, if it really is a stream an older \
         Tributary created, add the metadata tributary.owner=tributary to it"
    )]
    Foreign {
        stream: String,
        detail: String,
        fix: String,
    },
    /// Work-queue or interest retention deletes messages once consumed: the bridge's replays
    /// and its restart watermark need them kept by limits.
    #[error(
        "JetStream stream {stream} has {retention} retention; the bridge needs limits retention \
         (messages kept until max_age / max_bytes). Give the bridge another stream name ({fix}), \
         or move the data and recreate {stream} with limits retention"
    )]
    Retention {
        stream: String,
        retention: String,
        fix: String,
    },
    /// Another stream already captures some of the stream's subjects (JetStream API error 10065).
    #[error(
        "JetStream stream {stream}: its subjects {subjects:?} overlap with those of stream(s) {}; \
         a subject can belong to one stream only: remove these subjects from {}, or change the \
         bridge's subject prefix",
        others.join(", "), others.join(", ")
    )]
    Overlap {
        stream: String,
        subjects: Vec<String>,
        others: Vec<String>,
        #[source]
        source: Option<BoxError>,
    },
    /// A setting the configuration sets explicitly that JetStream cannot change in place.
    #[error("JetStream stream {stream}: {message}")]
    Incompatible { stream: String, message: String },
    #[error("JetStream publish to {subject}: {message}")]
    Publish { subject: String, message: String },
    #[error("JetStream ack: {0}")]
    Ack(String),
}

impl NatsError {
    /// A short, bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            NatsError::Connect { .. } => "nats_connect",
            NatsError::Config { .. } => "config",
            NatsError::Api { .. } | NatsError::Stream { .. } => "nats_stream",
            NatsError::Foreign { .. }
            | NatsError::Retention { .. }
            | NatsError::Overlap { .. }
            | NatsError::Incompatible { .. } => "nats_stream_conflict",
            NatsError::Publish { .. } => "nats_publish",
            NatsError::Ack(_) => "nats_ack",
        }
    }

    /// Whether retrying (after a backoff) can succeed without an operator's action.
    pub fn is_transient(&self) -> bool {
        match self {
            NatsError::Connect { .. }
            | NatsError::Stream { .. }
            | NatsError::Publish { .. }
            | NatsError::Ack(_) => true,
            NatsError::Api { transient, .. } => *transient,
            NatsError::Config { .. }
            | NatsError::Foreign { .. }
            | NatsError::Retention { .. }
            | NatsError::Overlap { .. }
            | NatsError::Incompatible { .. } => false,
        }
    }

    pub(crate) fn api(
        stream: &str,
        action: &'static str,
        transient: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        NatsError::Api {
            stream: stream.to_string(),
            action,
            transient,
            source: source.into(),
        }
    }
}

/// An error answer of the JetStream API: the server's 5xx (e.g. 503, no quorum) pass; its
/// 4xx (bad configuration, name or subjects taken, not permitted) do not.
pub(crate) fn api_error_is_transient(e: &async_nats::jetstream::Error) -> bool {
    e.code() >= 500
}

pub(crate) fn create_is_transient(kind: &CreateStreamErrorKind) -> bool {
    match kind {
        CreateStreamErrorKind::JetStream(e) => api_error_is_transient(e),
        CreateStreamErrorKind::TimedOut
        | CreateStreamErrorKind::Response
        | CreateStreamErrorKind::JetStreamUnavailable
        | CreateStreamErrorKind::NotFound => true,
        _ => false,
    }
}

pub(crate) fn get_is_transient(kind: &GetStreamErrorKind) -> bool {
    match kind {
        GetStreamErrorKind::JetStream(e) => api_error_is_transient(e),
        GetStreamErrorKind::Request => true,
        _ => false,
    }
}

pub(crate) fn request_is_transient(kind: RequestErrorKind) -> bool {
    matches!(
        kind,
        RequestErrorKind::TimedOut | RequestErrorKind::NoResponders | RequestErrorKind::Other
    )
}

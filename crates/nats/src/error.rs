#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {servers}: {message}")]
    Connect { servers: String, message: String },
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
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
            NatsError::Stream { .. } => "nats_stream",
            NatsError::Publish { .. } => "nats_publish",
            NatsError::Ack(_) => "nats_ack",
        }
    }
}

//! NATS JetStream: connection, stream provisioning, subjects and pipelined idempotent publishing.

mod class;
mod connect;
pub mod consumer;
mod error;
pub mod kv;
mod publisher;
mod stream;
pub mod subject;

pub use connect::connect;
pub use error::NatsError;
pub use publisher::{Acked, OrderedPublisher};
pub use stream::{ensure_stream, last_message_id};

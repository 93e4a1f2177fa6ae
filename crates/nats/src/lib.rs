//! NATS JetStream: connection, stream provisioning, subjects and pipelined idempotent publishing.

mod class;
mod connect;
pub mod consumer;
pub mod delivery_watch;
mod error;
pub mod kv;
pub mod ownership;
mod publisher;
pub mod schemas;
mod stream;
pub mod subject;

pub use connect::connect;
pub use error::NatsError;
pub use publisher::{Acked, OrderedPublisher};
pub use stream::{
    check_overlap, ensure_stream, inspect_stream, plan, stream_tail, Change, Plan, StreamSpec,
    StreamTail,
};

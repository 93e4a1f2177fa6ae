//! Replication protocol client: a `replication=database` connection built on `postgres-protocol`.
//!
//! ```text
//! connect (TLS, trust/md5/SCRAM) ─► IDENTIFY_SYSTEM / CREATE_REPLICATION_SLOT
//!        └─► START_REPLICATION ─► ReplicationStream: XLogData, keepalives ◄─► status updates
//! ```

mod commands;
mod connection;
mod stream;

pub use commands::{quote_ident, quote_literal_inner, CreatedSlot, StartOptions, SystemIdentity};
pub use connection::{ReplicationConnection, Rows};
pub use stream::{ReplicationMessage, ReplicationStream};

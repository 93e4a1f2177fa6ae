//! PostgreSQL logical replication: wire client, pgoutput decoding, typed values and control plane.

mod connect_params;
pub mod control;
mod error;
mod keys;
pub mod pgoutput;
pub mod replication;
mod server_identity;
pub mod snapshot_catalog;
pub mod values;

pub use connect_params::{ConnectParams, TlsMode};
pub use control::ControlConnection;
pub use error::PgError;
pub use replication::quote_ident;

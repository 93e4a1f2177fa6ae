//! Throwaway PostgreSQL clusters and nats-servers for tests and benchmarks.
//!
//! Every server runs in its own temporary directory (data, sockets, config and
//! log files) that is removed when the handle is dropped, unless the
//! environment variable `TRIBUTARY_KEEP_TEST_DIRS=1` is set. Only processes
//! started by this crate are ever signalled, always by PID.

mod error;
pub mod fuzz;
mod nats;
mod nats_cluster;
mod pg;
mod ports;
mod process;

pub use error::TestkitError;
pub use nats::{ClusterNode, NatsOptions, NatsServer, NatsTls};
pub use nats_cluster::NatsCluster;
pub use pg::{PgAuth, PgCluster, PgOptions};
pub use ports::{free_port, try_free_port};

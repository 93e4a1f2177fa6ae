//! The unit the runtime runs, restarts and (later) hands between replicas.

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

use crate::Failure;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a component reports about itself (for `/readyz` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Starting or restarting: not doing its work yet.
    Starting,
    /// Doing its work.
    Healthy,
    /// Running but impaired (a target outage it waits out); the text says how.
    Degraded(String),
}

/// A long-running part of the bridge: a source's replication, the domain stage's consumer
/// of one stream, one sink, one SaaS feed's mapper.
///
/// Contract (what [`supervise`](crate::supervise) relies on, and what a lease-owned work
/// unit will rely on when replicas share work):
///
/// - `run` does the work until `stop` is cancelled, then returns `Ok(())` promptly. After
///   `stop` is cancelled it must start no new side effect (no publish, no KV write, no call
///   to a target, no ack); it may finish the one in flight or abandon it, as long as what it
///   abandons is redelivered (nothing acknowledged upstream before it is durable).
/// - `run` may be called again after it returned an error: each call starts from durable
///   state (consumer ack floors, KV records, slot positions), never from what a previous
///   call left in memory that was not stored.
/// - An error says by its [`class`](crate::Failure::class) what should happen: transient
///   errors are restarted with backoff, definite and fatal ones stop the component and the
///   bridge.
/// - `run` returning `Ok(())` without `stop` being cancelled means the work is done; the
///   component is not restarted.
pub trait Component: Send + Sync {
    /// A short, stable name (`source erp`, `sink wms`): log field and the `component` label
    /// of metrics.
    fn name(&self) -> String;

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>>;

    /// Hands the component the fence of the lease it runs under from its next `run` on (HA
    /// mode: several replicas share the work). Every side effect of that run checks it.
    /// Returns false when the component cannot be fenced; such a component cannot be a
    /// replicated unit (the runtime refuses to start it under `[ha]`).
    fn set_fence(&self, _fence: crate::Fence) -> bool {
        false
    }

    /// The component's own view of its health; the default says nothing beyond running.
    fn health(&self) -> Health {
        Health::Healthy
    }
}

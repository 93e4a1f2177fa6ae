//! Positions, contracts and error classes shared by every Tributary crate; no I/O.
//!
//! The runtime contract every long-running part of the bridge follows:
//!
//! - [`ErrorClass`] / [`Classify`]: every crate's error enum says what the runtime does with
//!   it — retry (transient), refuse the input for good (definite), or stop (fatal).
//! - [`RetryPolicy`] / [`Backoff`]: how long to wait between attempts, as data.
//! - [`Component`]: a named unit that runs until a stop token and reports its health.
//! - [`supervise`]: the one restart loop; [`retry_until`]: the one start-up wait.
//! - [`Fence`]: what a unit asks before each side effect when replicas share the work.

mod class;
mod component;
mod fence;
mod lsn;
pub mod partition;
mod retry;
mod supervise;

pub use class::{Classify, ErrorClass, Failure, FatalKind};
pub use component::{BoxFuture, Component, Health};
pub use fence::{Fence, FenceCell, Fenced, FENCED};
pub use lsn::{Lsn, ParseLsnError};
pub use retry::{Backoff, RetryPolicy};
pub use supervise::{chain, describe_metrics, retry_until, supervise, Stopped, COMPONENT_RESTARTS};

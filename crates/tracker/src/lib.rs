//! The order-to-cash process tracker (docs/order-to-cash.md).
//!
//! It follows every order and return through its milestones from the domain events
//! (`events.rs` says which event shows which milestone), keeps one record per process in a
//! NATS KV bucket (`store.rs`, compare-and-set), publishes milestone and exception events
//! (`publish.rs`), measures the business KPIs from the events' own timestamps
//! (`metrics.rs`), and sweeps the records for processes waiting past a threshold
//! (`sweep.rs`), and counts the dead letters operators resolve (`resolution.rs`). [`Tracker`] is one supervised component (`component.rs`).

mod component;
mod consume;
mod error;
pub mod events;
pub mod metrics;
pub mod process;
mod publish;
pub mod resolution;
mod shared;
pub mod store;
mod sweep;

pub use component::Tracker;
pub use error::TrackerError;
pub use process::{Kind, Milestone, Process, Waiting};
pub use publish::{ExceptionEvent, MilestoneEvent};
pub use store::Store;

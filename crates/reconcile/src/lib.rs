//! Inventory reconciliation (docs/order-to-cash.md, "Inventory drift").
//!
//! Periodically compares the ERP's level of every SKU-location (the domain stage's entity
//! state: the ERP owns stock) with the WMS's and the storefront's, read through their APIs
//! with the sinks' endpoints and paced below their rate limits (`erp.rs`, `pace.rs`,
//! `sweep.rs`). Events still in flight are recognised by versions (the sink's record against
//! the domain state's), never by wall clock. A drift is a metric (`metrics.rs`), the stored
//! report of the last sweep (`report.rs`, `tributary inventory drift`) and an event on
//! `<prefix>.inventory.drift`; with `repair = true` the ERP's level is re-applied through the
//! drifting target's sink with a reason (`publish.rs`, `tributary_sinks::repair`).
//! [`Reconciler`] is one supervised component (`component.rs`).

mod component;
mod erp;
mod error;
pub mod metrics;
mod pace;
mod publish;
pub mod report;
mod shared;
mod sweep;

pub use component::Reconciler;
pub use error::ReconcileError;
pub use report::{Drift, Report, ReportStore, TargetCounts};

//! In-process HTTP emulators of Shopify, Salesforce and a WMS, with fault injection, for tests and the demo.
//!
//! Every emulator is started with `<emulator>::start(options)`, binds `127.0.0.1:0` unless told
//! otherwise, and returns a [`RunningEmulator`] carrying its base URL and a cloneable handle to
//! seed and inspect its state, inject faults and read the request log. See the crate README for
//! what each emulator implements and where it deviates from the real API.

// Handlers return `Result<_, Response>` to answer early; the size of `Response` does not matter here.
#![allow(clippy::result_large_err)]

pub mod error;
pub mod faults;
pub mod salesforce;
pub mod server;
pub mod shopify;
mod util;
pub mod webhooks;
pub mod wms;

pub use error::{Result, SandboxError};
pub use faults::{Fault, Faults};
pub use server::{RequestLog, RequestRecord, RunningEmulator};
/// Timestamps in the emulators' fixed-width UTC format (`2026-11-28T21:00:56.123Z`), which
/// compares in time order; use it for "updated since" cursors.
pub use util::{now_rfc3339, rfc3339_millis};

//! Positions, contracts and error classes shared by every Tributary crate; no I/O.

mod lsn;

pub use lsn::{Lsn, ParseLsnError};

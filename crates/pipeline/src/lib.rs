//! The replication pipeline: a PostgreSQL source to JetStream, with ordered checkpoints.
//!
//! ```text
//!  PostgreSQL walsender                                   NATS JetStream
//!        │ XLogData / keepalive                                 ▲ acks (in order)
//!        ▼                                                      │
//!  ┌──────────────┐  batches (bounded channel)  ┌───────────────┴───┐
//!  │ source task  │ ──────────────────────────► │ publisher task    │
//!  │ decode, build│                             │ window of acks,   │
//!  │ events, hold │ ◄────────────────────────── │ confirmed LSN     │
//!  └──────────────┘   confirmed LSN (watch)     └───────────────────┘
//!        │ standby status: flushed = confirmed LSN
//!        ▼
//!  slot's confirmed_flush_lsn
//! ```
//!
//! Progress tracking: a transaction's commit end LSN becomes a marker behind its last
//! change; the marker comes back from the publisher only once every message before it is
//! acknowledged by JetStream, and only then does the slot's confirmed position move.

mod backfill;
mod batching;
mod changes;
mod context;
mod error;
mod event;
pub mod metrics;
mod outbound;
mod params;
mod publish;
mod relations;
mod schemas;
mod session;
mod snapshot;
mod snapshot_state;
mod source;
mod spool;
mod supervisor;
mod transaction;

pub use backfill::{progress_key as backfill_progress_key, BackfillProgress, WATERMARK_PREFIX};
pub use context::SourceContext;
pub use error::PipelineError;
pub use params::connect_params;
pub use schemas::SchemaWriter;
pub use snapshot::{
    SnapshotPace, SnapshotState, Status as SnapshotStatus, TableProgress, SNAPSHOT_BUCKET,
};
pub use source::source_stream;
pub use supervisor::{startup_check, Source};

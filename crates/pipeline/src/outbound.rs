//! What the source side hands to the publisher: a leaf module, so that the streaming loop,
//! the snapshot workers and the publisher can all name these types without importing each
//! other.

use std::sync::Arc;

use async_nats::Subject;
use bytes::Bytes;
use tributary_core::Lsn;

/// Changes per batch handed to the publisher.
pub(crate) const BATCH: usize = 512;

/// One entry for the publisher, in source order.
pub enum Outbound {
    Change {
        subject: Subject,
        msg_id: String,
        payload: Bytes,
        commit_time_micros: i64,
        /// May share a `ChangeEventBatch` with the changes of the same subject next to it
        /// (row changes: insert, update, delete; not truncates, logical messages or reads).
        batchable: bool,
        /// The last change of its transaction: a batch never reaches past it.
        ends_transaction: bool,
    },
    /// Confirm `lsn` once everything before it is acknowledged.
    Checkpoint { lsn: Lsn },
    /// A snapshot chunk's `read` events are all before this: report it once acknowledged.
    SnapshotChunk { id: ChunkId },
}

/// A chunk whose `read` events the publisher has had acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkId {
    pub table: Arc<str>,
    pub index: usize,
}

/// The capture time stamped on each event.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

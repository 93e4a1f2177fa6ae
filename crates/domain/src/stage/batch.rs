//! What one batch of the domain stage holds (see the stage's module doc): the messages, the
//! entities they touch with their mapped changes and events, and the per-task cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use tributary_nats::delivery_watch::DeliveryWatch;
use tributary_proto::cdc::v1::ChangeEvent;

use super::{entity, publish};
use crate::mapping::{Mapped, RowView};
use crate::state::{EntityState, LastEvent, StateStore};
use crate::DomainError;

/// Messages mapped together (see the module doc).
pub(super) const BATCH: usize = 256;
/// Messages delivered and not yet acked, per source.
pub(super) const MAX_ACK_PENDING: i64 = 1024;
/// A batch ends once an entity has this many events in it (they are all kept in its state).
pub(super) const MAX_EVENTS_PER_ENTITY: usize = 32;
/// Entity states and parent rows kept in memory per source (the cache is cleared beyond).
pub(super) const CACHE_ENTRIES: usize = 20_000;

/// Entity states (with their KV revision) and parent rows this task has read or written.
#[derive(Default)]
pub(super) struct Cache {
    pub(super) entities: HashMap<String, (EntityState, u64)>,
    pub(super) rows: HashMap<String, Bytes>,
}

impl Cache {
    pub(super) fn trim(&mut self) {
        if self.entities.len() > CACHE_ENTRIES {
            self.entities.clear();
        }
        if self.rows.len() > CACHE_ENTRIES {
            self.rows.clear();
        }
    }
}

#[derive(Default)]
pub(super) struct Batch {
    pub(super) messages: Vec<jetstream::Message>,
    /// Changes in `messages` (a `ChangeEventBatch` message holds several).
    pub(super) changes: usize,
    /// Parent rows to store, by KV key (the latest change of the batch).
    pub(super) rows: BTreeMap<String, Bytes>,
    pub(super) entities: Vec<EntityWork>,
    /// KV key -> index in `entities`.
    pub(super) index: HashMap<String, usize>,
    pub(super) dead_letters: Vec<publish::Outgoing>,
}

/// One mapped change, kept to map it again after a compare-and-set conflict.
pub(super) struct Op {
    pub(super) mapping: usize,
    pub(super) change: Arc<ChangeEvent>,
    pub(super) mapped: Mapped,
}

/// One entity touched by a batch.
pub(super) struct EntityWork {
    pub(super) entity: String,
    pub(super) key: String,
    pub(super) kv_key: String,
    /// Whether `state` and `revision` are loaded (from the cache, else by `flush`).
    pub(super) loaded: bool,
    /// KV revision of `state` as loaded (0: new), then as stored.
    pub(super) revision: u64,
    pub(super) state: EntityState,
    pub(super) ops: Vec<Op>,
    /// Events to publish, in order; true for new ones (false: re-sent after a crash).
    pub(super) events: Vec<(LastEvent, bool)>,
    /// Whether the state changed (a new event).
    pub(super) dirty: bool,
}

impl EntityWork {
    pub(super) fn record(&mut self, step: entity::Step) {
        match step {
            entity::Step::New(event) => {
                self.events.push((event, true));
                self.dirty = true;
            }
            entity::Step::Resend(event) => self.events.push((event, false)),
            entity::Step::Skip => {}
        }
    }

    /// The events of this write become `recent` + `last` (re-sent events too: they may not
    /// be stored yet either).
    pub(super) fn seal(&mut self, writer: &str) {
        if self.dirty {
            let events = self.events.iter().map(|(e, _)| e.clone());
            self.state.record_events(writer, events);
        }
    }
}

pub(super) async fn load_work(
    state: &StateStore,
    work: &mut EntityWork,
) -> Result<(), DomainError> {
    let (loaded, revision) = state.load_entity(&work.entity, &work.key).await?;
    work.state = loaded;
    work.revision = revision;
    work.loaded = true;
    Ok(())
}

pub(super) fn next_message(
    next: Option<Result<jetstream::Message, pull::MessagesError>>,
) -> Result<jetstream::Message, DomainError> {
    match next {
        Some(msg) => msg.map_err(|e| DomainError::nats("pull", e)),
        None => Err(DomainError::nats("pull", "message stream ended")),
    }
}

/// `msg`, once the watch has seen that no delivery before it went elsewhere: a gap ends the
/// session before anything later is mapped (the batch in hand is not acked and comes again).
pub(super) fn watched(
    watch: &mut DeliveryWatch,
    msg: jetstream::Message,
) -> Result<jetstream::Message, DomainError> {
    watch
        .check_message(&msg)
        .map_err(|gap| DomainError::nats("delivery", gap))?;
    Ok(msg)
}

/// The row's values of `columns` (None when one is NULL or absent).
pub(super) fn row_key(change: &ChangeEvent, columns: &[String]) -> Option<Vec<String>> {
    let row = RowView::of(change)?;
    columns.iter().map(|c| row.text(c)).collect()
}

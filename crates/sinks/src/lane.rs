//! What one lane of a sink keeps between its events, and how it completes them: a leaf of
//! the worker, which drives the lanes.

use std::collections::HashMap;
use std::time::Instant;

use async_nats::jetstream;
use tokio::task::JoinSet;

use crate::state::EntityRecord;
use crate::SinkError;

/// Events of a lane applied at the target whose record put and ack are still in flight.
pub(crate) const LANE_IN_FLIGHT: usize = 64;
/// Entity records a lane keeps in memory (it is their only writer); cleared when full.
const LANE_CACHE: usize = 50_000;

/// What a lane keeps between events: the records it wrote (the version guard without a KV
/// read per event) and the completions of handled events (record stored, then message
/// acked), which run as tasks while the lane goes on.
#[derive(Default)]
pub(crate) struct Lane {
    pub(crate) cache: HashMap<String, EntityRecord>,
    pub(crate) in_flight: JoinSet<Result<(), SinkError>>,
    /// Events handed back to wait for another entity's event, with their first attempt
    /// here (a redelivery lands in the same lane: same key, same lane count).
    pub(crate) waiting: HashMap<String, Instant>,
}

fn joined(done: Result<Result<(), SinkError>, tokio::task::JoinError>) -> Result<(), SinkError> {
    done.map_err(|e| SinkError::nats("ack task", e))?
}

impl Lane {
    /// Waits for every handled event's record and ack.
    pub(crate) async fn settle(&mut self) -> Result<(), SinkError> {
        while let Some(done) = self.in_flight.join_next().await {
            joined(done)?;
        }
        Ok(())
    }

    /// Reaps finished completions; waits while `LANE_IN_FLIGHT` are running.
    pub(crate) async fn reap(&mut self) -> Result<(), SinkError> {
        while let Some(done) = self.in_flight.try_join_next() {
            joined(done)?;
        }
        while self.in_flight.len() >= LANE_IN_FLIGHT {
            if let Some(done) = self.in_flight.join_next().await {
                joined(done)?;
            }
        }
        Ok(())
    }

    pub(crate) fn remember(&mut self, key: String, record: EntityRecord) {
        if self.cache.len() >= LANE_CACHE && !self.cache.contains_key(&key) {
            self.cache.clear();
        }
        self.cache.insert(key, record);
    }

    /// Acks `msg` after the earlier steps of this event complete, without holding the lane.
    pub(crate) fn ack_later(&mut self, msg: jetstream::Message) {
        self.in_flight.spawn(async move {
            msg.double_ack()
                .await
                .map_err(|e| SinkError::nats("ack", e))
        });
    }
}

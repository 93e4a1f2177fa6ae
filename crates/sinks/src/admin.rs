//! Operator actions on a sink's durable consumer and replay window, used by
//! `tributary replay` and `tributary dlq redrive` (no running bridge needed).
//!
//! Moving a consumer = record the replay window first, then delete and recreate the durable
//! consumer `tributary-sink-<name>` (with `sinks.partitions` > 1 every partition's,
//! `tributary-sink-<name>-p07`) at the requested start. A running sink loses its
//! consumer, restarts its session (which re-reads the replay window and reopens the consumer
//! at its ack floor + 1, i.e. at the new start); a stopped bridge picks it up at its next
//! start the same way.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use tributary_config::SinksConfig;

use crate::state::{ReplayWindow, StateStore};
use crate::worker::{ACK_WAIT, LANE_QUEUE};
use crate::SinkError;

/// Lanes used when neither the configuration nor an existing consumer tells.
const DEFAULT_LANES: usize = 8;
/// Attempts to win the (rare) race with a restarting sink that recreates its consumer
/// between our delete and create.
const RECREATE_ATTEMPTS: u32 = 10;

/// Where a sink's consumer was put.
#[derive(Debug, Clone)]
pub struct Repositioned {
    /// Ack floor of the consumer before (None: it did not exist).
    pub previous_ack_floor: Option<u64>,
    /// First stream sequence the recreated consumer delivers.
    pub start_sequence: u64,
}

/// The configured lanes of a sink (None: not configured, or a sink this function does not
/// know; the existing consumer's settings are used then).
fn configured_lanes(cfg: &SinksConfig, sink: &str) -> Option<usize> {
    match sink {
        "wms" => cfg.wms.as_ref().map(|w| w.delivery.lanes),
        "shopify" => cfg.shopify.as_ref().map(|s| s.delivery.lanes),
        "salesforce" => cfg.salesforce.as_ref().map(|s| s.delivery.lanes),
        _ => None,
    }
}

/// Checks that `sink` names a sink of this build; returns its filter subjects.
pub fn sink_filters(cfg: &SinksConfig, sink: &str) -> Result<Vec<String>, SinkError> {
    let filters = crate::filter_subjects(cfg, sink);
    if crate::SINK_NAMES.contains(&sink) && filters.is_empty() {
        return Err(SinkError::config(
            "--sink",
            format!("sink {sink:?} is not configured (no [sinks.{sink}] section)"),
        ));
    }
    if !crate::SINK_NAMES.contains(&sink) {
        return Err(SinkError::config(
            "--sink",
            format!(
                "unknown sink {sink:?} (sinks: {})",
                crate::SINK_NAMES.join(", ")
            ),
        ));
    }
    Ok(filters)
}

/// Opens the sinks' state bucket (creating it like the bridge does if it is missing).
pub async fn open_state(
    js: &jetstream::Context,
    cfg: &SinksConfig,
    replicas: usize,
) -> Result<StateStore, SinkError> {
    StateStore::open(js, &cfg.state_bucket, replicas).await
}

/// Releases an entity held behind `event_id` (a dropped dead letter): its later events
/// apply again. Returns whether a hold was released.
pub async fn release_hold(
    state: &StateStore,
    sink: &str,
    entity: &str,
    key: &str,
    event_id: &str,
) -> Result<bool, SinkError> {
    let mut record = state.get(sink, entity, key).await?;
    if record.held_by.as_deref() != Some(event_id) {
        return Ok(false);
    }
    record.held_by = None;
    state.put(sink, entity, key, &record).await?;
    Ok(true)
}

/// Raises the sink's replay window to `until_sequence` (never lowers it: an earlier replay
/// still in progress keeps its range). Returns the window now stored.
pub async fn extend_replay_window(
    state: &StateStore,
    sink: &str,
    until_sequence: u64,
) -> Result<ReplayWindow, SinkError> {
    let current = state
        .replay_window(sink)
        .await?
        .map(|w| w.until_sequence)
        .unwrap_or(0);
    let window = ReplayWindow {
        until_sequence: current.max(until_sequence),
    };
    state.set_replay_window(sink, &window).await?;
    Ok(window)
}

/// Each durable consumer of the sink (one per partition) with its ack floor (None: the
/// consumer does not exist yet).
pub async fn ack_floors(
    js: &jetstream::Context,
    cfg: &SinksConfig,
    sink: &str,
) -> Result<Vec<(String, Option<u64>)>, SinkError> {
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| SinkError::nats(format!("stream {}", cfg.stream), e))?;
    let mut out = Vec::new();
    for part in crate::partition_consumers(cfg, sink) {
        let floor = stream
            .consumer_info(&part.name)
            .await
            .ok()
            .map(|i| i.ack_floor.stream_sequence);
        out.push((part.name, floor));
    }
    Ok(out)
}

/// Deletes and recreates the sink's durable consumers — every partition's — so that each
/// starts where `deliver` says for its name (`ByStartSequence` or `ByStartTime`; None leaves
/// that consumer alone), with the settings the worker uses. Record the replay window before
/// calling this: each partition's next session reads it when it reopens. The result
/// reports the lowest previous ack floor and the lowest start.
pub async fn reposition_consumers(
    js: &jetstream::Context,
    cfg: &SinksConfig,
    sink: &str,
    deliver: impl Fn(&str) -> Option<DeliverPolicy>,
) -> Result<Repositioned, SinkError> {
    sink_filters(cfg, sink)?;
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| SinkError::nats(format!("stream {}", cfg.stream), e))?;
    let mut total: Option<Repositioned> = None;
    for part in crate::partition_consumers(cfg, sink) {
        let Some(policy) = deliver(&part.name) else {
            continue;
        };
        let moved = recreate(&stream, cfg, sink, &part, policy).await?;
        total = Some(match total {
            None => moved,
            Some(t) => Repositioned {
                previous_ack_floor: match (t.previous_ack_floor, moved.previous_ack_floor) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                start_sequence: t.start_sequence.min(moved.start_sequence),
            },
        });
    }
    total.ok_or_else(|| {
        SinkError::config("--sink", format!("sink {sink:?} has no consumer to move"))
    })
}

/// Deletes and recreates one partition's consumer at `deliver`.
async fn recreate(
    stream: &jetstream::stream::Stream,
    cfg: &SinksConfig,
    sink: &str,
    part: &crate::PartitionConsumer,
    deliver: DeliverPolicy,
) -> Result<Repositioned, SinkError> {
    let name = part.name.clone();
    let existing = stream.consumer_info(&name).await.ok();
    let previous_ack_floor = existing.as_ref().map(|i| i.ack_floor.stream_sequence);
    let lanes = configured_lanes(cfg, sink);
    let max_ack_pending = match (lanes, &existing) {
        (Some(l), _) => (l * LANE_QUEUE) as i64,
        (None, Some(info)) if info.config.max_ack_pending > 0 => info.config.max_ack_pending,
        _ => (DEFAULT_LANES * LANE_QUEUE) as i64,
    };
    let config = pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!("Tributary sink {sink}")),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending,
        deliver_policy: deliver,
        filter_subjects: part.filters.clone(),
        ..Default::default()
    };
    let mut last_error = String::new();
    for attempt in 0..RECREATE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        // Not found is fine (first run, or deleted by a restarting sink).
        let _ = stream.delete_consumer(&name).await;
        match stream.create_consumer(config.clone()).await {
            Ok(mut consumer) => {
                let info = consumer
                    .info()
                    .await
                    .map_err(|e| SinkError::nats(format!("consumer {name}"), e))?;
                // A fresh consumer reports its start as delivered/ack floor = start - 1.
                let start_sequence = info.delivered.stream_sequence + 1;
                return Ok(Repositioned {
                    previous_ack_floor,
                    start_sequence,
                });
            }
            // A sink restarting right now created its own consumer in between: delete
            // it again (its session restarts once more and reopens ours).
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(SinkError::nats(
        format!("recreate consumer {name}"),
        last_error,
    ))
}

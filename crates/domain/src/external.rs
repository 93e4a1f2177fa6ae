//! Domain events from feeds that are not database mappings (Shopify webhooks, Salesforce
//! CDC): the same `RETAIL` stream, the same entity state in KV (versions with compare-and-set),
//! so that entity versions stay one sequence whichever system produced an event.
//!
//! A feed orders an entity's events by an `as_of` time of its own (Shopify: the payload's
//! `updated_at`, else `X-Shopify-Triggered-At`), kept in the entity state's `positions` under
//! `<feed>/<mapping>`. An event older than any recorded position of its feed is stale and is
//! not published (no roll-back); one at its mapping's recorded time is the same state again
//! and re-sends the identical last event (JetStream drops it by `Nats-Msg-Id`), which also
//! completes a publish that a crash interrupted after the state was written. Two mappings at
//! the same time (Shopify's `orders/create` and `orders/updated` of a new order) both publish.

use async_nats::header::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use prost::Message as _;
use tributary_config::DomainConfig;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent, EventMeta, SourceRef};

use crate::state::{LastEvent, StateStore};
use crate::DomainError;

/// One event of an external feed, before entity state is applied.
#[derive(Debug, Clone)]
pub struct ExternalEvent {
    /// Subject tokens: `<prefix>.<entity>.<event>`.
    pub entity: String,
    pub event: String,
    pub key: String,
    pub system: String,
    /// Feed name in the entity state, e.g. `shopify:web` (positions are `<feed>/<mapping>`).
    pub feed: String,
    /// The feed's time of this state of the entity, µs since the epoch.
    pub as_of_micros: i64,
    /// `Nats-Msg-Id` and `meta.event_id`: stable for the same state of the entity.
    pub event_id: String,
    pub mapping: String,
    pub source_ref: SourceRef,
    pub body: Entity,
}

/// What [`ExternalFeed::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Published with this entity version.
    Published(u64),
    /// Older than the entity's recorded state: not published.
    Stale,
    /// The recorded state again: the last event re-sent (or nothing).
    Repeated,
}

/// Publishes external feeds' events into the domain stream with the domain stage's state.
pub struct ExternalFeed {
    js: jetstream::Context,
    state: StateStore,
    subject_prefix: String,
    partitions: u32,
}

impl ExternalFeed {
    /// Opens (creating if needed) the domain stream, its dead-letter stream and the state
    /// bucket of `cfg`; `component` (the feed) is recorded in the ownership mark of what it
    /// creates.
    pub async fn open(
        js: jetstream::Context,
        nats: &tributary_config::NatsConfig,
        cfg: &DomainConfig,
        component: &str,
    ) -> Result<ExternalFeed, DomainError> {
        for spec in crate::streams(nats, cfg, component) {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let replicas = nats.stream.replicas.unwrap_or(1);
        let state = StateStore::open(&js, &cfg.state_bucket, replicas).await?;
        Ok(ExternalFeed {
            js,
            state,
            subject_prefix: cfg.subject_prefix.clone(),
            partitions: cfg.partitions,
        })
    }

    /// The latest recorded `as_of` of `feed` for an entity (None when the feed never wrote it).
    pub async fn as_of(
        &self,
        entity: &str,
        key: &str,
        feed: &str,
    ) -> Result<Option<i64>, DomainError> {
        let (state, _) = self.state.load_entity(entity, key).await?;
        Ok(feed_max(&state.positions, feed).map(|p| p as i64))
    }

    /// Applies the entity state and publishes, awaiting the JetStream ack.
    pub async fn apply(&self, ev: &ExternalEvent) -> Result<Applied, DomainError> {
        let subject = tributary_core::partition::partitioned_subject(
            &format!("{}.{}.{}", self.subject_prefix, ev.entity, ev.event),
            &ev.key,
            self.partitions,
        );
        let position = (ev.as_of_micros.max(0) as u64, 0u32);
        let slot = format!("{}/{}", ev.feed, ev.mapping);
        loop {
            let (mut state, revision) = self.state.load_entity(&ev.entity, &ev.key).await?;
            if feed_max(&state.positions, &ev.feed).is_some_and(|p| p > position.0) {
                return Ok(Applied::Stale);
            }
            match state.positions.get(&slot) {
                Some(p) if *p == position => {
                    if let Some(last) = state.last.filter(|l| l.msg_id == ev.event_id) {
                        self.publish(&last.subject, &last.msg_id, last.payload.into())
                            .await?;
                    }
                    return Ok(Applied::Repeated);
                }
                _ => {}
            }
            let version = state.version + 1;
            let event = DomainEvent {
                meta: Some(EventMeta {
                    event_id: ev.event_id.clone(),
                    entity: ev.entity.clone(),
                    event: ev.event.clone(),
                    entity_key: ev.key.clone(),
                    entity_version: version,
                    system_of_record: ev.system.clone(),
                    event_time_micros: ev.as_of_micros,
                    source_ref: Some(ev.source_ref.clone()),
                    mapping: ev.mapping.clone(),
                }),
                entity: Some(ev.body.clone()),
            };
            let payload = event.encode_to_vec();
            state.version = version;
            state.positions.insert(slot.clone(), position);
            state.systems.insert(ev.system.clone());
            // Another writer's unpublished events stay re-sendable (see `record_events`).
            state.record_events(
                &format!("feed:{}", ev.feed),
                [LastEvent {
                    msg_id: ev.event_id.clone(),
                    subject: subject.clone(),
                    payload: payload.clone(),
                    writer: format!("feed:{}", ev.feed),
                }],
            );
            // State first, then the event (as the domain stage): a crash in between is
            // repaired by the redelivery, which finds its position and re-sends `last`.
            if self
                .state
                .save_entity(&ev.entity, &ev.key, &state, revision)
                .await?
                .is_none()
            {
                continue;
            }
            self.publish(&subject, &ev.event_id, payload.into()).await?;
            return Ok(Applied::Published(version));
        }
    }

    async fn publish(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<(), DomainError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        let what = || format!("publish to {subject}");
        self.js
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(|e| DomainError::nats(what(), e))?
            .await
            .map_err(|e| DomainError::nats(what(), e))?;
        Ok(())
    }
}

/// The latest position any mapping of `feed` recorded.
fn feed_max(positions: &std::collections::BTreeMap<String, (u64, u32)>, feed: &str) -> Option<u64> {
    let prefix = format!("{feed}/");
    positions
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, p)| p.0)
        .max()
}

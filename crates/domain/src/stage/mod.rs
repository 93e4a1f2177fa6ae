//! The domain stage: one task per source consumes the source's CDC stream through a durable
//! pull consumer, maps each change, and publishes domain events.
//!
//! ```text
//!  CDC_<SOURCE> ──durable consumer──► batch: map ──► entity state (cache, KV CAS) ──► RETAIL
//!       ▲                                   │ cannot map                               │ acks
//!       └────────────── acks ◄──────────────┴──► DLQ_DOMAIN ───────────────────────────┘
//! ```
//!
//! Batches: the task takes the messages that are ready (up to [`BATCH`]) and maps them in
//! stream order; then it applies each entity's changes, in that order, to an in-memory copy
//! of its state (kept write-through with its KV revision; states not cached are loaded from
//! KV concurrently). Then it writes each touched entity's state once
//! (compare-and-set on the revision, all entities concurrently) together with the parent
//! rows, then sends the batch's events and dead letters without waiting, awaits every ack,
//! and only then acks the batch's source messages, in order.
//!
//! Delivery: a CDC message is acked only after every event (or dead letter) it produced is
//! acknowledged by JetStream and the entity states are stored, so nothing is lost. Nothing
//! is published twice: event ids are `<change id>/<mapping>` (`Nats-Msg-Id`), and the entity
//! state records the last position applied per mapping plus the events of its last write
//! (`last`, `recent`), so a redelivered change re-sends the identical event (dropped as a
//! duplicate) or nothing. An entity's state is written only after the events of its previous
//! write are acked, so an event not recorded there was published. One task per source maps
//! in stream order, hence per-entity order for entities fed by one source; across sources
//! (and external feeds) the compare-and-set orders `entity_version`: a conflict reloads the
//! entity and maps its changes of the batch again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};
use tributary_config::{Config, DomainConfig};
use tributary_core::{BoxFuture, Component, Failure};
use tributary_nats::delivery_watch::{PULL_EXPIRES, PULL_HEARTBEAT};
use tributary_proto::batch::{is_batch_subject, split_batch};
use tributary_proto::cdc::v1::Operation;

mod batch;
mod consumer;
mod decode;
mod entity;
mod parent;
mod publish;
mod wait;

use crate::mapping::CompiledMapping;
use crate::metrics as m;
use crate::schema::Schema;
use crate::state::StateStore;
use crate::{DomainError, MapError};
use batch::{
    load_work, next_message, row_key, watched, Batch, Cache, EntityWork, Op, BATCH,
    MAX_EVENTS_PER_ENTITY,
};

/// How often a source's consumer reports its pending messages (`tributary_domain_consumer_pending`).
const PENDING_SAMPLE: Duration = Duration::from_secs(5);

/// The domain stage's consumer of one source's stream.
struct StreamTask {
    name: String,
    stage: Arc<DomainStage>,
    source: String,
    stream: String,
    fence: tributary_core::FenceCell,
}

impl Component for StreamTask {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        let span = info_span!("domain", source = %self.source);
        Box::pin(
            async move {
                let fence = self.fence.get();
                let result = self
                    .stage
                    .consume(&self.source, &self.stream, &fence, stop)
                    .await;
                if result.is_err() {
                    metrics::counter!(m::ERRORS, "source" => self.source.clone()).increment(1);
                }
                Ok(result?)
            }
            .instrument(span),
        )
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

pub struct DomainStage {
    cfg: DomainConfig,
    js: jetstream::Context,
    mappings: Vec<CompiledMapping>,
    /// entity -> (field path, owning system)
    ownership: BTreeMap<String, Vec<(String, String)>>,
    /// (source, `schema.table`) whose rows child mappings read -> the key column lists.
    parent_tables: BTreeMap<(String, String), Vec<Vec<String>>>,
    /// source -> its CDC stream
    streams: BTreeMap<String, String>,
    state: StateStore,
    schemas: tributary_nats::schemas::SchemaResolver,
}

impl DomainStage {
    /// Checks the mappings against the descriptors and the configured sources (no I/O).
    pub fn compile(config: &Config) -> Result<Vec<CompiledMapping>, DomainError> {
        let Some(cfg) = &config.domain else {
            return Ok(Vec::new());
        };
        let schema = Schema::load()?;
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, mapping) in cfg.mappings.iter().enumerate() {
            if !names.insert(mapping.name.clone()) {
                return Err(DomainError::config(
                    format!("domain.mappings[{i}].name"),
                    format!("{:?} is used twice", mapping.name),
                ));
            }
            if !config.sources.iter().any(|s| s.name == mapping.source) {
                return Err(DomainError::config(
                    format!("domain.mappings[{i}].source"),
                    format!("no source is named {:?}", mapping.source),
                ));
            }
            out.push(CompiledMapping::compile(&schema, i, mapping)?);
        }
        for (i, rule) in cfg.ownership.iter().enumerate() {
            for f in &rule.fields {
                schema.resolve(f, &format!("domain.ownership[{i}].fields"))?;
            }
        }
        Ok(out)
    }

    /// Compiles the mappings, provisions the streams and the state bucket, and publishes
    /// the descriptor set.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<DomainStage>, DomainError> {
        let Some(cfg) = config.domain.clone() else {
            return Ok(None);
        };
        let mappings = Self::compile(config)?;
        m::describe();
        let replicas = config.nats.stream.replicas.unwrap_or(1);
        for spec in crate::streams(&config.nats, &cfg, "domain") {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let state = StateStore::open(&js, &cfg.state_bucket, replicas).await?;
        crate::publish_descriptors(&js, &cfg.schema_bucket, replicas).await?;

        let mut ownership: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for rule in &cfg.ownership {
            let entry = ownership.entry(rule.entity.clone()).or_default();
            entry.extend(rule.fields.iter().map(|f| (f.clone(), rule.owner.clone())));
        }
        let mut parent_tables: BTreeMap<(String, String), Vec<Vec<String>>> = BTreeMap::new();
        for m in &mappings {
            if let Some(p) = &m.config.parent {
                let lists = parent_tables
                    .entry((m.config.source.clone(), p.table.clone()))
                    .or_default();
                if !lists.iter().any(|l| l.as_slice() == p.parent_columns()) {
                    lists.push(p.parent_columns().to_vec());
                }
            }
        }
        let streams = config
            .sources
            .iter()
            .filter(|s| mappings.iter().any(|m| m.config.source == s.name))
            .map(|s| (s.name.clone(), config.nats.resolved_stream(s).name))
            .collect();
        Ok(Some(DomainStage {
            cfg,
            js: js.clone(),
            mappings,
            ownership,
            parent_tables,
            streams,
            state,
            schemas: tributary_nats::schemas::SchemaResolver::new(js),
        }))
    }

    /// One component per source stream, each consuming it until stop; the runtime restarts
    /// one that fails transiently (NATS) and stops the bridge on corrupt entity state.
    pub fn components(self) -> Vec<Box<dyn Component>> {
        let stage = Arc::new(self);
        info!(mappings = stage.mappings.len(), sources = stage.streams.len(), stream = %stage.cfg.stream, "domain stage running");
        stage
            .streams
            .iter()
            .map(|(source, stream)| {
                Box::new(StreamTask {
                    name: format!("domain {source}"),
                    stage: stage.clone(),
                    source: source.clone(),
                    stream: stream.clone(),
                    fence: Default::default(),
                }) as Box<dyn Component>
            })
            .collect()
    }

    async fn consume(
        &self,
        source: &str,
        stream_name: &str,
        fence: &tributary_core::Fence,
        stop: &CancellationToken,
    ) -> Result<(), DomainError> {
        // The source task creates its stream; until it has, there is nothing to consume.
        let Some(stream) = wait::source_stream(&self.js, stream_name, stop).await? else {
            return Ok(());
        };
        let (mut consumer, mut watch) = self.consumer(&stream, stream_name).await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| DomainError::nats("pull", e))?;
        info!(stream = stream_name, consumer = %self.cfg.consumer, "consuming");
        let mut cache = Cache::default();
        let mut pending_tick = tokio::time::interval(PENDING_SAMPLE);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = pending_tick.tick() => {
                    // The stage's lag in messages: what the source has stored and this
                    // consumer has not been given yet.
                    if let Ok(info) = consumer.info().await {
                        metrics::gauge!(m::CONSUMER_PENDING, "source" => source.to_string())
                            .set(info.num_pending as f64);
                        watch.check_idle(info).map_err(|gap| DomainError::nats("delivery", gap))?;
                    }
                    continue;
                }
                next = messages.next() => next,
            };
            let mut msg = watched(&mut watch, next_message(next)?)?;
            cache.trim();
            let mut batch = Batch::default();
            // A batch being handled is finished before a stop is honoured.
            loop {
                let cut = self
                    .absorb(&mut cache, &mut batch, (source, stream_name), fence, msg)
                    .await?;
                if cut || batch.messages.len() >= BATCH || batch.changes >= BATCH {
                    break;
                }
                match messages.next().now_or_never() {
                    Some(next) => msg = watched(&mut watch, next_message(next)?)?,
                    None => break,
                }
            }
            // HA: a replica that lost the lease writes, publishes and acks nothing more.
            fence.check()?;
            self.flush(&mut cache, source, batch).await?;
            watch.busy();
        }
    }

    /// Maps one CDC message (one change, or a `ChangeEventBatch` of several) into the batch;
    /// Ok(true) when the batch should end after it.
    async fn absorb(
        &self,
        cache: &mut Cache,
        batch: &mut Batch,
        (source, stream): (&str, &str),
        fence: &tributary_core::Fence,
        msg: jetstream::Message,
    ) -> Result<bool, DomainError> {
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let payload = msg.payload.clone();
        let batched = is_batch_subject(msg.subject.as_str());
        batch.messages.push(msg);
        let id = format!("{stream}:{sequence}");
        if !batched {
            return self.absorb_change(cache, batch, source, &id, payload).await;
        }
        let changes = match split_batch(&payload) {
            Ok(changes) => changes,
            Err(e) => {
                let reason = MapError::Decode(e.to_string());
                let letter = publish::dead_letter("_decode", &id, payload, &reason);
                batch.dead_letters.push(letter);
                return Ok(false);
            }
        };
        let total = changes.len();
        let mut cut = false;
        for (i, change) in changes.into_iter().enumerate() {
            let id = format!("{id}.{i}");
            cut = self
                .absorb_change(cache, batch, source, &id, change)
                .await?;
            if cut && i + 1 < total {
                // An entity is full (its state keeps every event of a write) or a change
                // waited: write what is mapped so far, then go on with the rest of the
                // message, which is acked with its last part. A redelivery after a crash in
                // between maps the whole message again, and the entity positions skip what
                // was written.
                let msg = batch.messages.pop();
                fence.check()?;
                self.flush(cache, source, std::mem::take(batch)).await?;
                batch.messages.extend(msg);
            }
        }
        Ok(cut)
    }

    /// Maps one change into the batch; `position` names it in a dead letter when it does not
    /// decode. Ok(true) when the batch should end after it.
    async fn absorb_change(
        &self,
        cache: &mut Cache,
        batch: &mut Batch,
        source: &str,
        position: &str,
        payload: Bytes,
    ) -> Result<bool, DomainError> {
        batch.changes += 1;
        metrics::counter!(m::CHANGES, "source" => source.to_string()).increment(1);
        let change = match decode::change(&self.schemas, payload.clone()).await? {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let letter = publish::dead_letter("_decode", position, payload, &e);
                batch.dead_letters.push(letter);
                return Ok(false);
            }
        };
        let table = format!("{}.{}", change.schema, change.table);
        let op = Operation::try_from(change.op).unwrap_or(Operation::Unspecified);
        if matches!(op, Operation::Insert | Operation::Update | Operation::Read) {
            if let Some(lists) = self.parent_tables.get(&(source.to_string(), table.clone())) {
                for columns in lists {
                    if let Some(key) = row_key(&change, columns) {
                        let k = StateStore::row_key(source, &table, columns, &key);
                        cache.rows.insert(k.clone(), payload.clone());
                        batch.rows.insert(k, payload.clone());
                    }
                }
            }
        }
        let mut waited = false;
        for (index, mapping) in self.mappings.iter().enumerate() {
            if !mapping.matches(&change) {
                continue;
            }
            mapping.check_columns(index, &change)?;
            let name = &mapping.config.name;
            let span = info_span!("map", mapping = %name, event_id = %change.event_id);
            let mapped = self
                .map_one(cache, mapping, &change, &mut waited)
                .instrument(span)
                .await?;
            let mapped = match mapped {
                Ok(mapped) => mapped,
                Err(reason) => {
                    batch.dead_letters.push(publish::dead_letter(
                        name,
                        &change.event_id,
                        payload.clone(),
                        &reason,
                    ));
                    continue;
                }
            };
            let entity = &mapping.config.entity;
            let kv_key = StateStore::entity_key(entity, &mapped.key);
            let slot = match batch.index.get(&kv_key) {
                Some(slot) => *slot,
                None => {
                    // States not cached are loaded by `flush`, concurrently.
                    let cached = cache.entities.get(&kv_key).cloned();
                    let loaded = cached.is_some();
                    let (state, revision) = cached.unwrap_or_default();
                    batch.index.insert(kv_key.clone(), batch.entities.len());
                    batch.entities.push(EntityWork {
                        entity: entity.clone(),
                        key: mapped.key.clone(),
                        kv_key,
                        loaded,
                        revision,
                        state,
                        ops: Vec::new(),
                        events: Vec::new(),
                        dirty: false,
                    });
                    batch.entities.len() - 1
                }
            };
            let work = &mut batch.entities[slot];
            work.ops.push(Op {
                mapping: index,
                change: change.clone(),
                mapped,
            });
            if work.ops.len() >= MAX_EVENTS_PER_ENTITY {
                waited = true;
            }
        }
        Ok(waited)
    }

    /// Stores the batch's entity states and parent rows, publishes its events and dead
    /// letters, awaits every ack, then acks the source messages in order.
    async fn flush(
        &self,
        cache: &mut Cache,
        source: &str,
        mut batch: Batch,
    ) -> Result<(), DomainError> {
        let started = Instant::now();
        // The states the cache did not hold, concurrently; then each entity's changes in
        // stream order (entities are independent of each other).
        let mut loads = Vec::new();
        for work in batch.entities.iter_mut().filter(|w| !w.loaded) {
            loads.push(load_work(&self.state, work));
        }
        futures::future::try_join_all(loads).await?;
        for work in &mut batch.entities {
            self.replay(work)?;
        }
        let writer = format!("domain:{source}");
        for work in &mut batch.entities {
            work.seal(&writer);
        }
        let rows = futures::future::try_join_all(
            batch
                .rows
                .iter()
                .map(|(k, change)| self.state.put_row_at(k, change.clone())),
        );
        let saves = futures::future::try_join_all(batch.entities.iter().filter(|w| w.dirty).map(
            |w| async move {
                let revision = self
                    .state
                    .save_entity(&w.entity, &w.key, &w.state, w.revision)
                    .await?;
                Ok::<_, DomainError>((w.kv_key.clone(), revision))
            },
        ));
        let (_, saved) = futures::try_join!(rows, saves)?;
        let saved: BTreeMap<String, Option<u64>> = saved.into_iter().collect();
        for work in &mut batch.entities {
            if !work.dirty {
                continue;
            }
            let mut revision = saved.get(&work.kv_key).copied().flatten();
            while revision.is_none() {
                // Another writer (another source, an external feed) came first: map this
                // entity's changes of the batch again on its current state.
                metrics::counter!(m::STATE_CONFLICTS, "entity" => work.entity.clone()).increment(1);
                let (state, rev) = self.state.load_entity(&work.entity, &work.key).await?;
                work.state = state;
                work.revision = rev;
                self.replay(work)?;
                work.seal(&writer);
                if !work.dirty {
                    break;
                }
                revision = self
                    .state
                    .save_entity(&work.entity, &work.key, &work.state, work.revision)
                    .await?;
            }
            if let Some(revision) = revision {
                work.revision = revision;
            }
        }
        for work in &batch.entities {
            cache
                .entities
                .insert(work.kv_key.clone(), (work.state.clone(), work.revision));
        }
        // Events in order per entity (one connection: JetStream stores them in send order).
        let mut acks = Vec::new();
        let mut published: Vec<Option<String>> = Vec::new();
        for work in &batch.entities {
            for (event, new) in &work.events {
                let out = publish::event_message(
                    &event.subject,
                    &event.msg_id,
                    event.payload.clone().into(),
                );
                acks.push(self.send(out).await?);
                published
                    .push(new.then(|| event.msg_id.rsplit('/').next().unwrap_or("").to_string()));
            }
        }
        let mut dead: Vec<String> = Vec::new();
        for out in batch.dead_letters {
            if let Some(mapping) = out.headers.get("Tributary-Mapping") {
                dead.push(mapping.to_string());
            }
            acks.push(self.send(out).await?);
        }
        for ack in acks {
            ack.await
                .map_err(|e| DomainError::nats("publish to the domain stream", e))?;
        }
        for mapping in published.into_iter().flatten() {
            metrics::counter!(m::EVENTS, "mapping" => mapping).increment(1);
        }
        for mapping in dead {
            metrics::counter!(m::DEAD_LETTERS, "mapping" => mapping).increment(1);
        }
        let n = batch.messages.len();
        for msg in batch.messages {
            msg.ack().await.map_err(|e| DomainError::nats("ack", e))?;
        }
        metrics::histogram!(m::BATCH_SIZE).record(n as f64);
        metrics::histogram!(m::BATCH_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Applies the entity's changes of the batch, in order, to its loaded state.
    fn replay(&self, work: &mut EntityWork) -> Result<(), DomainError> {
        work.events.clear();
        work.dirty = false;
        let ops = std::mem::take(&mut work.ops);
        for op in &ops {
            let mapping = &self.mappings[op.mapping];
            let step = self.step(mapping, &op.change, &op.mapped, &mut work.state);
            match step {
                Ok(step) => work.record(step),
                Err(e) => {
                    work.ops = ops;
                    return Err(e);
                }
            }
        }
        work.ops = ops;
        Ok(())
    }
}

//! The domain stage: one task per source consumes the source's CDC stream through a durable
//! pull consumer, maps each change, and publishes domain events.
//!
//! ```text
//!  CDC_<SOURCE> ──durable consumer (1 unacked)──► map ──► entity state (KV, CAS) ──► RETAIL
//!       ▲                                          │ cannot map                       │ ack
//!       └──────────────── ack ◄────────────────────┴──► DLQ_DOMAIN ──────────────────┘
//! ```
//!
//! Delivery: a CDC message is acked only after every event (or dead letter) it produced is
//! acknowledged by JetStream, so nothing is lost. Nothing is published twice: event ids are
//! `<change id>/<mapping>` (`Nats-Msg-Id`), and the entity state records the last position
//! applied per mapping, so a redelivered change re-sends the identical event (dropped as a
//! duplicate) or nothing. One unacked message per consumer keeps the stream's order, hence
//! per-entity order for entities fed by one source; across sources, `entity_version` orders.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};
use tributary_config::{Config, DomainConfig};
use tributary_proto::cdc::v1::{ChangeEvent, Operation};
use tributary_proto::retail::v1::{DomainEvent, EventMeta, SourceRef};

use crate::mapping::{CompiledMapping, Mapped, RowView};
use crate::metrics as m;
use crate::schema::{get_path, set_path, Schema};
use crate::state::{LastEvent, StateStore};
use crate::{DomainError, MapError};

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
        let settings = |name: &str| tributary_config::ResolvedStream {
            name: name.to_string(),
            storage: config
                .nats
                .stream
                .storage
                .unwrap_or(tributary_config::StorageKind::File),
            replicas,
            max_age_secs: config.nats.stream.max_age_secs.unwrap_or(7 * 24 * 3600),
            max_bytes: config.nats.stream.max_bytes.unwrap_or(-1),
            duplicate_window_secs: config.nats.stream.duplicate_window_secs.unwrap_or(3600),
        };
        tributary_nats::ensure_stream(
            &js,
            &settings(&cfg.stream),
            vec![format!("{}.>", cfg.subject_prefix)],
        )
        .await?;
        tributary_nats::ensure_stream(
            &js,
            &settings(&cfg.dead_letter_stream),
            vec!["dlq.domain.>".into()],
        )
        .await?;
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
            js,
            mappings,
            ownership,
            parent_tables,
            streams,
            state,
        }))
    }

    /// Runs one task per source until `stop`; a task that fails restarts with backoff.
    pub async fn run(self, stop: CancellationToken) -> Result<(), DomainError> {
        let stage = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for (source, stream) in stage.streams.clone() {
            let stage = stage.clone();
            let stop = stop.clone();
            let span = info_span!("domain", source = %source);
            tasks
                .spawn(async move { stage.supervise(source, stream, stop).await }.instrument(span));
        }
        info!(mappings = stage.mappings.len(), sources = stage.streams.len(), stream = %stage.cfg.stream, "domain stage running");
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                warn!(error = %e, "domain task panicked");
            }
        }
        Ok(())
    }

    async fn supervise(&self, source: String, stream: String, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !stop.is_cancelled() {
            match self.consume(&source, &stream, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    metrics::counter!(m::ERRORS, "source" => source.clone()).increment(1);
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "domain task failed; restarting");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn consume(
        &self,
        source: &str,
        stream_name: &str,
        stop: &CancellationToken,
    ) -> Result<(), DomainError> {
        // The source task creates its stream; until it has, there is nothing to consume.
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| DomainError::nats(format!("stream {stream_name}"), e))?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &self.cfg.consumer,
                pull::Config {
                    durable_name: Some(self.cfg.consumer.clone()),
                    description: Some("Tributary domain stage".into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    // One message at a time: stream order is the order of the domain events.
                    max_ack_pending: 1,
                    // After a crash the unacked message blocks the consumer this long: keep it
                    // short, but above the longest handling (the parent wait dominates).
                    ack_wait: Duration::from_millis(self.cfg.parent_wait_ms.saturating_mul(3).max(10_000)),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                DomainError::nats(
                    format!("consumer {} on {stream_name}", self.cfg.consumer),
                    e,
                )
            })?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| DomainError::nats("pull", e))?;
        info!(stream = stream_name, consumer = %self.cfg.consumer, "consuming");
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let Some(msg) = next else {
                return Err(DomainError::nats("pull", "message stream ended"));
            };
            let msg = msg.map_err(|e| DomainError::nats("pull", e))?;
            let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
            // A message being handled is finished before a stop is honoured.
            match self
                .handle(source, stream_name, sequence, msg.payload.clone())
                .await
            {
                Ok(()) => msg.ack().await.map_err(|e| DomainError::nats("ack", e))?,
                Err(e) => {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    return Err(e);
                }
            }
        }
    }

    /// Maps one CDC message; Err only for transient failures (the message is redelivered).
    async fn handle(
        &self,
        source: &str,
        stream: &str,
        sequence: u64,
        payload: Bytes,
    ) -> Result<(), DomainError> {
        metrics::counter!(m::CHANGES, "source" => source.to_string()).increment(1);
        let change = match ChangeEvent::decode(payload.clone()) {
            Ok(c) => c,
            Err(e) => {
                let id = format!("{stream}:{sequence}");
                return self
                    .dead_letter("_decode", &id, payload, &MapError::Decode(e.to_string()))
                    .await;
            }
        };
        let table = format!("{}.{}", change.schema, change.table);
        let op = Operation::try_from(change.op).unwrap_or(Operation::Unspecified);
        if matches!(op, Operation::Insert | Operation::Update | Operation::Read) {
            if let Some(lists) = self.parent_tables.get(&(source.to_string(), table.clone())) {
                for columns in lists {
                    if let Some(key) = row_key(&change, columns) {
                        self.state
                            .put_row(source, &table, columns, &key, payload.clone())
                            .await?;
                    }
                }
            }
        }
        for mapping in self.mappings.iter().filter(|m| m.matches(&change)) {
            let name = &mapping.config.name;
            let span = info_span!("map", mapping = %name, event_id = %change.event_id);
            let result = self.map_one(mapping, &change).instrument(span).await?;
            if let Err(reason) = result {
                self.dead_letter(name, &change.event_id, payload.clone(), &reason)
                    .await?;
            }
        }
        Ok(())
    }

    /// Outer Err: transient (retry the message); inner Err: this change cannot be mapped.
    async fn map_one(
        &self,
        mapping: &CompiledMapping,
        change: &ChangeEvent,
    ) -> Result<Result<(), MapError>, DomainError> {
        let Some(row) = RowView::of(change) else {
            return Ok(Err(MapError::NoRow));
        };
        let parent_change = match mapping.parent_key(&row) {
            Err(e) => return Ok(Err(e)),
            Ok(None) => None,
            Ok(Some(key)) => match self.wait_for_parent(mapping, &change.source, &key).await? {
                Ok(c) => Some(c),
                Err(e) => return Ok(Err(e)),
            },
        };
        let parent_row = parent_change.as_ref().and_then(RowView::of);
        let mapped = match mapping.apply(&row, parent_row.as_ref()) {
            Ok(mapped) => mapped,
            Err(e) => return Ok(Err(e)),
        };
        self.publish_mapped(mapping, change, mapped).await.map(Ok)
    }

    async fn wait_for_parent(
        &self,
        mapping: &CompiledMapping,
        source: &str,
        key: &[String],
    ) -> Result<Result<ChangeEvent, MapError>, DomainError> {
        let Some(parent) = &mapping.config.parent else {
            return Ok(Err(MapError::NoRow));
        };
        let started = Instant::now();
        let wait = Duration::from_millis(self.cfg.parent_wait_ms);
        loop {
            if let Some(bytes) = self
                .state
                .get_row(source, &parent.table, parent.parent_columns(), key)
                .await?
            {
                return Ok(ChangeEvent::decode(bytes)
                    .map_err(|e| MapError::Decode(format!("parent row: {e}"))));
            }
            if started.elapsed() >= wait {
                return Ok(Err(MapError::MissingParent {
                    table: parent.table.clone(),
                    key: key.join(":"),
                    waited_ms: self.cfg.parent_wait_ms,
                }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Applies entity state (version, ownership, redelivery check) and publishes the event.
    async fn publish_mapped(
        &self,
        mapping: &CompiledMapping,
        change: &ChangeEvent,
        mapped: Mapped,
    ) -> Result<(), DomainError> {
        let cfg = &mapping.config;
        let entity_desc = match mapping.member.kind() {
            prost_reflect::Kind::Message(d) => d,
            _ => {
                return Err(DomainError::Descriptors(format!(
                    "{} is not a message",
                    mapping.member.name()
                )))
            }
        };
        let msg_id = format!("{}/{}", change.event_id, cfg.name);
        let subject = format!("{}.{}.{}", self.cfg.subject_prefix, cfg.entity, cfg.event);
        let position = (change.commit_lsn, change.ordinal);
        let owned = self.ownership.get(&cfg.entity);
        let system = mapping.config.system().to_string();
        loop {
            let (mut state, revision) = self.state.load_entity(&cfg.entity, &mapped.key).await?;
            match state.positions.get(&cfg.name) {
                Some(p) if *p > position => {
                    metrics::counter!(m::REDELIVERIES_SKIPPED, "source" => change.source.clone())
                        .increment(1);
                    return Ok(());
                }
                Some(p) if *p == position => {
                    // Applied before a crash: re-send the same event; JetStream drops it if stored.
                    metrics::counter!(m::REDELIVERIES_SKIPPED, "source" => change.source.clone())
                        .increment(1);
                    if let Some(last) = state.last.filter(|l| l.msg_id == msg_id) {
                        self.publish(&last.subject, &last.msg_id, last.payload.into())
                            .await?;
                    }
                    return Ok(());
                }
                _ => {}
            }
            let mut entity = match (&owned, &state.merged) {
                (Some(_), Some(bytes)) => {
                    DynamicMessage::decode(entity_desc.clone(), bytes.as_slice()).map_err(|e| {
                        DomainError::CorruptState {
                            key: mapped.key.clone(),
                            message: e.to_string(),
                        }
                    })?
                }
                _ => DynamicMessage::new(entity_desc.clone()),
            };
            for (path, value) in &mapped.values {
                let owner = owned
                    .and_then(|rules| rules.iter().find(|(f, _)| *f == path.text).map(|(_, o)| o));
                if let Some(owner) = owner {
                    // The authoritative system has written this entity: its value stands.
                    if *owner != system && state.systems.contains(owner) {
                        if value.is_some() && get_path(&entity, &path.fields) != *value {
                            metrics::counter!(m::OWNED_FIELDS_KEPT, "entity" => cfg.entity.clone())
                                .increment(1);
                            debug!(field = %path.text, owner = %owner, "kept the owner's value");
                        }
                        continue;
                    }
                }
                set_path(&mut entity, &path.fields, value.clone());
            }
            let version = state.version + 1;
            let meta = EventMeta {
                event_id: msg_id.clone(),
                entity: cfg.entity.clone(),
                event: cfg.event.clone(),
                entity_key: mapped.key.clone(),
                entity_version: version,
                system_of_record: system.clone(),
                event_time_micros: change.commit_time_micros,
                source_ref: Some(SourceRef {
                    source: change.source.clone(),
                    event_id: change.event_id.clone(),
                    commit_lsn: change.commit_lsn,
                    ordinal: change.ordinal,
                    origin: format!("{}.{}", change.schema, change.table),
                    feed_position: String::new(),
                }),
                mapping: cfg.name.clone(),
            };
            let entity_bytes = entity.encode_to_vec();
            let payload = encode_event(meta, mapping.member.number(), &entity_bytes);
            state.version = version;
            state.positions.insert(cfg.name.clone(), position);
            state.systems.insert(system.clone());
            state.merged = owned.map(|_| entity_bytes);
            state.last = Some(LastEvent {
                msg_id: msg_id.clone(),
                subject: subject.clone(),
                payload: payload.to_vec(),
            });
            // State first, then the event: after a crash in between, the redelivered change
            // finds its position applied and re-sends `last` (see above).
            if !self
                .state
                .save_entity(&cfg.entity, &mapped.key, &state, revision)
                .await?
            {
                continue;
            }
            self.publish(&subject, &msg_id, payload).await?;
            metrics::counter!(m::EVENTS, "mapping" => cfg.name.clone()).increment(1);
            return Ok(());
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
        self.publish_with(subject, headers, payload).await
    }

    async fn publish_with(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), DomainError> {
        let err = |e: &dyn std::fmt::Display| DomainError::nats(format!("publish to {subject}"), e);
        self.js
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(|e| err(&e))?
            .await
            .map_err(|e| err(&e))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        mapping: &str,
        event_id: &str,
        change: Bytes,
        reason: &MapError,
    ) -> Result<(), DomainError> {
        warn!(mapping, event_id, reason = %reason, "change cannot be mapped: dead-lettered");
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{event_id}/{mapping}/dlq").as_str(),
        );
        headers.insert("Tributary-Mapping", mapping);
        headers.insert(
            "Tributary-Reason",
            reason.to_string().replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert("Tributary-Source-Event-Id", event_id);
        let subject = format!("dlq.domain.{}", tributary_nats::subject::token(mapping));
        self.publish_with(&subject, headers, change).await?;
        metrics::counter!(m::DEAD_LETTERS, "mapping" => mapping.to_string()).increment(1);
        Ok(())
    }
}

/// The row's values of `columns` (None when one is NULL or absent).
fn row_key(change: &ChangeEvent, columns: &[String]) -> Option<Vec<String>> {
    let row = RowView::of(change)?;
    columns.iter().map(|c| row.text(c)).collect()
}

/// `DomainEvent { meta, <member> = entity }`: the generated type encodes the meta, and the
/// entity (built dynamically) is appended as its oneof field; protobuf decoders merge both.
fn encode_event(meta: EventMeta, member: u32, entity: &[u8]) -> Bytes {
    let head = DomainEvent {
        meta: Some(meta),
        entity: None,
    };
    let mut buf = Vec::with_capacity(head.encoded_len() + entity.len() + 8);
    head.encode_raw(&mut buf);
    prost::encoding::encode_key(member, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(entity.len() as u64, &mut buf);
    buf.extend_from_slice(entity);
    buf.into()
}

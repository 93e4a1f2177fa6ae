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

use async_nats::jetstream::{self, consumer::pull, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};
use tributary_config::{Config, DomainConfig};
use tributary_proto::cdc::v1::{ChangeEvent, Operation};

mod entity;
mod publish;

use crate::mapping::{CompiledMapping, RowView};
use crate::metrics as m;
use crate::schema::Schema;
use crate::state::StateStore;
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
                    ack_wait: Duration::from_millis(
                        self.cfg.parent_wait_ms.saturating_mul(3).max(10_000),
                    ),
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
}

/// The row's values of `columns` (None when one is NULL or absent).
fn row_key(change: &ChangeEvent, columns: &[String]) -> Option<Vec<String>> {
    let row = RowView::of(change)?;
    columns.iter().map(|c| row.text(c)).collect()
}

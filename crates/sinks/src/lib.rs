//! Sink workers: apply `tributary.retail.v1` domain events from the `RETAIL` stream to
//! target systems (the WMS, Shopify, Salesforce, the ERP's inbox), effectively once.
//!
//! ```text
//!  RETAIL ──durable pull consumer per sink (filter subjects)──► dispatcher
//!            ▲                                                  │ hash(entity key) % lanes
//!            │ ack after the target confirmed                   ▼
//!            └──────────── lane: version guard (KV) ─► target (retries, backoff, pacing)
//!                                                   └─ definite error ─► DLQ_SINKS dlq.sink.<sink>
//! ```
//!
//! Delivery contract: at-least-once delivery from JetStream, made effectively-once at the
//! target by idempotency keys derived from the event id ([`idempotency_key`]) and external
//! references (the WMS `reference_id`), and by the version guard, which acks an event whose
//! entity version is not above the last one applied. One entity's events apply in stream
//! order (one lane per entity); different entities in parallel.

mod activity;
pub mod admin;
mod batch;
mod erp;
mod error;
mod http;
mod lane;
pub mod metrics;
mod outcome;
mod priority;
pub mod repair;
mod salesforce;
mod shopify;
mod state;
mod stock_reader;
mod target;
mod wms;
mod worker;

use std::sync::Arc;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};
use tributary_config::{Config, PriorityClass, SinkPriority, SinksConfig};
use tributary_core::{BoxFuture, Component, Failure, Health};

pub use error::{ApplyError, SinkError};
pub use state::{EntityRecord, ReplayWindow, StateStore};
pub use stock_reader::StockReader;

use target::Target;
use worker::SinkWorker;

/// Names of the sinks this build knows, as used in `--sink`, subjects and consumer names.
pub const SINK_NAMES: &[&str] = &["wms", "shopify", "salesforce", "erp"];

/// Name of a sink's durable consumer on the domain stream (with one partition; see
/// [`partition_consumers`]).
pub fn consumer_name(sink: &str) -> String {
    format!("tributary-sink-{sink}")
}

/// One durable consumer of a sink: all its events (`sinks.partitions = 1`) or one partition,
/// of one priority class when the sink's events fall into two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionConsumer {
    /// None with one partition: the consumer and the component keep their unpartitioned
    /// names, so a deployment that never partitioned keeps its consumer position.
    pub partition: Option<u32>,
    /// The class of its events: None when the sink reads one class only (or priority is
    /// off), and then the consumer keeps the sink's plain name.
    pub class: Option<PriorityClass>,
    /// Durable name: `tributary-sink-<sink>`, `tributary-sink-<sink>-p07`, and for the low
    /// class `tributary-sink-<sink>-low` / `tributary-sink-<sink>-low-p07`.
    pub name: String,
    pub filters: Vec<String>,
}

impl PartitionConsumer {
    /// The partition token (`p07`), empty without partitions: the `partition` metric label.
    pub fn label(&self) -> String {
        self.partition
            .map(tributary_core::partition::partition_token)
            .unwrap_or_default()
    }

    /// The `class` metric label: `high`, `low`, or `all` for a sink with one class.
    pub fn class_label(&self) -> &'static str {
        self.class.map_or("all", PriorityClass::as_str)
    }
}

/// The priority settings of a sink (None for an unknown or unconfigured sink).
pub fn sink_priority<'a>(cfg: &'a SinksConfig, sink: &str) -> Option<&'a SinkPriority> {
    match sink {
        "wms" => cfg.wms.as_ref().map(|c| &c.priority),
        "shopify" => cfg.shopify.as_ref().map(|c| &c.priority),
        "salesforce" => cfg.salesforce.as_ref().map(|c| &c.priority),
        "erp" => cfg.erp.as_ref().map(|c| &c.priority),
        _ => None,
    }
}

/// The sink's filter subjects by class: one entry when they are all of one class, else the
/// high class's then the low class's. The entity is the filter's token after the prefix.
fn filters_by_class(cfg: &SinksConfig, sink: &str) -> Vec<(Option<PriorityClass>, Vec<String>)> {
    let filters = filter_subjects(cfg, sink);
    let Some(priority) = sink_priority(cfg, sink) else {
        return vec![(None, filters)];
    };
    let prefix = format!("{}.", cfg.subject_prefix);
    let class = |f: &String| {
        let entity = f
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('.').next())
            .unwrap_or("");
        priority.class_of(entity)
    };
    let (high, low): (Vec<String>, Vec<String>) = filters
        .into_iter()
        .partition(|f| class(f) == PriorityClass::High);
    if high.is_empty() || low.is_empty() {
        return vec![(None, if high.is_empty() { low } else { high })];
    }
    vec![
        (Some(PriorityClass::High), high),
        (Some(PriorityClass::Low), low),
    ]
}

/// Every durable consumer of `sink` (none for an unknown or unconfigured sink): one per
/// priority class and partition, each filtered on its class's subjects and partition token.
/// Each entity belongs to one class, so one entity's events stay in one consumer, in order.
pub fn partition_consumers(cfg: &SinksConfig, sink: &str) -> Vec<PartitionConsumer> {
    let mut out = Vec::new();
    for (class, filters) in filters_by_class(cfg, sink) {
        if filters.is_empty() {
            continue;
        }
        let base = match class {
            Some(PriorityClass::Low) => format!("{}-low", consumer_name(sink)),
            _ => consumer_name(sink),
        };
        if cfg.partitions <= 1 {
            out.push(PartitionConsumer {
                partition: None,
                class,
                name: base,
                filters,
            });
            continue;
        }
        out.extend((0..cfg.partitions).map(|p| {
            PartitionConsumer {
                partition: Some(p),
                class,
                name: format!("{base}-{}", tributary_core::partition::partition_token(p)),
                filters: filters
                    .iter()
                    .map(|f| tributary_core::partition::partition_filter(f, p))
                    .collect(),
            }
        }));
    }
    out
}

/// The idempotency key a sink sends for an event: a UUID-shaped digest of sink and event id
/// (Shopify wants a UUID; the same event always gets the same key).
pub fn idempotency_key(sink: &str, event_id: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{sink}\n{event_id}").as_bytes(),
    );
    let b = digest.as_ref();
    let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-5{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The filter subjects of a sink's consumer (empty for an unknown or unconfigured sink).
pub fn filter_subjects(cfg: &SinksConfig, sink: &str) -> Vec<String> {
    let prefix = &cfg.subject_prefix;
    match sink {
        "wms" => cfg
            .wms
            .as_ref()
            .map(|w| wms::WmsTarget::filter_subjects(w, prefix))
            .unwrap_or_default(),
        "shopify" => cfg
            .shopify
            .as_ref()
            .map(|s| shopify::ShopifyTarget::filter_subjects(s, prefix))
            .unwrap_or_default(),
        "salesforce" => cfg
            .salesforce
            .as_ref()
            .map(|_| salesforce::SalesforceTarget::filter_subjects(prefix))
            .unwrap_or_default(),
        "erp" => cfg
            .erp
            .as_ref()
            .map(|e| erp::ErpTarget::filter_subjects(e, prefix))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The configured sink workers, ready to run.
pub struct Sinks {
    workers: Vec<Arc<SinkWorker>>,
}

impl Sinks {
    /// The streams the sinks create: their dead-letter stream (none without `[sinks]`).
    pub fn streams(config: &Config) -> Vec<tributary_nats::StreamSpec> {
        let Some(cfg) = &config.sinks else {
            return Vec::new();
        };
        vec![tributary_nats::StreamSpec {
            settings: config.nats.stream_named(&cfg.dead_letter_stream, None),
            subjects: vec!["dlq.sink.>".into()],
            component: "sinks".into(),
            name_key: "sinks.dead_letter_stream",
        }]
    }

    /// Checks the configuration, provisions the dead-letter stream and the state bucket.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<Sinks>, SinkError> {
        let Some(cfg) = config.sinks.clone() else {
            return Ok(None);
        };
        cfg.validate()
            .map_err(|e| SinkError::config("sinks", e.to_string()))?;
        metrics::describe();
        let replicas = config.nats.stream.replicas.unwrap_or(1);
        for spec in Sinks::streams(config) {
            tributary_nats::ensure_stream(&js, &spec).await?;
        }
        let state = StateStore::open(&js, &cfg.state_bucket, replicas).await?;
        let mut targets: Vec<(&'static str, Target, &tributary_config::SinkDelivery)> = Vec::new();
        if let Some(w) = &cfg.wms {
            targets.push((
                "wms",
                Target::Wms(Box::new(wms::WmsTarget::new(w)?)),
                &w.delivery,
            ));
        }
        if let Some(s) = &cfg.shopify {
            let storefronts = config.shopify.iter().map(|f| f.system.clone()).collect();
            let target = shopify::ShopifyTarget::new(s, state.clone(), storefronts)?;
            targets.push(("shopify", Target::Shopify(Box::new(target)), &s.delivery));
        }
        if let Some(sf) = &cfg.salesforce {
            let target = salesforce::SalesforceTarget::new(sf)?;
            targets.push(("salesforce", Target::Salesforce(target), &sf.delivery));
        }
        if let Some(e) = &cfg.erp {
            let target = erp::ErpTarget::new(e, &config.sources).await?;
            targets.push(("erp", Target::Erp(Box::new(target)), &e.delivery));
        }
        let mut workers = Vec::new();
        for (name, target, delivery) in targets {
            // The partitions of a sink share its target: its HTTP client, pacing and
            // request batching see every lane of this process.
            let target = Arc::new(target);
            // Shared by the sink's classes: the high class's throttles hold the low one back.
            let pressure = Arc::new(priority::Pressure::new(sink_priority(&cfg, name)));
            for part in partition_consumers(&cfg, name) {
                workers.push(Arc::new(SinkWorker::new(
                    name,
                    (target.clone(), pressure.clone()),
                    delivery.clone(),
                    &cfg,
                    js.clone(),
                    state.clone(),
                    part,
                )));
            }
        }
        Ok(Some(Sinks { workers }))
    }

    /// One component per sink and partition (`sink shopify`, `sink shopify p07`): a consumer
    /// that fails transiently is restarted by the runtime, a target outage pauses only that
    /// sink (its lanes retry), corrupt state stops the bridge. Under `[ha]` each is a unit.
    pub fn components(self) -> Vec<Box<dyn Component>> {
        info!(consumers = self.workers.len(), "sink workers running");
        self.workers
            .into_iter()
            .map(|worker| {
                Box::new(SinkTask {
                    name: worker.component_name(),
                    worker,
                    fence: Default::default(),
                }) as Box<dyn Component>
            })
            .collect()
    }
}

/// One sink's consumer session as a component.
struct SinkTask {
    name: String,
    worker: Arc<SinkWorker>,
    fence: tributary_core::FenceCell,
}

impl Component for SinkTask {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        let span = info_span!("sink", sink = self.worker.name, partition = %self.worker.partition);
        Box::pin(
            async move {
                let fence = self.fence.get();
                let result = self.worker.session(&fence, stop).await;
                if result.is_err() {
                    ::metrics::counter!(metrics::ERRORS, "sink" => self.worker.name).increment(1);
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

    fn health(&self) -> Health {
        match self.worker.target_failure() {
            Some(why) => Health::Degraded(format!("target {} failing: {why}", self.worker.name)),
            None => Health::Healthy,
        }
    }
}

/// Used by `tributary replay` (no running bridge needed).
pub fn sinks_config(config: &Config) -> Result<&SinksConfig, SinkError> {
    config
        .sinks
        .as_ref()
        .ok_or_else(|| SinkError::config("sinks", "no [sinks] section in the configuration"))
}

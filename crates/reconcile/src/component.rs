//! The reconciliation as a supervised component (`reconcile inventory`): a sweep at start
//! and every `interval_secs`; under `[ha]` a work unit like the tracker, every publish and
//! the report behind its fence.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument as _};
use tributary_config::Config;
use tributary_core::{BoxFuture, Classify, Component, ErrorClass, Failure, Fence, FenceCell};

use crate::publish::Publisher;
use crate::report::{Report, ReportStore};
use crate::shared::Shared;
use crate::{metrics as m, ReconcileError};

pub struct Reconciler {
    shared: Arc<Shared>,
    fence: FenceCell,
}

impl Reconciler {
    /// Provisions the drift events' stream and the report bucket; None when
    /// `[reconcile.inventory]` is absent.
    pub async fn prepare(
        config: &Config,
        js: jetstream::Context,
    ) -> Result<Option<Reconciler>, ReconcileError> {
        let (Some(cfg), Some(sinks)) = (config.reconcile.inventory.clone(), &config.sinks) else {
            return Ok(None);
        };
        m::describe();
        let replicas = config.nats.stream.replicas.unwrap_or(1);
        let spec = tributary_nats::StreamSpec {
            settings: config.nats.stream_named(&cfg.stream, None),
            subjects: vec![format!("{}.>", cfg.subject_prefix)],
            component: "reconcile".into(),
            name_key: "reconcile.inventory.stream",
        };
        tributary_nats::ensure_stream(&js, &spec).await?;
        let reports = ReportStore::open(&js, &cfg.state_bucket, replicas).await?;
        let state = tributary_sinks::StateStore::open(&js, &sinks.state_bucket, replicas).await?;
        let domain_bucket = config
            .domain
            .as_ref()
            .map(|d| d.state_bucket.clone())
            .unwrap_or_else(|| "tributary_domain".into());
        let shared = Shared {
            reader: tributary_sinks::StockReader::new(sinks, state.clone())?,
            sinks: state,
            publisher: Publisher {
                js: js.clone(),
                drift_subject: cfg.drift_subject(),
                domain_prefix: sinks.subject_prefix.clone(),
                partitions: sinks.partitions,
            },
            domain_bucket,
            cfg,
            js,
            reports,
        };
        Ok(Some(Reconciler {
            shared: Arc::new(shared),
            fence: FenceCell::default(),
        }))
    }

    /// One sweep now (the component's, or `tributary inventory drift --sweep`).
    pub async fn sweep(&self, fence: &Fence) -> Result<Report, ReconcileError> {
        crate::sweep::sweep(&self.shared, fence).await
    }

    async fn run_sweeps(
        &self,
        fence: &Fence,
        stop: &CancellationToken,
    ) -> Result<(), ReconcileError> {
        let every = Duration::from_secs(self.shared.cfg.interval_secs);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let result = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = self.sweep(fence) => r,
            };
            match result {
                Ok(_) => {}
                // A target or NATS that cannot be read now: the next sweep tries again.
                Err(e) if matches!(e.class(), ErrorClass::Transient { .. }) => {
                    metrics::counter!(m::SWEEPS, "outcome" => m::FAILED).increment(1);
                    warn!(error = %e, "inventory sweep abandoned");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Component for Reconciler {
    fn name(&self) -> String {
        "reconcile inventory".into()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(
            async move {
                let fence = self.fence.get();
                Ok(self.run_sweeps(&fence, stop).await?)
            }
            .instrument(info_span!("reconcile", kind = "inventory")),
        )
    }

    fn set_fence(&self, fence: Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

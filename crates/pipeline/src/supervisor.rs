//! A source as a [`Component`]: one replication session per run; [`tributary_core::supervise`]
//! reconnects it with capped backoff on transient errors and stops it on the others (which
//! need an operator).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use tributary_core::{BoxFuture, Classify, Component, Failure, Health, RetryPolicy};
use tributary_postgres::ControlConnection;

use crate::context::SourceContext;
use crate::metrics as m;
use crate::PipelineError;

/// Checks what must hold before the bridge starts: the server is reachable with these
/// credentials, logical replication is on, the publication is usable and its tables have a
/// replica identity, and an existing slot of the configured name is this source's kind.
pub async fn startup_check(ctx: &SourceContext) -> Result<(), PipelineError> {
    let control = ControlConnection::connect(&ctx.params)
        .await
        .map_err(|e| ctx.pg_err(e))?;
    control.check_server().await.map_err(|e| ctx.pg_err(e))?;
    ctx.check_publication(&control).await?;
    if let Some(server) = control.server_identity().await.map_err(|e| ctx.pg_err(e))? {
        claim_slot(ctx, server)?;
    }
    match control
        .slot(&ctx.config.slot)
        .await
        .map_err(|e| ctx.pg_err(e))?
    {
        Some(info) => ctx.check_slot_kind(&info),
        None => Ok(()),
    }
}

/// The slots this process's sources use, by (server identity, slot name). Config loading
/// compares host names only; this catches two names of one server. Process-wide because one
/// process is one bridge and `run` checks its sources one after the other.
static CLAIMED_SLOTS: Mutex<BTreeMap<(String, String), String>> = Mutex::new(BTreeMap::new());

fn claim_slot(ctx: &SourceContext, server: String) -> Result<(), PipelineError> {
    let source = &ctx.config.name;
    let mut claimed = CLAIMED_SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    let owner = claimed
        .entry((server.clone(), ctx.config.slot.clone()))
        .or_insert_with(|| source.clone());
    if owner != source {
        return Err(ctx.fatal(format!(
            "slot {:?} (config key `sources.slot`) is also the slot of source {owner:?}: both reach \
             the same PostgreSQL server (system {server}) under different host names; a slot has one \
             reader and one history, so give each source its own slot name",
            ctx.config.slot
        )));
    }
    Ok(())
}

/// One PostgreSQL source: each run is one replication session.
pub struct Source {
    ctx: SourceContext,
    name: String,
}

impl Source {
    /// Replication sessions back off more slowly than consumers: a PostgreSQL restart takes
    /// a while.
    pub const RETRY: RetryPolicy = RetryPolicy::SOURCE;

    pub fn new(ctx: SourceContext) -> Self {
        let name = format!("source {}", ctx.config.name);
        Source { ctx, name }
    }
}

impl Component for Source {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let Err(e) = self.ctx.run_session(stop).await else {
                return Ok(());
            };
            let source = self.ctx.config.name.clone();
            metrics::counter!(m::ERRORS, "source" => source.clone(), "class" => e.class())
                .increment(1);
            if Classify::class(&e).is_transient() {
                metrics::counter!(m::RECONNECTS, "source" => source).increment(1);
            }
            Err(e.into())
        })
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.ctx.fence.set(fence);
        true
    }

    fn health(&self) -> Health {
        if self.ctx.ready.load(Ordering::Relaxed) {
            Health::Healthy
        } else {
            Health::Starting
        }
    }
}

//! Keeps a source running: reconnects with capped exponential backoff on transient errors,
//! stops on definite ones (which need an operator).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};
use tributary_postgres::ControlConnection;

use crate::metrics as m;
use crate::{PipelineError, SourceContext};

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lived this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

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

/// Runs the source until `shutdown` (Ok) or a definite error.
pub async fn run_source(
    ctx: SourceContext,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    let source = ctx.config.name.clone();
    let reconnects = metrics::counter!(m::RECONNECTS, "source" => source.clone());
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let result = ctx.run_session(&shutdown).await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) => {
                metrics::counter!(m::ERRORS, "source" => source.clone(), "class" => e.class())
                    .increment(1);
                if !e.is_transient() {
                    error!(%source, error = %e, "source stopped");
                    return Err(e);
                }
                if started.elapsed() > HEALTHY_SESSION {
                    backoff = BACKOFF_MIN;
                }
                warn!(%source, error = %e, retry_in_ms = backoff.as_millis() as u64, "session ended; reconnecting");
                reconnects.increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

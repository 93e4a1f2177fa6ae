//! `[ha]`: the components become work units that the replicas share through leases
//! (crates/ha); each unit is supervised as in single-process mode, under its lease's fence.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_config::{Config, HaConfig};
use tributary_core::{retry_until, supervise, Component, Fence, RetryPolicy};
use tributary_ha::{Coordinator, CoordinatorOptions, LeaseStore, UnitContext, UnitSpec};

/// The replica's id: `ha.instance_id`, else the host name.
pub fn instance_id(ha: &HaConfig) -> String {
    ha.instance_id
        .clone()
        .unwrap_or_else(tributary_ha::default_instance_id)
}

/// Opens the lease bucket and turns every component into a unit. A component that cannot be
/// fenced is refused: it would act without knowing whether it still owns its work.
pub async fn coordinator(
    config: &Config,
    ha: &HaConfig,
    js: &async_nats::jetstream::Context,
    components: Vec<(Box<dyn Component>, RetryPolicy)>,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Coordinator>> {
    let replicas = ha.replicas.or(config.nats.stream.replicas).unwrap_or(1);
    let instance = instance_id(ha);
    // A replica restarted while a NATS node is down or a leader is being elected must wait
    // for the bucket like for any other dependency at start-up, not exit.
    let store = retry_until(
        "lease bucket",
        Duration::from_secs(config.startup_timeout_secs),
        RetryPolicy::STARTUP,
        stop,
        || {
            LeaseStore::open(
                js,
                &ha.lease_bucket,
                Duration::from_millis(ha.lease_ttl_ms),
                replicas,
                &instance,
            )
        },
    )
    .await?;
    let Some(store) = store else {
        return Ok(None);
    };
    let mut units = Vec::with_capacity(components.len());
    for (component, policy) in components {
        let component: Arc<dyn Component> = Arc::from(component);
        if !component.set_fence(Fence::always()) {
            anyhow::bail!(
                "component {} cannot run as a replicated unit under [ha]",
                component.name()
            );
        }
        let name = component.name();
        units.push(UnitSpec {
            name,
            run: Arc::new(move |ctx: UnitContext| {
                let component = component.clone();
                Box::pin(async move {
                    component.set_fence(ctx.fence.clone());
                    supervise(component.as_ref(), policy, &ctx.stop)
                        .await
                        .map_err(|stopped| Box::new(stopped) as tributary_ha::BoxError)
                })
            }),
        });
    }
    tracing::info!(%instance, units = units.len(), bucket = %ha.lease_bucket, ttl_ms = ha.lease_ttl_ms, "high availability: units shared through leases");
    Ok(Some(Coordinator::new(
        store,
        units,
        CoordinatorOptions {
            drain_timeout: Duration::from_millis(ha.drain_timeout_ms),
        },
    )))
}

/// Runs the coordinator until `shutdown`; a unit that stops for good stops the replica.
pub async fn run(coordinator: Coordinator, shutdown: CancellationToken) -> anyhow::Result<()> {
    coordinator.run(shutdown).await.map_err(anyhow::Error::new)
}

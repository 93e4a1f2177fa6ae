//! `tributary run`: wait for the dependencies, check what must hold, then supervise the list
//! of components (sources, the domain stage's consumers, sinks, SaaS feeds) until stopped.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tributary_config::Config;
use tributary_core::{retry_until, supervise, Classify, Component, ErrorClass, RetryPolicy};
use tributary_pipeline::SourceContext;

use crate::readiness::{Readiness, Tracked};

pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = tributary_config::load(path)?;
    crate::telemetry::init_logging(&config.log);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    run_config(config, shutdown).await
}

/// Runs the bridge until `shutdown` is cancelled. At start-up, unreachable dependencies are
/// waited for (up to `startup_timeout_secs`); bad input stops it at once.
pub async fn run_config(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = crate::telemetry::init_metrics()?;
    tributary_core::describe_metrics();
    let startup = Startup {
        deadline: Duration::from_secs(config.startup_timeout_secs),
        stop: &shutdown,
    };
    let Some(nats) = startup
        .wait("NATS", || {
            tributary_nats::connect(&config.nats, "tributary")
        })
        .await?
    else {
        return Ok(());
    };
    let js = async_nats::jetstream::ContextBuilder::new()
        .max_ack_inflight(config.nats.ack_window * 2 + 1024)
        .backpressure_on_inflight(true)
        .timeout(Duration::from_secs(10))
        .build(nats.clone());
    // Reachability of the JetStream API, so that a server without -js fails here.
    let servers = config.nats.servers.join(", ");
    let jetstream = startup.wait("JetStream", || async {
        js.query_account()
            .await
            .map_err(|source| JetStreamUnavailable {
                servers: servers.clone(),
                source,
            })
    });
    if jetstream.await?.is_none() {
        return Ok(());
    }

    let mut components: Vec<(Box<dyn Component>, RetryPolicy)> = Vec::new();
    for source in &config.sources {
        let params = tributary_pipeline::connect_params(source)?;
        let ctx = SourceContext {
            config: source.clone(),
            params,
            js: js.clone(),
            nats: nats.clone(),
            stream: config.nats.resolved_stream(source),
            subject_prefix: config.nats.subject_prefix.clone(),
            ack_window: config.nats.ack_window,
            msg_id_header: config.nats.msg_id_header,
            confirm_delay: Duration::from_millis(config.durability.confirm_delay_ms),
            ready: Arc::new(AtomicBool::new(false)),
            fence: Default::default(),
            take_over_slot: config.ha.is_some(),
            schemas: Default::default(),
        };
        let what = format!("source {}: PostgreSQL", source.name);
        if startup
            .wait(&what, || tributary_pipeline::startup_check(&ctx))
            .await?
            .is_none()
        {
            return Ok(());
        }
        let source = tributary_pipeline::Source::new(ctx);
        components.push((Box::new(source), tributary_pipeline::Source::RETRY));
    }

    // The domain stage (when configured) checks its mappings before anything runs.
    // Its own connection and ack window: on the sources' connection its publishes and KV
    // writes queued behind a source writing a large backlog (and its in-flight acks).
    if config.domain.is_some() {
        let connect = || tributary_nats::connect(&config.nats, "tributary-domain");
        let Some(domain_nats) = startup.wait("NATS (domain stage)", connect).await? else {
            return Ok(());
        };
        let domain_js = async_nats::jetstream::ContextBuilder::new()
            .max_ack_inflight(4096)
            .backpressure_on_inflight(true)
            .timeout(Duration::from_secs(10))
            .build(domain_nats);
        let prepare = || tributary_domain::DomainStage::prepare(&config, domain_js.clone());
        let Some(stage) = startup.wait("domain stage", prepare).await? else {
            return Ok(());
        };
        let consumers = stage.map(|s| s.components()).unwrap_or_default();
        components.extend(consumers.into_iter().map(|c| (c, RetryPolicy::COMPONENT)));
    }
    // Sink workers (when configured): dead-letter stream and state bucket before anything runs.
    let prepare = || tributary_sinks::Sinks::prepare(&config, js.clone());
    let Some(sinks) = startup.wait("sinks", prepare).await? else {
        return Ok(());
    };
    let sinks = sinks.map(|s| s.components()).unwrap_or_default();
    components.extend(sinks.into_iter().map(|c| (c, RetryPolicy::COMPONENT)));
    // The order-to-cash tracker (when configured): its stream and bucket before anything runs.
    let prepare = || tributary_tracker::Tracker::prepare(&config, js.clone());
    let Some(tracker) = startup.wait("tracker", prepare).await? else {
        return Ok(());
    };
    if let Some(tracker) = tracker {
        components.push((Box::new(tracker), RetryPolicy::COMPONENT));
    }
    // The inventory reconciliation (when configured): its stream and report bucket.
    let prepare = || tributary_reconcile::Reconciler::prepare(&config, js.clone());
    let Some(reconciler) = startup.wait("reconcile inventory", prepare).await? else {
        return Ok(());
    };
    if let Some(reconciler) = reconciler {
        components.push((Box::new(reconciler), RetryPolicy::COMPONENT));
    }

    // The SaaS feeds: their webhook servers are receivers (every replica under [ha]); their
    // mapping consumers, reconciliation pollers and CDC subscriptions are components.
    let mut saas = tributary_saas::FeedParts::default();
    // Shopify webhook sources (when configured): streams, buckets and listeners bound.
    let prepare = || tributary_saas::shopify::ShopifySources::prepare(&config, js.clone());
    let Some(shopify) = startup.wait("shopify", prepare).await? else {
        return Ok(());
    };
    if let Some(shopify) = shopify {
        saas.extend(shopify.parts(&shutdown)?);
    }
    // Salesforce Change Data Capture (when configured): streams and the position bucket.
    let prepare = || tributary_saas::salesforce::SalesforceCdcSources::prepare(&config, js.clone());
    let Some(salesforce_cdc) = startup.wait("salesforce_cdc", prepare).await? else {
        return Ok(());
    };
    if let Some(salesforce_cdc) = salesforce_cdc {
        saas.extend(salesforce_cdc.parts());
    }
    // WMS lifecycle webhooks (`[[wms]]`): raw stream, domain state, listener bound.
    let prepare = || tributary_saas::wms::WmsWebhookSource::prepare(&config, js.clone());
    let Some(wms_webhooks) = startup.wait("wms_webhooks", prepare).await? else {
        return Ok(());
    };
    if let Some(wms_webhooks) = wms_webhooks {
        saas.extend(wms_webhooks.parts(&shutdown));
    }
    let receivers = saas.receivers;
    components.extend(
        saas.components
            .into_iter()
            .map(|c| (c, RetryPolicy::COMPONENT)),
    );

    crate::telemetry::register_metrics(&config, &components);
    crate::streams_monitor::start(&config, js.clone(), shutdown.clone()).await;

    let addr = config
        .http_listen
        .parse()
        .with_context(|| format!("config key `http_listen`: {:?}", config.http_listen))
        .map_err(crate::exit::config)?;
    // Under [ha] the units move between replicas: a replica is ready once it is a member of
    // the group (owning nothing is fine), not when every source streams here.
    let mut ready = Readiness::default();
    let (components, coordinator, live) = match &config.ha {
        Some(ha) => {
            let Some(coordinator) =
                crate::replicas::coordinator(&config, ha, &js, components, &shutdown).await?
            else {
                return Ok(());
            };
            let member = coordinator.joined();
            ready.add_task("replica group", member, "membership".into());
            let leases = coordinator.lease_health();
            let live: crate::http::Liveness = Arc::new(move || leases.check());
            (Vec::new(), Some(coordinator), Some(live))
        }
        None => {
            let tracked: Vec<(Arc<Tracked>, RetryPolicy)> = components
                .into_iter()
                .map(|(c, policy)| (Tracked::new(c), policy))
                .collect();
            for (t, _) in &tracked {
                ready.add_tracked(t);
            }
            (tracked, None, None)
        }
    };
    // A webhook server is ready while it serves (the feed's consumers are components above).
    let receivers: Vec<tributary_saas::Receiver> = receivers
        .into_iter()
        .map(|(name, receiver)| {
            let alive = Arc::new(AtomicBool::new(true));
            ready.add_task(name.clone(), alive.clone(), "serving".into());
            Box::pin(async move {
                receiver.await;
                alive.store(false, Ordering::Relaxed);
            }) as tributary_saas::Receiver
        })
        .collect();
    let http_stop = CancellationToken::new();
    let status = crate::http::StatusSource {
        config: config.clone(),
        js: js.clone(),
    };
    let http = crate::http::serve(addr, metrics, ready, live, status, http_stop.clone()).await?;
    info!(%addr, components = components.len(), receivers = receivers.len(), ha = coordinator.is_some(), "tributary running");

    let failure = run_all(components, coordinator, receivers, &shutdown).await;
    http_stop.cancel();
    let _ = http.await;
    let _ = nats.flush().await;
    match failure {
        Some(e) => Err(e),
        None => {
            info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Supervises every component until `shutdown`; the first one that stops for good stops
/// the others, and its error is returned.
async fn run_all(
    components: Vec<(Arc<Tracked>, RetryPolicy)>,
    coordinator: Option<tributary_ha::Coordinator>,
    receivers: Vec<tributary_saas::Receiver>,
    shutdown: &CancellationToken,
) -> Option<anyhow::Error> {
    // The webhook servers serve until `shutdown`, then finish the requests in flight.
    let mut serving = tokio::task::JoinSet::new();
    for receiver in receivers {
        serving.spawn(receiver);
    }
    if let Some(coordinator) = coordinator {
        let result = crate::replicas::run(coordinator, shutdown.clone()).await;
        shutdown.cancel();
        serving.join_all().await;
        return result.err();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (component, policy) in components {
        let stop = shutdown.clone();
        tasks.spawn(async move { supervise(component.as_ref(), policy, &stop).await });
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let e = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(stopped)) => anyhow::Error::new(stopped),
            Err(e) => anyhow::anyhow!("component task: {e}"),
        };
        if failure.is_none() {
            error!(error = %tributary_core::chain(e.as_ref()), "stopping the bridge");
            shutdown.cancel();
            failure = Some(e);
        }
    }
    serving.join_all().await;
    failure
}

/// Start-up's rules: a dependency that is not there yet is waited for, up to `deadline`.
struct Startup<'a> {
    deadline: Duration,
    stop: &'a CancellationToken,
}

impl Startup<'_> {
    /// `Ok(None)`: stopped (SIGTERM) while waiting.
    async fn wait<T, E, F, Fut>(&self, what: &str, attempt: F) -> anyhow::Result<Option<T>>
    where
        E: Classify,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let waited = retry_until(
            what,
            self.deadline,
            RetryPolicy::STARTUP,
            self.stop,
            attempt,
        );
        // A transient error here is one still there at the deadline: a dependency that did
        // not become reachable (its own exit code); others are the configuration's or data's.
        waited.await.map_err(|e| match e.class() {
            ErrorClass::Transient { .. } => crate::exit::unreachable(e),
            _ => anyhow::Error::new(e),
        })
    }
}

#[derive(Debug)]
struct JetStreamUnavailable {
    servers: String,
    source: async_nats::jetstream::context::AccountError,
}

impl fmt::Display for JetStreamUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NATS at {}: JetStream is not available: {}",
            self.servers, self.source
        )
    }
}

impl std::error::Error for JetStreamUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Classify for JetStreamUnavailable {
    fn class(&self) -> ErrorClass {
        use async_nats::jetstream::context::AccountErrorKind;
        match self.source.kind() {
            // The server answered: JetStream is off for this account.
            AccountErrorKind::JetStream(_) => ErrorClass::Definite {
                reason: "jetstream",
            },
            // Starting up, or a server without -js (it does not answer the API).
            _ => ErrorClass::TRANSIENT,
        }
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "cannot install the SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT: draining"),
            _ = term.recv() => info!("SIGTERM: draining"),
        }
        shutdown.cancel();
    });
}

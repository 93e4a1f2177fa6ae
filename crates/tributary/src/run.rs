//! `tributary run`: start-up checks, then one supervised pipeline per source.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tributary_config::Config;
use tributary_pipeline::SourceContext;

pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = tributary_config::load(path)?;
    crate::telemetry::init_logging(&config.log);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    run_config(config, shutdown).await
}

/// Runs the bridge until `shutdown` is cancelled; errors out at start-up on bad input.
pub async fn run_config(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = crate::telemetry::init_metrics()?;
    let nats = tributary_nats::connect(&config.nats, "tributary").await?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .max_ack_inflight(config.nats.ack_window * 2 + 1024)
        .backpressure_on_inflight(true)
        .timeout(Duration::from_secs(10))
        .build(nats.clone());
    // Reachability of the JetStream API, so that a server without -js fails here.
    js.query_account().await.map_err(|e| {
        anyhow::anyhow!(
            "NATS at {}: JetStream is not available: {e}",
            config.nats.servers.join(", ")
        )
    })?;

    let mut contexts = Vec::new();
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
            confirm_delay: Duration::from_millis(config.durability.confirm_delay_ms),
            ready: Arc::new(AtomicBool::new(false)),
        };
        tributary_pipeline::startup_check(&ctx).await?;
        contexts.push(ctx);
    }

    // The domain stage (when configured) checks its mappings before anything runs.
    // Its own connection and ack window: on the sources' connection its publishes and KV
    // writes queued behind a source writing a large backlog (and its in-flight acks).
    let domain = if config.domain.is_some() {
        let domain_nats = tributary_nats::connect(&config.nats, "tributary-domain").await?;
        let domain_js = async_nats::jetstream::ContextBuilder::new()
            .max_ack_inflight(4096)
            .backpressure_on_inflight(true)
            .timeout(Duration::from_secs(10))
            .build(domain_nats);
        tributary_domain::DomainStage::prepare(&config, domain_js).await?
    } else {
        None
    };
    // Sink workers (when configured): dead-letter stream and state bucket before anything runs.
    let sinks = tributary_sinks::Sinks::prepare(&config, js.clone()).await?;
    // Shopify webhook sources (when configured): streams, buckets and listeners bound.
    let shopify = tributary_saas::shopify::ShopifySources::prepare(&config, js.clone()).await?;
    // Salesforce Change Data Capture (when configured): streams and the position bucket.
    let salesforce_cdc =
        tributary_saas::salesforce::SalesforceCdcSources::prepare(&config, js.clone()).await?;
    // WMS lifecycle webhooks (`[sinks.wms.webhooks]`): raw stream, domain state, listener bound.
    let wms_webhooks = tributary_saas::wms::WmsWebhookSource::prepare(&config, js.clone()).await?;

    let addr = config
        .http_listen
        .parse()
        .with_context(|| format!("config key `http_listen`: {:?}", config.http_listen))?;
    let ready = contexts
        .iter()
        .map(|c| (c.config.name.clone(), c.ready.clone()))
        .collect();
    let http_stop = CancellationToken::new();
    let http = crate::http::serve(addr, metrics, ready, http_stop.clone()).await?;
    info!(%addr, sources = contexts.len(), "tributary running");

    let mut tasks = tokio::task::JoinSet::new();
    for ctx in contexts {
        let stop = shutdown.clone();
        tasks.spawn(tributary_pipeline::run_source(ctx, stop));
    }
    if let Some(stage) = domain {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            stage
                .run(stop)
                .await
                .map_err(|e| tributary_pipeline::PipelineError::Fatal {
                    source_name: "domain".into(),
                    message: e.to_string(),
                })
        });
    }
    if let Some(sinks) = sinks {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            sinks
                .run(stop)
                .await
                .map_err(|e| tributary_pipeline::PipelineError::Fatal {
                    source_name: "sinks".into(),
                    message: e.to_string(),
                })
        });
    }
    if let Some(shopify) = shopify {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            shopify
                .run(stop)
                .await
                .map_err(|e| tributary_pipeline::PipelineError::Fatal {
                    source_name: "shopify".into(),
                    message: e.to_string(),
                })
        });
    }
    if let Some(salesforce_cdc) = salesforce_cdc {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            salesforce_cdc
                .run(stop)
                .await
                .map_err(|e| tributary_pipeline::PipelineError::Fatal {
                    source_name: "salesforce_cdc".into(),
                    message: e.to_string(),
                })
        });
    }
    if let Some(wms_webhooks) = wms_webhooks {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            wms_webhooks
                .run(stop)
                .await
                .map_err(|e| tributary_pipeline::PipelineError::Fatal {
                    source_name: "wms_webhooks".into(),
                    message: e.to_string(),
                })
        });
    }
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(error = %e, "source failed; stopping the others");
                failure.get_or_insert(anyhow::Error::new(e));
                shutdown.cancel();
            }
            Err(e) => {
                failure.get_or_insert(anyhow::anyhow!("source task: {e}"));
                shutdown.cancel();
            }
        }
    }
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

use tracing_subscriber::EnvFilter;
use tributary_config::{LogConfig, LogFormat};

/// Logs to stderr in the configured format; `RUST_LOG` overrides the configured level.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(cfg.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Buckets of the count-valued histograms (`…_batch_messages`, `…_batch_records`,
/// `…_batch_fields`): messages, records or fields per batch, up to the largest batch sizes.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];
/// Source commit → target confirmation: milliseconds when healthy, minutes while a target
/// throttles or is down and the sink retries.
const APPLY_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];
/// A throttled target's waits: a paced Shopify cost bucket (sub-second) up to Retry-After.
const THROTTLE_WAIT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Other durations (`…_seconds`): JetStream acks, domain batches, unowned time.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Installs the Prometheus recorder; the handle renders `/metrics`. Every histogram gets
/// buckets (never a summary): a `Full` name wins over a `Suffix` (the exporter tries them
/// in that order).
pub fn init_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::Matcher;
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(tributary_sinks::metrics::APPLY_LATENCY.into()),
            APPLY_LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(tributary_sinks::metrics::THROTTLE_WAIT.into()),
            THROTTLE_WAIT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Prefix("tributary_o2c_".into()),
            tributary_tracker::metrics::BUSINESS_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?;
    for suffix in ["_batch_messages", "_batch_records", "_batch_fields"] {
        builder = builder.set_buckets_for_metric(Matcher::Suffix(suffix.into()), COUNT_BUCKETS)?;
    }
    let handle = builder.install_recorder()?;
    tributary_pipeline::metrics::describe();
    Ok(handle)
}

/// Creates, at zero, every series whose labels the configuration names (each crate's
/// `metrics::register`), before any component runs: `/metrics` lists every configured
/// source, mapping, sink, feed and listener from the first scrape.
pub fn register_metrics(
    config: &tributary_config::Config,
    components: &[(
        Box<dyn tributary_core::Component>,
        tributary_core::RetryPolicy,
    )],
) {
    tributary_pipeline::metrics::register(config);
    tributary_domain::metrics::register(config);
    tributary_sinks::metrics::register(config);
    tributary_saas::metrics::register(config);
    if config.tracker.is_some() {
        // Whose dead letters `tributary dlq` can resolve: the configured sinks, the domain stage.
        let mut owners: Vec<&str> = match &config.sinks {
            Some(cfg) => tributary_sinks::SINK_NAMES
                .iter()
                .copied()
                .filter(|s| !tributary_sinks::partition_consumers(cfg, s).is_empty())
                .collect(),
            None => Vec::new(),
        };
        if config.domain.is_some() {
            owners.push(tributary_tracker::metrics::DOMAIN);
        }
        tributary_tracker::metrics::register(&owners);
    }
    if config.reconcile.inventory.is_some() {
        tributary_reconcile::metrics::register();
    }
    for (component, _) in components {
        metrics::counter!(tributary_core::COMPONENT_RESTARTS, "component" => component.name())
            .increment(0);
    }
}

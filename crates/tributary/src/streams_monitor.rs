//! The JetStream streams this configuration uses, sampled for their size against their
//! limits (`tributary_nats_stream_*`): a stream at `max_bytes` drops its oldest messages
//! (or refuses new ones), so consumers that lag lose data and publishers fail.

use std::time::Duration;

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use tributary_config::Config;

pub const STREAM_BYTES: &str = "tributary_nats_stream_bytes";
pub const STREAM_MESSAGES: &str = "tributary_nats_stream_messages";
pub const STREAM_MAX_BYTES: &str = "tributary_nats_stream_max_bytes";

/// Often enough for a 10-minute alert; each sample is one API request per stream.
const EVERY: Duration = Duration::from_secs(15);

fn describe() {
    metrics::describe_gauge!(
        STREAM_BYTES,
        metrics::Unit::Bytes,
        "bytes stored in the stream"
    );
    metrics::describe_gauge!(STREAM_MESSAGES, "messages stored in the stream");
    metrics::describe_gauge!(
        STREAM_MAX_BYTES,
        metrics::Unit::Bytes,
        "the stream's max_bytes limit (-1: none)"
    );
}

/// Names of every stream the bridge creates or uses with this configuration, each once.
pub fn stream_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .sources
        .iter()
        .map(|s| config.nats.resolved_stream(s).name)
        .collect();
    if let Some(domain) = &config.domain {
        let specs = tributary_domain::streams(&config.nats, domain, "domain");
        names.extend(specs.into_iter().map(|s| s.settings.name));
    }
    let specs = tributary_sinks::Sinks::streams(config);
    names.extend(specs.into_iter().map(|s| s.settings.name));
    // A feed's configuration error stops the start-up before this runs.
    let specs = tributary_saas::streams::all(config).unwrap_or_default();
    names.extend(specs.into_iter().map(|s| s.settings.name));
    names.sort();
    names.dedup();
    names
}

/// Sets the gauges of every stream that exists (one not created yet has no series).
pub async fn sample(js: &jetstream::Context, names: &[String]) {
    for name in names {
        let Ok(stream) = js.get_stream(name).await else {
            continue;
        };
        let info = stream.cached_info();
        let gauge = |metric: &'static str| metrics::gauge!(metric, "stream" => name.clone());
        gauge(STREAM_BYTES).set(info.state.bytes as f64);
        gauge(STREAM_MESSAGES).set(info.state.messages as f64);
        gauge(STREAM_MAX_BYTES).set(info.config.max_bytes as f64);
    }
}

/// Samples once (so the first scrape has the series), then every 15 s until `stop`.
pub async fn start(config: &Config, js: jetstream::Context, stop: CancellationToken) {
    describe();
    let names = stream_names(config);
    sample(&js, &names).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => sample(&js, &names).await,
            }
        }
    });
}

//! `tributary status`: per source the slot, the JetStream stream and the running bridge's view
//! of each component (docs/operations.md).
//!
//! A running bridge serves the whole report on `GET /status` (`http_listen`); without one the
//! command reads PostgreSQL and NATS itself and says that no bridge answers.

mod gather;
mod render;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tributary_config::{Config, SourceConfig};

use super::slots::SlotReport;
use super::{Format, StreamReport};
use crate::readiness::ComponentState;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// `table` for a terminal, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The bridge process as seen through `http_listen`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BridgeReport {
    /// The address asked (`http_listen`, with an unspecified address replaced by loopback).
    pub address: String,
    /// The bridge answered.
    pub up: bool,
    /// Every component is ready (what `/readyz` answers).
    pub ready: Option<bool>,
    /// Each configured component, ready or not and why.
    #[serde(default)]
    pub components: Vec<ComponentState>,
    /// Why the bridge could not be asked.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// The bridge process, seen through `http_listen`.
    pub bridge: BridgeReport,
    pub sources: Vec<SourceStatus>,
    /// Sink workers: consumer positions, pending events and dead letters.
    pub sinks: Vec<SinkStatus>,
    /// Why `sinks` is empty, when it is.
    pub sinks_note: String,
    /// SaaS feeds (`[[shopify]]`, `[[salesforce_cdc]]`): raw stream and stored positions.
    pub feeds: Vec<FeedStatus>,
    /// `[ha]`: the replicas and which unit each owns (null without `[ha]`).
    pub replicas: Option<tributary_ha::GroupView>,
    /// Parts that could not be read (PostgreSQL or NATS unreachable).
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SourceStatus {
    pub source: String,
    pub slot: SlotReport,
    pub stream: StreamReport,
    /// The running bridge's source component: streaming or why not (null when no bridge
    /// answers, or under `[ha]` when another replica runs it).
    pub bridge: Option<ComponentState>,
    /// Snapshot progress from the KV bucket (null when no snapshot was ever taken).
    pub snapshot: Option<tributary_pipeline::SnapshotState>,
    /// While a snapshot runs: its rows per second and the seconds left by the estimates.
    #[serde(default)]
    pub snapshot_pace: Option<tributary_pipeline::SnapshotPace>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct SinkStatus {
    pub sink: String,
    pub consumer: String,
    /// Stream sequence below which every event is applied (acknowledged).
    pub ack_floor: Option<u64>,
    /// Events in the stream not yet delivered to the sink.
    pub pending: Option<u64>,
    /// Delivered, not yet acknowledged (being applied or retried).
    pub in_flight: Option<usize>,
    /// Events parked in the sink's dead-letter stream.
    pub dead_letters: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct FeedStatus {
    /// `shopify:<name>` or `salesforce:<name>`.
    pub feed: String,
    /// The raw stream and how many events it holds.
    pub stream: String,
    pub messages: Option<u64>,
    /// Positions kept in KV `tributary_saas`: reconciliation cursors (Shopify, per resource)
    /// or replay positions (Salesforce, per topic), key → value.
    pub positions: Vec<(String, String)>,
    pub error: Option<String>,
}

/// Upper bound for the bridge's answer: it reads each source's slot and the streams first.
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(45);

/// The report for `sources`, read from PostgreSQL and NATS now (`js`: the JetStream context,
/// or why there is none); `bridge` is what is known of the bridge process.
pub async fn collect(
    config: &Config,
    sources: &[&SourceConfig],
    js: Result<jetstream::Context, String>,
    bridge: BridgeReport,
) -> StatusReport {
    let mut errors = Vec::new();
    let js = js.map_err(|e| errors.push(e)).ok();
    let mut statuses = Vec::new();
    for source in sources {
        let stream_name = config.nats.resolved_stream(source).name;
        let mut slot = super::slots::read_slot(source, "status").await;
        let stream = match &js {
            Some(js) => super::stream_report(js, &stream_name).await,
            None => StreamReport {
                name: stream_name.clone(),
                error: Some("NATS unreachable".into()),
                ..Default::default()
            },
        };
        slot.lag_seconds = super::lag_seconds(slot.lag_bytes, stream.last_commit_micros);
        if let Some(e) = &slot.error {
            errors.push(format!("{}: slot {}: {e}", source.name, source.slot));
        }
        if let (Some(e), Some(_)) = (&stream.error, &js) {
            errors.push(format!("{}: {e}", source.name));
        }
        let snapshot = match &js {
            Some(js) => gather::read_snapshot(js, &source.name).await,
            None => None,
        };
        let component = format!("source {}", source.name);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let snapshot_pace = snapshot.as_ref().and_then(|s| s.pace(now_ms));
        statuses.push(SourceStatus {
            snapshot,
            snapshot_pace,
            source: source.name.clone(),
            bridge: bridge
                .components
                .iter()
                .find(|c| c.component == component)
                .cloned(),
            slot,
            stream,
        });
    }
    let (sinks, feeds) = match &js {
        Some(js) => (
            gather::sink_statuses(js, config).await,
            gather::feed_statuses(js, config).await,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let replicas = match (&js, &config.ha) {
        (Some(js), Some(ha)) => match tributary_ha::read_group(js, &ha.lease_bucket).await {
            Ok(view) => view,
            Err(e) => {
                errors.push(format!("replica group: {e}"));
                None
            }
        },
        _ => None,
    };
    StatusReport {
        replicas,
        bridge,
        feeds,
        sources: statuses,
        sinks_note: if sinks.is_empty() {
            "no sinks configured".into()
        } else {
            String::new()
        },
        sinks,
        errors,
    }
}

/// `http_listen` as an address to ask: an unspecified address becomes loopback.
fn bridge_address(http_listen: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut addr: std::net::SocketAddr = http_listen
        .parse()
        .map_err(|e| format!("http_listen {http_listen:?}: {e}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// The running bridge's own report, or why there is none (no bridge answers, or it answered
/// something else than a report).
async fn ask_bridge(addr: std::net::SocketAddr) -> Result<StatusReport, BridgeReport> {
    let down = |up: bool, error: String| BridgeReport {
        address: addr.to_string(),
        up,
        error: Some(error),
        ..Default::default()
    };
    let client = reqwest::Client::builder()
        .timeout(BRIDGE_TIMEOUT)
        .connect_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| down(false, format!("HTTP client: {e}")))?;
    let response = client
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .map_err(|e| down(false, format!("no bridge answers on {addr}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(down(true, format!("GET /status answered {status}")));
    }
    response
        .json::<StatusReport>()
        .await
        .map_err(|e| down(true, format!("GET /status: not a status report: {e}")))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = tributary_config::load(&args.config)?;
    let sources = super::select_sources(&config, args.source.as_deref())?;
    let report = match bridge_address(&config.http_listen) {
        Ok(addr) => ask_bridge(addr).await,
        Err(e) => Err(BridgeReport {
            address: config.http_listen.clone(),
            error: Some(e),
            ..Default::default()
        }),
    };
    let report = match report {
        Ok(mut report) => {
            report
                .sources
                .retain(|s| sources.iter().any(|c| c.name == s.source));
            report
        }
        Err(bridge) => {
            let js = super::connect_jetstream(&config)
                .await
                .map_err(|e| format!("{e:#}"));
            collect(&config, &sources, js, bridge).await
        }
    };
    match args.format {
        Format::Json => super::print_json(&report)?,
        Format::Table => print!("{}", render::render(&report)),
    }
    if !report.errors.is_empty() {
        return Err(crate::exit::unreachable(anyhow::anyhow!(
            "status incomplete: {} part(s) could not be read",
            report.errors.len()
        )));
    }
    Ok(())
}

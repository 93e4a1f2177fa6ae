//! Operator commands: `preflight`, `slots`, `status`, `orders` (docs/operations.md).
//!
//! They read the configuration like `tributary run`, connect to each source's PostgreSQL
//! and to NATS with the same settings, and never change anything except `slots drop`.

pub mod inventory;
pub mod orders;
pub mod preflight;
pub mod slots;
pub mod status;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tributary_config::{Config, SourceConfig};
use tributary_postgres::{ConnectParams, ControlConnection, PgError};
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::Message as _;

/// How a command prints its report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned text for a terminal.
    #[default]
    Table,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Upper bound for the queries of one source once connected, so that a hung server does
/// not hang the command.
const QUERY_BUDGET: Duration = Duration::from_secs(30);

/// Connection parameters of `source` with an `application_name` naming the command, so that
/// `pg_stat_activity` tells it apart from the bridge.
pub(crate) fn params_for(source: &SourceConfig, command: &str) -> anyhow::Result<ConnectParams> {
    let mut params = tributary_pipeline::connect_params(source)?;
    params.application_name = format!("tributary-{command}-{}", source.name);
    Ok(params)
}

pub(crate) async fn connect_control(params: &ConnectParams) -> Result<ControlConnection, PgError> {
    // tokio-postgres honours connect_timeout per address; this bounds the whole attempt.
    let budget = params.connect_timeout + Duration::from_secs(5);
    match tokio::time::timeout(budget, ControlConnection::connect(params)).await {
        Ok(result) => result,
        Err(_) => Err(PgError::ConnectTimeout(params.endpoint())),
    }
}

/// The sources selected by `--source`, or all of them; an unknown name is an error that
/// lists the configured ones.
pub(crate) fn select_sources<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> anyhow::Result<Vec<&'a SourceConfig>> {
    match name {
        None => Ok(config.sources.iter().collect()),
        Some(n) => {
            let found: Vec<&SourceConfig> = config.sources.iter().filter(|s| s.name == n).collect();
            if found.is_empty() {
                let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
                anyhow::bail!(
                    "no source named {n:?} in the configuration (sources: {})",
                    names.join(", ")
                );
            }
            Ok(found)
        }
    }
}

/// Connects to NATS and checks that JetStream answers; the error names the servers (exit
/// code: unreachable).
pub(crate) async fn connect_jetstream(config: &Config) -> anyhow::Result<jetstream::Context> {
    try_connect_jetstream(config)
        .await
        .map_err(crate::exit::unreachable)
}

async fn try_connect_jetstream(config: &Config) -> anyhow::Result<jetstream::Context> {
    let timeout = Duration::from_millis(config.nats.connect_timeout_ms) + Duration::from_secs(5);
    let client = tokio::time::timeout(
        timeout,
        tributary_nats::connect(&config.nats, "tributary-ops"),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "timed out connecting to NATS at {}",
            config.nats.servers.join(", ")
        )
    })??;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client);
    js.query_account().await.map_err(|e| {
        anyhow::anyhow!(
            "NATS at {}: JetStream is not available: {e}",
            config.nats.servers.join(", ")
        )
    })?;
    Ok(js)
}

/// A source's JetStream stream as the operator commands report it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StreamReport {
    pub name: String,
    pub exists: bool,
    pub messages: Option<u64>,
    pub bytes: Option<u64>,
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
    /// When JetStream stored the last message (RFC 3339, UTC).
    pub last_message_time: Option<String>,
    /// Commit time of the change in the last message (RFC 3339, UTC).
    pub last_commit_time: Option<String>,
    /// The same as Unix microseconds.
    pub last_commit_micros: Option<i64>,
    pub consumers: Option<usize>,
    /// Whether the stream carries the bridge's ownership mark (None when it does not exist).
    pub owned: Option<bool>,
    pub error: Option<String>,
}

pub(crate) async fn stream_report(js: &jetstream::Context, name: &str) -> StreamReport {
    let mut report = StreamReport {
        name: name.to_string(),
        ..Default::default()
    };
    let mut stream = match js.get_stream(name).await {
        Ok(s) => s,
        Err(e) => {
            if let jetstream::context::GetStreamErrorKind::JetStream(inner) = e.kind() {
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                    return report;
                }
            }
            report.error = Some(format!("reading stream {name}: {e}"));
            return report;
        }
    };
    report.exists = true;
    let state = match stream.info().await {
        Ok(info) => {
            report.owned = Some(tributary_nats::ownership::is_marked(&info.config));
            info.state.clone()
        }
        Err(e) => {
            report.error = Some(format!("stream {name} info: {e}"));
            return report;
        }
    };
    report.messages = Some(state.messages);
    report.bytes = Some(state.bytes);
    report.first_sequence = Some(state.first_sequence);
    report.last_sequence = Some(state.last_sequence);
    report.consumers = Some(state.consumer_count);
    if state.messages > 0 {
        report.last_message_time = rfc3339(state.last_timestamp);
        match stream.get_raw_message(state.last_sequence).await {
            Ok(msg) => {
                // The last event stored: a batch's last one.
                let last = tributary_proto::batch::events_of(&msg.subject, &msg.payload)
                    .ok()
                    .and_then(|mut events| events.pop());
                if let Some(Ok(event)) = last.map(ChangeEvent::decode) {
                    if event.commit_time_micros > 0 {
                        report.last_commit_micros = Some(event.commit_time_micros);
                        report.last_commit_time = micros_rfc3339(event.commit_time_micros);
                    }
                }
            }
            Err(e) => {
                // Aged out or deleted between info and get: not an error worth reporting.
                tracing::debug!(error = %e, stream = name, "reading the last message");
            }
        }
    }
    report
}

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub(crate) fn micros_rfc3339(micros: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()?;
    rfc3339(t)
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Seconds the stream is behind the slot: 0 when the slot has no WAL left to read, else the
/// time since the commit of the newest change in the stream (an upper bound). None when the
/// stream holds no change to date it by.
pub(crate) fn lag_seconds(lag_bytes: Option<u64>, last_commit_micros: Option<i64>) -> Option<f64> {
    match (lag_bytes, last_commit_micros) {
        (Some(0), _) => Some(0.0),
        (Some(_), Some(commit)) => Some(((now_micros() - commit).max(0)) as f64 / 1e6),
        _ => None,
    }
}

/// `1 table`, `3 tables`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `1234567` → `1.2 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `95.3` → `1m35s`.
pub(crate) fn human_seconds(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let total = secs.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        (total / 3600) % 24,
        (total / 60) % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding the report as JSON")?;
    println!("{text}");
    Ok(())
}

/// Rows of cells printed with aligned columns (the last column is not padded).
pub(crate) fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_seconds(2.25), "2.2s");
        assert_eq!(human_seconds(95.0), "1m35s");
        assert_eq!(human_seconds(3.0 * 3600.0 + 61.0), "3h1m1s");
    }

    #[test]
    fn lag_is_zero_without_wal_to_read() {
        assert_eq!(lag_seconds(Some(0), None), Some(0.0));
        assert_eq!(lag_seconds(Some(10), None), None);
        assert_eq!(lag_seconds(None, Some(1)), None);
        let ten_s_ago = now_micros() - 10_000_000;
        let lag = lag_seconds(Some(10), Some(ten_s_ago)).unwrap_or_default();
        assert!((9.0..60.0).contains(&lag), "{lag}");
    }

    #[test]
    fn table_columns_align() {
        let text = render_table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z z".into()]],
        );
        assert_eq!(text, "A    BB  C\nxxx  y   z z\n");
    }
}

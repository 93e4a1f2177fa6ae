//! `tributary status`: per source the slot, the JetStream stream and — when a bridge answers
//! on `http_listen` — its readiness and lag (docs/operations.md).

use std::path::PathBuf;

use serde::Serialize;

use super::http::SourceMetrics;
use super::slots::SlotReport;
use super::{BridgeReport, Format, StreamReport};

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

#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The bridge process, seen through `http_listen`.
    pub bridge: BridgeReport,
    pub sources: Vec<SourceStatus>,
    /// Sink workers: consumer positions, pending events and dead letters.
    pub sinks: Vec<SinkStatus>,
    /// Why `sinks` is empty, when it is.
    pub sinks_note: &'static str,
    /// SaaS feeds (`[[shopify]]`, `[[salesforce_cdc]]`): raw stream and stored positions.
    pub feeds: Vec<FeedStatus>,
    /// `[ha]`: the replicas and which unit each owns (null without `[ha]`).
    pub replicas: Option<tributary_ha::GroupView>,
    /// Parts that could not be read (PostgreSQL or NATS unreachable).
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub slot: SlotReport,
    pub stream: StreamReport,
    /// The running bridge's metrics for this source (null when no bridge answers).
    pub bridge: Option<SourceMetrics>,
    /// Snapshot progress from the KV bucket (null when no snapshot was ever taken).
    pub snapshot: Option<tributary_pipeline::SnapshotState>,
}

#[derive(Debug, Serialize, Default)]
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

#[derive(Debug, Serialize, Default)]
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

/// The feeds of the configuration with their raw stream size and stored positions.
async fn feed_statuses(
    js: &async_nats::jetstream::Context,
    config: &tributary_config::Config,
) -> Vec<FeedStatus> {
    use futures::StreamExt as _;
    let feeds = config
        .shopify
        .iter()
        .map(|s| ("shopify", s.name.as_str(), s.stream.as_str()))
        .chain(
            config
                .salesforce_cdc
                .iter()
                .map(|s| ("salesforce", s.name.as_str(), s.stream.as_str())),
        );
    let kv = js
        .get_key_value(tributary_saas::shopify::STATE_BUCKET)
        .await
        .ok();
    let mut keys = Vec::new();
    if let Some(kv) = &kv {
        if let Ok(mut list) = kv.keys().await {
            while let Some(Ok(k)) = list.next().await {
                keys.push(k);
            }
        }
    }
    let mut out = Vec::new();
    for (kind, name, stream) in feeds {
        let mut st = FeedStatus {
            feed: format!("{kind}:{name}"),
            stream: stream.to_string(),
            ..Default::default()
        };
        match js.get_stream(stream).await {
            Ok(mut s) => match s.info().await {
                Ok(info) => st.messages = Some(info.state.messages),
                Err(e) => st.error = Some(format!("stream {stream}: {e}")),
            },
            Err(e) => st.error = Some(format!("stream {stream}: {e}")),
        }
        let prefix = format!("{kind}.{}.", tributary_nats::kv::key_token(name));
        for key in keys.iter().filter(|k| k.starts_with(&prefix)) {
            let Some(kv) = &kv else { break };
            if let Ok(Some(v)) = kv.get(key).await {
                st.positions.push((
                    key[prefix.len()..].to_string(),
                    describe_position(&String::from_utf8_lossy(&v)),
                ));
            }
        }
        out.push(st);
    }
    out
}

/// A stored position as a person reads it: a cursor as is; a Salesforce position as its replay
/// id and the commit time of the last event stored.
fn describe_position(raw: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.to_string();
    };
    let replay = v["replay_id"].as_str().unwrap_or("?");
    match v["clock_micros"].as_i64().filter(|c| *c > 0) {
        Some(us) => format!(
            "replay id {replay}, last change committed {}",
            super::micros_rfc3339(us).unwrap_or_else(|| us.to_string())
        ),
        None => format!("replay id {replay}"),
    }
}

async fn sink_statuses(
    js: &async_nats::jetstream::Context,
    config: &tributary_config::Config,
) -> Vec<SinkStatus> {
    let Some(sinks) = &config.sinks else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if sinks.wms.is_some() {
        names.push("wms");
    }
    if sinks.shopify.is_some() {
        names.push("shopify");
    }
    if sinks.salesforce.is_some() {
        names.push("salesforce");
    }
    let mut out = Vec::new();
    for name in names {
        let consumers = tributary_sinks::partition_consumers(sinks, name);
        let mut st = SinkStatus {
            sink: name.to_string(),
            consumer: match consumers.as_slice() {
                [one] => one.name.clone(),
                many => format!(
                    "{} ({} partitions)",
                    tributary_sinks::consumer_name(name),
                    many.len()
                ),
            },
            ..Default::default()
        };
        // Partitioned: one row for the sink, its figures summed over the partitions (the
        // ack floor is the lowest: every event below it is applied in every partition).
        match js.get_stream(&sinks.stream).await {
            Ok(stream) => {
                for part in &consumers {
                    match stream.consumer_info(&part.name).await {
                        Ok(info) => {
                            let floor = info.ack_floor.stream_sequence;
                            st.ack_floor = Some(st.ack_floor.map_or(floor, |f| f.min(floor)));
                            st.pending = Some(st.pending.unwrap_or(0) + info.num_pending);
                            st.in_flight = Some(st.in_flight.unwrap_or(0) + info.num_ack_pending);
                        }
                        Err(e) => {
                            st.error
                                .get_or_insert_with(|| format!("consumer {}: {e}", part.name));
                        }
                    }
                }
            }
            Err(e) => st.error = Some(format!("stream {}: {e}", sinks.stream)),
        }
        if let Ok(dlq) = js.get_stream(&sinks.dead_letter_stream).await {
            let subject = format!("dlq.sink.{name}");
            let mut count = 0;
            if let Ok(mut subjects) = dlq.info_with_subjects(&subject).await {
                while let Ok(Some((_, n))) = futures::TryStreamExt::try_next(&mut subjects).await {
                    count += n as u64;
                }
            }
            st.dead_letters = Some(count);
        }
        out.push(st);
    }
    out
}

async fn read_snapshot(
    js: &async_nats::jetstream::Context,
    source: &str,
) -> Option<tributary_pipeline::SnapshotState> {
    let kv = js
        .get_key_value(tributary_pipeline::SNAPSHOT_BUCKET)
        .await
        .ok()?;
    let bytes = kv
        .get(source.replace(['.', '*', '>', ' '], "_"))
        .await
        .ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn render_snapshot(s: &tributary_pipeline::SnapshotState) -> String {
    let status = match s.status {
        tributary_pipeline::SnapshotStatus::Done => "done",
        tributary_pipeline::SnapshotStatus::InProgress => "in progress",
    };
    let mut out = format!(
        "  snapshot {status} (consistent point {}, attempt {})\n",
        s.consistent_point, s.attempt
    );
    for (table, p) in &s.tables {
        let state = match &p.failed {
            Some(e) => format!("FAILED: {e}"),
            None => format!(
                "{}/{} chunks, {} rows (~{} estimated)",
                p.done.len(),
                p.chunks.len(),
                p.rows,
                p.estimated_rows
            ),
        };
        out.push_str(&format!("    {table}: {state}\n"));
    }
    out
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = tributary_config::load(&args.config)?;
    let sources = super::select_sources(&config, args.source.as_deref())?;

    let (bridge, js) = tokio::join!(
        super::fetch_bridge(&config.http_listen),
        super::connect_jetstream(&config)
    );
    let mut errors = Vec::new();
    let js = match js {
        Ok(js) => Some(js),
        Err(e) => {
            errors.push(format!("{e:#}"));
            None
        }
    };
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
            Some(js) => read_snapshot(js, &source.name).await,
            None => None,
        };
        statuses.push(SourceStatus {
            snapshot,
            source: source.name.clone(),
            bridge: bridge.up.then(|| {
                bridge
                    .metrics
                    .get(&source.name)
                    .cloned()
                    .unwrap_or_default()
            }),
            slot,
            stream,
        });
    }
    let sinks = match &js {
        Some(js) => sink_statuses(js, &config).await,
        None => Vec::new(),
    };
    let feeds = match &js {
        Some(js) => feed_statuses(js, &config).await,
        None => Vec::new(),
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
    let report = StatusReport {
        replicas,
        bridge,
        feeds,
        sources: statuses,
        sinks_note: if sinks.is_empty() {
            "no sinks configured"
        } else {
            ""
        },
        sinks,
        errors,
    };
    match args.format {
        Format::Json => super::print_json(&report)?,
        Format::Table => print!("{}", render(&report)),
    }
    if !report.errors.is_empty() {
        anyhow::bail!(
            "status incomplete: {} part(s) could not be read",
            report.errors.len()
        );
    }
    Ok(())
}

fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let b = &r.bridge;
    let bridge_line = if b.up {
        match (b.ready, b.readyz.as_deref()) {
            (Some(true), _) => format!("up on {}, ready (every source streaming)", b.address),
            (_, Some(text)) => format!("up on {}, not ready ({text})", b.address),
            _ => format!("up on {}", b.address),
        }
    } else {
        format!(
            "not running ({})",
            b.error.as_deref().unwrap_or("no answer")
        )
    };
    out.push_str(&format!("bridge  {bridge_line}\n"));
    if let Some(g) = &r.replicas {
        out.push_str(&render_group(g));
    }

    for s in &r.sources {
        out.push_str(&format!("\nsource {} ({})\n", s.source, s.slot.endpoint));
        let slot = &s.slot;
        let slot_line = if let Some(e) = &slot.error {
            format!("{}: cannot read: {e}", slot.slot)
        } else if !slot.exists {
            format!(
                "{}: does not exist (created by the bridge's first start)",
                slot.slot
            )
        } else {
            let state = match (slot.active, slot.active_pid) {
                (Some(true), Some(pid)) => format!("active (pid {pid})"),
                (Some(true), None) => "active".into(),
                _ => "inactive".into(),
            };
            let mut line = format!(
                "{}: {state}, confirmed {}, lag {}",
                slot.slot,
                slot.confirmed_flush_lsn.as_deref().unwrap_or("n/a"),
                slot.lag_bytes
                    .map(super::human_bytes)
                    .unwrap_or_else(|| "n/a".into())
            );
            if let Some(secs) = slot.lag_seconds {
                line.push_str(&format!(" (~{})", super::human_seconds(secs)));
            }
            if let Some(w) = &slot.wal_status {
                line.push_str(&format!(", wal_status {w}"));
            }
            line
        };
        out.push_str(&format!("  slot    {slot_line}\n"));
        if let Some(snapshot) = &s.snapshot {
            out.push_str(&render_snapshot(snapshot));
        }

        let st = &s.stream;
        let stream_line = if let Some(e) = &st.error {
            format!("{}: cannot read: {e}", st.name)
        } else if !st.exists {
            format!(
                "{}: does not exist (created by the bridge's first start)",
                st.name
            )
        } else {
            let mut line = format!(
                "{}: {} messages, {}, sequences {}..{}",
                st.name,
                st.messages.unwrap_or(0),
                super::human_bytes(st.bytes.unwrap_or(0)),
                st.first_sequence.unwrap_or(0),
                st.last_sequence.unwrap_or(0)
            );
            if let Some(t) = &st.last_message_time {
                line.push_str(&format!(", last message {t}"));
            }
            if let Some(c) = st.last_commit_micros {
                let ago = (super::now_micros() - c).max(0) as f64 / 1e6;
                line.push_str(&format!(" (committed {} ago)", super::human_seconds(ago)));
            }
            line
        };
        out.push_str(&format!("  stream  {stream_line}\n"));

        let bridge_line = match &s.bridge {
            None => "no bridge answers".to_string(),
            Some(m) => {
                let state = match m.source_up {
                    Some(true) => "streaming",
                    Some(false) => "not streaming",
                    None => "no metrics for this source",
                };
                match m.replication_lag_seconds {
                    Some(l) => format!("{state}, replication lag {}", super::human_seconds(l)),
                    None => state.to_string(),
                }
            }
        };
        out.push_str(&format!("  bridge  {bridge_line}\n"));
    }
    if r.sinks.is_empty() {
        out.push_str(&format!("\nsinks   {}\n", r.sinks_note));
    }
    for s in &r.sinks {
        let line = match &s.error {
            Some(e) => format!("cannot read: {e}"),
            None => format!(
                "consumer {}: applied through seq {}, {} pending, {} in flight, {} dead letters",
                s.consumer,
                s.ack_floor.unwrap_or(0),
                s.pending.unwrap_or(0),
                s.in_flight.unwrap_or(0),
                s.dead_letters.unwrap_or(0)
            ),
        };
        out.push_str(&format!("\nsink {}  {line}\n", s.sink));
    }
    for f in &r.feeds {
        let size = match (&f.error, f.messages) {
            (Some(e), _) => format!("cannot read: {e}"),
            (None, Some(n)) => format!("{} holds {n} raw event(s)", f.stream),
            (None, None) => f.stream.clone(),
        };
        out.push_str(&format!("\nfeed {}  {size}\n", f.feed));
        if f.positions.is_empty() {
            out.push_str("  no stored position yet\n");
        }
        for (k, v) in &f.positions {
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if !r.errors.is_empty() {
        out.push('\n');
        for e in &r.errors {
            out.push_str(&format!("error: {e}\n"));
        }
    }
    out
}

/// The replica group: members, then each unit with its owner, since when and its token.
fn render_group(g: &tributary_ha::GroupView) -> String {
    let now = super::now_micros() / 1000;
    let ago = |ms: u64| super::human_seconds((now - ms as i64).max(0) as f64 / 1e3);
    let mut out = format!(
        "\nreplicas ({} live, leases in KV {})\n",
        g.members.len(),
        g.bucket
    );
    for m in &g.members {
        let owned = g.leases.iter().filter(|l| l.instance == m.instance).count();
        out.push_str(&format!(
            "  {}: up {}, owns {owned} unit(s)\n",
            m.instance,
            ago(m.started_at_ms)
        ));
    }
    for l in &g.leases {
        out.push_str(&format!(
            "  unit {}: {} since {} ago (token {})\n",
            l.unit,
            l.instance,
            ago(l.acquired_at_ms),
            l.revision
        ));
    }
    out
}

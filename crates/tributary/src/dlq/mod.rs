//! `tributary dlq list | show | redrive | drop --sink <name>`: the events a sink's target
//! refused for good, parked on `dlq.sink.<name>` in the dead-letter stream (docs/sinks.md,
//! "Replay and dead letters"). `--domain` instead: the changes the domain stage could not map,
//! parked on `dlq.domain.<mapping>` in `DLQ_DOMAIN` (list, show and drop; they are fixed at
//! the source and re-read with `tributary backfill`, not redriven).
//!
//! Redrive republishes a parked event to its original subject on the domain stream with a
//! fresh `Nats-Msg-Id` (`<event id>/redrive/<dlq seq>`, so JetStream's duplicate window
//! does not drop it), raises the sink's replay window over the new message (a redriven
//! event applies even if its entity moved on since), restarts the sink's consumer at its
//! ack floor so that a running sink re-reads the window, and then deletes the dead letter.
//! Before a dead letter is deleted (redrive or drop), its resolution is recorded for the
//! tracker (`resolution.rs`). `drop.rs` is `dlq drop`.

mod drop;
mod resolution;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer::DeliverPolicy, message::StreamMessage};
use async_nats::HeaderMap;
use futures::StreamExt;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tributary_config::SinksConfig;
use tributary_sinks::admin;

use crate::ops::Format;

/// Upper bound for reading one dead letter.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// List the sink's dead letters: sequence, time, event id, attempts, reason.
    List {
        #[command(flatten)]
        target: Target,
        /// `table` for a terminal, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one dead letter: its headers and the decoded event.
    Show {
        #[command(flatten)]
        target: Target,
        /// Sequence of the dead letter in the dead-letter stream (see `dlq list`).
        #[arg(long)]
        seq: u64,
        /// `table` for a terminal, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Republish dead letters to the domain stream so the sink applies them again (after
    /// fixing the cause), then remove them from the dead-letter stream.
    Redrive {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        select: Select,
    },
    /// Remove dead letters without applying them (asks for confirmation).
    Drop {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        select: Select,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct Target {
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    #[command(flatten)]
    pub which: Which,
}

/// Whose dead letters: one sink's, or the domain stage's.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// The sink (wms, shopify, …).
    #[arg(long)]
    pub sink: Option<String>,
    /// The domain stage's dead letters (`DLQ_DOMAIN`): changes no mapping could map.
    #[arg(long)]
    pub domain: bool,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Select {
    /// One dead letter, by its sequence in the dead-letter stream.
    #[arg(long)]
    pub seq: Option<u64>,
    /// Every dead letter of the sink.
    #[arg(long)]
    pub all: bool,
}

/// One parked event, as `dlq list` shows it.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// Sequence in the dead-letter stream (what --seq takes).
    pub seq: u64,
    /// When it was parked (RFC 3339).
    pub time: String,
    pub event_id: String,
    /// The mapping that refused the change (domain dead letters only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mapping: String,
    pub reason: String,
    pub attempts: u64,
    /// Sequence of the event in the domain stream when it was refused.
    pub stream_sequence: u64,
    /// The event's subject on the domain stream.
    pub subject: String,
    /// The target's answer (≤ 2000 chars).
    pub target_response: String,
}

fn header(headers: Option<&HeaderMap>, name: &str) -> String {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn entry(seq: u64, time: OffsetDateTime, headers: Option<&HeaderMap>) -> Entry {
    Entry {
        seq,
        time: rfc3339(time),
        event_id: Some(header(headers, "Tributary-Event-Id"))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| header(headers, "Tributary-Source-Event-Id")),
        mapping: header(headers, "Tributary-Mapping"),
        reason: header(headers, "Tributary-Reason"),
        attempts: header(headers, "Tributary-Attempts").parse().unwrap_or(0),
        stream_sequence: header(headers, "Tributary-Stream-Sequence")
            .parse()
            .unwrap_or(0),
        subject: header(headers, "Tributary-Subject"),
        target_response: header(headers, "Tributary-Target-Response"),
    }
}

struct Session {
    js: jetstream::Context,
    /// `[sinks]`; for `--domain` only when configured.
    sinks: Option<SinksConfig>,
    replicas: usize,
    /// The sink, or `None` for the domain stage.
    sink: Option<String>,
    /// The dead-letter stream read.
    dead_letter_stream: String,
    /// Records resolutions for the tracker (None without `[tracker]`).
    recorder: Option<resolution::Recorder>,
}

impl Session {
    async fn open(target: &Target) -> anyhow::Result<Session> {
        let config = tributary_config::load(&target.config)?;
        let (sinks, dead_letter_stream) = match &target.which.sink {
            Some(sink) => {
                let sinks = tributary_sinks::sinks_config(&config)?.clone();
                admin::sink_filters(&sinks, sink)?;
                let stream = sinks.dead_letter_stream.clone();
                (Some(sinks), stream)
            }
            None => {
                let Some(domain) = &config.domain else {
                    bail!("no [domain] section in the configuration: there is no domain stage");
                };
                (config.sinks.clone(), domain.dead_letter_stream.clone())
            }
        };
        let js = crate::ops::connect_jetstream(&config).await?;
        Ok(Session {
            recorder: resolution::Recorder::new(&config, &js),
            js,
            replicas: config.nats.stream.replicas.unwrap_or(1),
            sinks,
            sink: target.which.sink.clone(),
            dead_letter_stream,
        })
    }

    fn subject(&self) -> String {
        match &self.sink {
            Some(sink) => format!("dlq.sink.{sink}"),
            None => format!("{}.>", tributary_domain::dead_letter::PREFIX),
        }
    }

    /// `sink wms` or `the domain stage`, for messages.
    fn owner(&self) -> String {
        match &self.sink {
            Some(sink) => format!("sink {sink}"),
            None => "the domain stage".into(),
        }
    }

    /// The sink's configuration (redrive and drop of a sink's dead letters).
    fn sink_config(&self) -> anyhow::Result<(&SinksConfig, &str)> {
        match (&self.sinks, &self.sink) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => bail!("this needs --sink"),
        }
    }

    /// The dead-letter stream (None: it does not exist yet, so nothing was ever parked).
    async fn stream(&self) -> anyhow::Result<Option<jetstream::stream::Stream>> {
        match self.js.get_stream(&self.dead_letter_stream).await {
            Ok(s) => Ok(Some(s)),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("stream {}", self.dead_letter_stream)),
        }
    }

    /// Every dead letter of the sink, oldest first.
    async fn list(&self) -> anyhow::Result<Vec<Entry>> {
        let Some(stream) = self.stream().await? else {
            return Ok(Vec::new());
        };
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: self.subject(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("reading the dead-letter stream")?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer
            .messages()
            .await
            .context("reading the dead-letter stream")?;
        loop {
            let msg = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .context("reading the dead-letter stream timed out")?
                .context("dead-letter stream read ended")?
                .map_err(|e| anyhow::anyhow!("reading the dead-letter stream: {e}"))?;
            let info = msg
                .info()
                .map_err(|e| anyhow::anyhow!("dead letter without metadata: {e}"))?;
            let (seq, published, pending) = (info.stream_sequence, info.published, info.pending);
            out.push(entry(seq, published, msg.headers.as_ref()));
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// One dead letter of this sink, by sequence.
    async fn get(
        &self,
        stream: &jetstream::stream::Stream,
        seq: u64,
    ) -> anyhow::Result<jetstream::message::StreamMessage> {
        let msg = stream.get_raw_message(seq).await.with_context(|| {
            format!(
                "no dead letter with sequence {seq} in {}",
                self.dead_letter_stream
            )
        })?;
        let subject = self.subject();
        let ours = match subject.strip_suffix('>') {
            Some(prefix) => msg.subject.starts_with(prefix),
            None => msg.subject.as_str() == subject,
        };
        if !ours {
            bail!(
                "sequence {seq} of {} is a dead letter of {:?}, not of {}",
                self.dead_letter_stream,
                msg.subject.as_str(),
                self.owner()
            );
        }
        Ok(msg)
    }

    /// The resolutions can be recorded (before anything is changed).
    async fn check_recorder(&self) -> anyhow::Result<()> {
        match &self.recorder {
            Some(r) => r.check().await,
            None => Ok(()),
        }
    }

    /// Records that `msg` was resolved with `outcome`, before it is deleted.
    async fn resolved(&self, msg: &StreamMessage, outcome: &str) -> anyhow::Result<()> {
        match &self.recorder {
            Some(r) => {
                let (stream, sink) = (&self.dead_letter_stream, self.sink.as_deref());
                r.record(stream, msg, sink, outcome).await
            }
            None => Ok(()),
        }
    }

    /// The sequences selected by --seq / --all.
    async fn selected(&self, select: &Select) -> anyhow::Result<Vec<u64>> {
        match select.seq {
            Some(n) => Ok(vec![n]),
            None => Ok(self.list().await?.into_iter().map(|e| e.seq).collect()),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::List { target, format } => list(&target, format).await,
        Action::Show {
            target,
            seq,
            format,
        } => show(&target, seq, format).await,
        Action::Redrive { target, select } => redrive(&target, &select).await,
        Action::Drop {
            target,
            select,
            yes,
        } => drop::drop_letters(&target, &select, yes).await,
    }
}

async fn list(target: &Target, format: Format) -> anyhow::Result<()> {
    let s = Session::open(target).await?;
    let entries = s.list().await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        Format::Table => {
            if entries.is_empty() {
                println!("{}: no dead letters", s.owner());
                return Ok(());
            }
            println!(
                "{:>8}  {:<25}  {:<36}  {:>8}  REASON",
                "SEQ", "TIME", "EVENT ID", "ATTEMPTS"
            );
            for e in &entries {
                let reason = match e.mapping.as_str() {
                    "" => e.reason.clone(),
                    mapping => format!("{mapping}: {}", e.reason),
                };
                println!(
                    "{:>8}  {:<25}  {:<36}  {:>8}  {reason}",
                    e.seq, e.time, e.event_id, e.attempts
                );
            }
            println!("{} dead letter(s) of {}", entries.len(), s.owner());
        }
    }
    Ok(())
}

async fn show(target: &Target, seq: u64, format: Format) -> anyhow::Result<()> {
    let s = Session::open(target).await?;
    let Some(stream) = s.stream().await? else {
        bail!(
            "the dead-letter stream {} does not exist",
            s.dead_letter_stream
        );
    };
    let msg = s.get(&stream, seq).await?;
    let mut headers: Vec<(String, String)> = msg
        .headers
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| (k.to_string(), v.as_str().to_string()))
        })
        .collect();
    headers.sort();
    // A sink parks the domain event it could not apply; the domain stage the change (a
    // row change, or a SaaS feed's JSON envelope).
    let kind = match s.sink {
        Some(_) => crate::tail::DOMAIN_EVENT,
        None => crate::tail::CHANGE_EVENT,
    };
    let event = crate::tail::decode_payload(kind, &msg.payload);
    match format {
        Format::Json => {
            let report = serde_json::json!({
                "seq": seq,
                "subject": msg.subject.as_str(),
                "time": rfc3339(msg.time),
                "headers": headers.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "event": event.as_ref().ok(),
                "error": event.as_ref().err(),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Format::Table => {
            println!(
                "dead letter {seq} on {} ({})",
                msg.subject,
                rfc3339(msg.time)
            );
            for (k, v) in headers {
                println!("  {k}: {v}");
            }
            match event {
                Ok(event) => println!("event:\n{}", serde_json::to_string_pretty(&event)?),
                Err(e) => println!("payload ({} bytes): {e}", msg.payload.len()),
            }
        }
    }
    Ok(())
}

async fn redrive(target: &Target, select: &Select) -> anyhow::Result<()> {
    if target.which.domain {
        bail!(
            "the domain stage's dead letters are changes no mapping could map: fix the mapping \
             or the row, re-read the rows with `tributary backfill`, then `tributary dlq drop --domain`"
        );
    }
    let s = Session::open(target).await?;
    let (sinks, sink) = s.sink_config()?;
    let Some(dlq) = s.stream().await? else {
        println!("sink {sink}: no dead letters");
        return Ok(());
    };
    let seqs = s.selected(select).await?;
    s.check_recorder().await?;
    if seqs.is_empty() {
        println!("sink {sink}: no dead letters");
        return Ok(());
    }
    let mut parked = Vec::new();
    for seq in seqs {
        let msg = s.get(&dlq, seq).await?;
        let subject = header(Some(&msg.headers), "Tributary-Subject");
        if subject.is_empty() {
            bail!("dead letter {seq} has no Tributary-Subject header; cannot redrive it");
        }
        parked.push((seq, subject, msg));
    }

    // Where the sink's consumer stands before we publish: restarting it there after the
    // window covers the new messages re-delivers them even if the running sink skipped
    // them meanwhile (their versions are below the entity's).
    let floors = admin::ack_floors(&s.js, sinks, sink).await?;
    let floor = floors.iter().filter_map(|(_, f)| *f).min();
    let mut redriven = Vec::new();
    for (seq, subject, msg) in &parked {
        let event_id = header(Some(&msg.headers), "Tributary-Event-Id");
        let msg_id = if event_id.is_empty() {
            format!("{sink}/redrive/{seq}")
        } else {
            format!("{event_id}/redrive/{seq}")
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        headers.insert(
            "Tributary-Redrive-Of",
            format!("{}:{seq}", sinks.dead_letter_stream).as_str(),
        );
        let ack =
            s.js.publish_with_headers(subject.clone(), headers, msg.payload.clone())
                .await
                .with_context(|| format!("republishing dead letter {seq} to {subject}"))?
                .await
                .with_context(|| format!("republishing dead letter {seq} to {subject}"))?;
        if ack.stream != sinks.stream {
            bail!(
                "{subject} is stored by stream {}, not {}: dead letter {seq} left in place",
                ack.stream,
                sinks.stream
            );
        }
        redriven.push((*seq, subject.clone(), event_id, ack.sequence, ack.duplicate));
    }
    let last = redriven.iter().map(|r| r.3).max().unwrap_or(0);
    let kv = admin::open_state(&s.js, sinks, s.replicas).await?;
    let window = admin::extend_replay_window(&kv, sink, last).await?;
    if floor.is_some() {
        // Each partition restarts at its own floor: the redriven events are above all.
        let start = |name: &str| {
            floors
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, f)| *f)
                .map(|f| DeliverPolicy::ByStartSequence {
                    start_sequence: f + 1,
                })
        };
        admin::reposition_consumers(&s.js, sinks, sink, start).await?;
    }
    for ((seq, subject, event_id, new_seq, duplicate), (_, _, msg)) in redriven.iter().zip(&parked)
    {
        s.resolved(msg, tributary_tracker::resolution::REDRIVEN)
            .await?;
        dlq.delete_message(*seq)
            .await
            .with_context(|| format!("deleting dead letter {seq} (it was republished)"))?;
        let note = if *duplicate {
            " (already republished by an earlier redrive)"
        } else {
            ""
        };
        println!(
            "redriven dead letter {seq} (event {event_id}) → {subject} at {} sequence {new_seq}{note}",
            sinks.stream
        );
    }
    println!(
        "sink {}: {} event(s) redriven; replay window up to sequence {}{}",
        sink,
        redriven.len(),
        window.until_sequence,
        match floor {
            Some(f) => format!("; consumer restarted at sequence {}", f + 1),
            None => String::from("; the sink applies them at the next start"),
        }
    );
    Ok(())
}

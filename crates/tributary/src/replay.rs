//! `tributary replay --sink <name> (--from-seq N | --from-time T)`: re-apply a sink's events
//! from a point of the domain stream (docs/sinks.md, "Replay and dead letters").
//!
//! 1. The replay window `<sink>._replay.until_sequence` in the sinks' state bucket is raised
//!    to the stream's current last sequence: the worker applies events up to it even when
//!    the version guard has seen newer versions, so the replay is one clean application.
//! 2. The durable consumer `tributary-sink-<name>` (every partition's with
//!    `sinks.partitions` > 1) is deleted and recreated at the start.
//!    A running sink loses its consumer and restarts its session from there (re-reading
//!    the window); a stopped bridge starts there next time.
//!
//! Idempotency keys derived from the event ids make the targets answer repeated writes
//! from their idempotency stores, so the final target state equals one clean application.

use std::path::Path;

use anyhow::{bail, Context as _};
use async_nats::jetstream::consumer::DeliverPolicy;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tributary_sinks::admin;

/// Where the replay starts.
#[derive(Debug, Clone)]
pub enum From {
    Sequence(u64),
    Time(OffsetDateTime),
}

/// Parses `--from-time` (RFC 3339, e.g. `2026-11-28T09:00:00Z`).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2026-11-28T09:00:00Z"))
}

pub async fn run(config_path: &Path, sink: &str, from: From) -> anyhow::Result<()> {
    let config = tributary_config::load(config_path)?;
    let cfg = tributary_sinks::sinks_config(&config)?;
    admin::sink_filters(cfg, sink)?;
    let js = crate::ops::connect_jetstream(&config).await?;

    let mut stream = js
        .get_stream(&cfg.stream)
        .await
        .with_context(|| format!("stream {}", cfg.stream))?;
    let state = stream
        .info()
        .await
        .with_context(|| format!("stream {}", cfg.stream))?
        .state
        .clone();
    let last = state.last_sequence;
    if last == 0 || state.messages == 0 {
        bail!("stream {} holds no events: nothing to replay", cfg.stream);
    }
    let deliver = match &from {
        From::Sequence(0) => bail!("--from-seq starts at 1"),
        From::Sequence(n) if *n > last => {
            bail!(
                "--from-seq {n} is after the last event of {} (sequence {last})",
                cfg.stream
            )
        }
        From::Sequence(n) => {
            if *n < state.first_sequence {
                println!(
                    "note: {} starts at sequence {} (older events expired); replaying from there",
                    cfg.stream, state.first_sequence
                );
            }
            DeliverPolicy::ByStartSequence { start_sequence: *n }
        }
        From::Time(t) => {
            if *t > OffsetDateTime::now_utc() {
                bail!("--from-time is in the future");
            }
            DeliverPolicy::ByStartTime { start_time: *t }
        }
    };

    // The window first: a sink that restarts because its consumer went away must already
    // see it when it reopens the consumer.
    let replicas = config.nats.stream.replicas.unwrap_or(1);
    let kv = admin::open_state(&js, cfg, replicas).await?;
    let window = admin::extend_replay_window(&kv, sink, last).await?;
    let moved = admin::reposition_consumers(&js, cfg, sink, |_| Some(deliver)).await?;

    // Every consumer of the sink: one per priority class and partition.
    let names: Vec<String> = tributary_sinks::partition_consumers(cfg, sink)
        .into_iter()
        .map(|c| c.name)
        .collect();
    let consumer = match names.as_slice() {
        [one] => one.clone(),
        many => format!("{} … ({} consumers)", many[0], many.len()),
    };
    match from {
        From::Sequence(n) => println!("sink {sink}: replay from stream sequence {n}"),
        From::Time(t) => println!(
            "sink {sink}: replay from {} = stream sequence {}",
            t.format(&Rfc3339).unwrap_or_else(|_| t.to_string()),
            moved.start_sequence
        ),
    }
    println!(
        "  replay window {}.{sink}._replay: events up to sequence {} bypass the version guard",
        cfg.state_bucket, window.until_sequence
    );
    match moved.previous_ack_floor {
        Some(f) => println!(
            "  consumer {consumer} on {}: recreated at sequence {} (was applied through {f})",
            cfg.stream, moved.start_sequence
        ),
        None => println!(
            "  consumer {consumer} on {}: created at sequence {}",
            cfg.stream, moved.start_sequence
        ),
    }
    if moved.start_sequence > last {
        println!("  no event at or after that point: nothing will be re-applied");
    } else {
        println!(
            "  a running bridge re-applies sequences {}..={last} now; a stopped one at its next start",
            moved.start_sequence
        );
    }
    Ok(())
}

//! `latency`: a paced write load while the bridge runs; a JetStream subscriber measures commit
//! → delivery for every event, and the bridge's memory is sampled.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::consumer::{push, DeliverPolicy};
use futures::StreamExt as _;
use prost::Message as _;
use tributary_proto::cdc::v1::ChangeEvent;

use crate::env::{BenchEnv, Settings};
use crate::procfs::{self, Sampler};
use crate::workload::{self, now_micros, Counts, Generator};

const SLOT: &str = "bench_latency";
const SEED: u64 = 0x006c_6174_656e_6379;
/// Rows per transaction: uniformly 5..=15, ~10 on average.
const TX_ROWS: std::ops::RangeInclusive<usize> = 5..=15;

pub struct Args {
    pub rate: u64,
    pub seconds: u64,
    pub connections: usize,
    /// `[[sources]] schema` of the bridge.
    pub schema: crate::e2e::Schema,
    /// `[[sources]] changes_per_message` of the bridge.
    pub changes_per_message: usize,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds == 0 {
        bail!("--rate and --seconds must be at least 1");
    }
    println!("load average before: {}", procfs::load_average());
    let env = BenchEnv::start(settings).await?;
    println!("{}", env.describe());
    env.create_slot(SLOT).await?;
    let keys = format!(
        "{}changes_per_message = {}\n",
        args.schema.source_keys(),
        args.changes_per_message
    );
    let config = env.write_config_with(SLOT, &keys)?;
    println!(
        "schema: {} changes_per_message: {}",
        args.schema.label(),
        args.changes_per_message
    );
    let mut bridge = env.spawn_bridge(&config)?;
    let sampler = Sampler::spawn(bridge.pid(), Duration::from_millis(100));
    let result = measure(&env, &mut bridge, &args).await;
    let stats = sampler.finish().await;
    let stopped = bridge.stop().await;
    let report = result?;
    stopped?;

    let lat = Percentiles::of(report.latencies_us);
    let cap = Percentiles::of(report.capture_us);
    println!(
        "workload: offered_rate={} achieved_rate={:.0} changes={} transactions={} seconds={:.1} \
         connections={} rows_per_tx={}..={}",
        args.rate,
        report.counts.changes() as f64 / report.load_seconds,
        report.counts.changes(),
        report.counts.transactions,
        report.load_seconds,
        args.connections,
        TX_ROWS.start(),
        TX_ROWS.end(),
    );
    println!(
        "received={} events; latency = subscriber receive time - commit_time_micros, delivered by a \
         JetStream ordered push consumer: a message is delivered only after the stream stored it{}, \
         so this upper-bounds commit -> publish ack",
        lat.count,
        match env.settings.durability {
            crate::env::Durability::Always => " (fsync, sync_interval=always)",
            _ => "",
        }
    );
    println!(
        "commit_to_capture: p50_ms={:.2} p99_ms={:.2} max_ms={:.2} (commit -> bridge decoded the change)",
        cap.p50, cap.p99, cap.max
    );
    println!(
        "commit_to_delivery: p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2}",
        lat.p50, lat.p90, lat.p99, lat.p999, lat.max
    );
    println!(
        "bridge: cpu_s={:.2} ({:.0}% of one core) vmhwm_mb={:.1} max_sampled_rss_mb={:.1} samples={}",
        stats.cpu_secs,
        100.0 * stats.cpu_secs / report.total_seconds,
        stats.hwm_kb as f64 / 1024.0,
        stats.max_rss_kb as f64 / 1024.0,
        stats.samples
    );
    println!("load average after: {}", procfs::load_average());
    println!(
        "latency_p50_ms={:.2} latency_p99_ms={:.2} latency_max_ms={:.2} peak_rss_mb={:.1}",
        lat.p50,
        lat.p99,
        lat.max,
        stats.peak_rss_mb()
    );
    Ok(())
}

struct Report {
    counts: Counts,
    load_seconds: f64,
    total_seconds: f64,
    latencies_us: Vec<i64>,
    capture_us: Vec<i64>,
}

async fn measure(
    env: &BenchEnv,
    bridge: &mut crate::bridge::Bridge,
    args: &Args,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let stream = env.wait_for_stream(bridge, Duration::from_secs(60)).await?;
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: env.nats_client.new_inbox(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("creating the ordered push consumer")?;
    let mut messages = consumer
        .messages()
        .await
        .context("subscribing to the consumer")?;

    // Warm-up: one change through the whole path (relation message, type look-ups).
    let connections = args.connections.max(1);
    let mut generators: Vec<Generator> = (0..connections)
        .map(|worker| Generator::new(worker, connections, SEED))
        .collect();
    let warm = generators
        .first_mut()
        .map(|g| g.transaction(1))
        .context("no writer")?;
    workload::execute(&env.client().await?, &warm).await?;
    match tokio::time::timeout(Duration::from_secs(60), messages.next()).await {
        Ok(Some(Ok(_))) => {}
        Ok(Some(Err(e))) => bail!("warm-up event: {e}"),
        Ok(None) => bail!("the consumer closed during the warm-up"),
        Err(_) => bail!(
            "no warm-up event within 60 s\n--- bridge log ---\n{}",
            bridge.log_tail()
        ),
    }

    // The load: `connections` paced writers sharing the rate.
    let duration = Duration::from_secs(args.seconds);
    let per_worker = args.rate as f64 / connections as f64;
    let mut writers = tokio::task::JoinSet::new();
    let load_started = Instant::now();
    for generator in generators {
        let client = env.client().await?;
        writers.spawn(workload::paced(
            client, generator, per_worker, duration, TX_ROWS,
        ));
    }
    let expected_count = capacity(args.rate, args.seconds);
    let mut latencies_us = Vec::with_capacity(expected_count);
    let mut capture_us = Vec::with_capacity(expected_count);
    let mut counts = Counts::default();
    let mut writers_done = false;
    let mut load_seconds = duration.as_secs_f64();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        if writers_done && latencies_us.len() as u64 >= counts.changes() {
            break;
        }
        tokio::select! {
            msg = messages.next() => {
                let received = now_micros();
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => bail!("consumer error: {e}"),
                    None => bail!("the consumer closed"),
                };
                // A batch (`--changes-per-message`): each of its events was received now.
                let events = tributary_proto::batch::events_of(&msg.subject, &msg.payload)
                    .context("taking a batch apart")?;
                for payload in events {
                    let event = ChangeEvent::decode(payload).context("decoding a ChangeEvent")?;
                    latencies_us.push(received - event.commit_time_micros);
                    capture_us.push(event.captured_at_micros - event.commit_time_micros);
                }
            }
            joined = writers.join_next(), if !writers_done => {
                match joined {
                    Some(result) => counts.add(&result.context("writer task")??),
                    None => {
                        writers_done = true;
                        load_seconds = load_started.elapsed().as_secs_f64();
                        drain_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(60));
                    }
                }
            }
            _ = check.tick() => {
                bridge.check_running()?;
                if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    bail!(
                        "only {} of {} events arrived within 60 s of the end of the load",
                        latencies_us.len(),
                        counts.changes()
                    );
                }
            }
        }
    }
    Ok(Report {
        counts,
        load_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        latencies_us,
        capture_us,
    })
}

fn capacity(rate: u64, seconds: u64) -> usize {
    usize::try_from(rate.saturating_mul(seconds).min(50_000_000)).unwrap_or(0)
}

struct Percentiles {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of microsecond samples, in milliseconds.
    fn of(mut samples: Vec<i64>) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1] as f64 / 1000.0
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

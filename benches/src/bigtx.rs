//! `bigtx`: one transaction inserting many rows while the bridge runs; time until all of them
//! are in the stream, and the bridge's peak memory.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::env::{BenchEnv, Settings};
use crate::procfs::{self, Sampler, WalsenderSampler};
use crate::workload::{self, secs, Generator};

const SLOT: &str = "bench_bigtx";
/// Ids of the big transaction start above the warm-up row's.
const FIRST_ID: i64 = 1_000_000_000;

pub struct Args {
    pub rows: u64,
    pub timeout: Duration,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    let rows = i64::try_from(args.rows).context("--rows is too large")?;
    println!("load average before: {}", procfs::load_average());
    let env = BenchEnv::start(settings).await?;
    println!("{}", env.describe());
    env.create_slot(SLOT).await?;
    let config = env.write_config(SLOT)?;
    let mut bridge = env.spawn_bridge(&config)?;
    let sampler = Sampler::spawn(bridge.pid(), Duration::from_millis(100));
    let walsender = WalsenderSampler::spawn(
        env.client().await?,
        SLOT.to_owned(),
        Duration::from_millis(100),
    );
    let result = measure(&env, &mut bridge, rows, args.timeout).await;
    let stats = sampler.finish().await;
    let walsender_stats = walsender.finish().await;
    let stopped = bridge.stop().await;
    let m = result?;
    stopped?;
    println!(
        "insert: rows={} statement_seconds={:.2} wal_bytes={} ({:.1} MB)",
        m.inserted,
        m.insert_seconds,
        m.wal_bytes,
        m.wal_bytes as f64 / 1e6
    );
    println!(
        "stream: all {} rows after {:.2} s from the statement's start, {:.2} s after its commit \
         (first event {:.2} s after the commit); stream_bytes={} ({:.0} rows/s after the commit)",
        m.inserted,
        m.total_seconds,
        m.after_commit_seconds,
        m.first_event_after_commit,
        m.stream_bytes,
        m.inserted as f64 / m.after_commit_seconds,
    );
    println!(
        "bridge: cpu_s={:.2} vmhwm_mb={:.1} max_sampled_rss_mb={:.1}; walsender cpu_s={:.2}",
        stats.cpu_secs,
        stats.hwm_kb as f64 / 1024.0,
        stats.max_rss_kb as f64 / 1024.0,
        walsender_stats.cpu_secs,
    );
    println!("load average after: {}", procfs::load_average());
    println!(
        "bigtx_rows={} seconds={:.2} peak_rss_mb={:.1}",
        m.inserted,
        m.total_seconds,
        stats.peak_rss_mb()
    );
    Ok(())
}

struct Measured {
    inserted: u64,
    insert_seconds: f64,
    total_seconds: f64,
    after_commit_seconds: f64,
    first_event_after_commit: f64,
    wal_bytes: i64,
    stream_bytes: u64,
}

async fn measure(
    env: &BenchEnv,
    bridge: &mut crate::bridge::Bridge,
    rows: i64,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let client = env.client().await?;
    // Warm-up: the bridge is streaming once one change has gone through.
    env.wait_for_stream(bridge, Duration::from_secs(60)).await?;
    let warm = Generator::new(0, 1, 1).transaction(1);
    workload::execute(&client, &warm).await?;
    env.wait_for_messages(
        bridge,
        1,
        Duration::from_secs(60),
        Duration::from_millis(20),
    )
    .await?;

    let before = env.current_lsn(&client).await?;
    let started = Instant::now();
    // One statement in autocommit mode: one transaction. Notes are 192 bytes.
    let inserted = client
        .execute(
            "INSERT INTO sales_orders (id, customer_id, amount, status, updated_at, note)
             SELECT g, (g % 50000)::int, ((g % 1000000) / 100.0)::numeric(12,2), 'placed',
                    now(), repeat(md5(g::text), 6)
             FROM generate_series($1::bigint, $2::bigint) AS g",
            &[&FIRST_ID, &(FIRST_ID + rows - 1)],
        )
        .await
        .context("the big INSERT … SELECT generate_series")?;
    let committed = Instant::now();
    let after = env.current_lsn(&client).await?;
    let wal_bytes = env.wal_bytes(&client, &before, &after).await?;
    let target = inserted + 1;
    let progress = env
        .wait_for_messages(bridge, target, timeout, Duration::from_millis(20))
        .await?;
    Ok(Measured {
        inserted,
        insert_seconds: secs(started, committed),
        total_seconds: secs(started, progress.done),
        after_commit_seconds: secs(committed, progress.done),
        first_event_after_commit: progress
            .first_message
            .map_or(f64::NAN, |t| secs(committed, t)),
        wal_bytes,
        stream_bytes: progress.bytes,
    })
}

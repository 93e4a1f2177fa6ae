//! `e2e`: throughput of the bridge over a pre-written WAL, against the `pg_recvlogical` ceiling
//! (the walsender decoding the same WAL with pgoutput, output thrown away).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::env::{BenchEnv, Settings, DB, MARKER_TABLE, PUBLICATION};
use crate::procfs::{self, Sampler, WalsenderSampler};
use crate::workload::{self, secs, Counts, Generator};

const CEILING_SLOT: &str = "bench_ceiling";
const BRIDGE_SLOT: &str = "bench_tributary";

pub struct Args {
    pub changes: u64,
    pub connections: usize,
    pub timeout: Duration,
    /// Record a `perf` profile of the bridge into this file (changes the figures).
    pub perf_record: Option<PathBuf>,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.changes == 0 {
        bail!("--changes must be at least 1");
    }
    println!("load average before: {}", procfs::load_average());
    let env = BenchEnv::start(settings).await?;
    println!("{}", env.describe());
    let control = env.client().await?;

    // Both slots exist before the first change, so both see the whole workload.
    env.create_slot(CEILING_SLOT).await?;
    env.create_slot(BRIDGE_SLOT).await?;
    let start_lsn = env.current_lsn(&control).await?;

    let written = write_workload(&env, args.changes, args.connections).await?;
    let end_lsn = env.current_lsn(&control).await?;
    // pg_recvlogical --endpos stops only once it sees a message past the end position.
    control
        .batch_execute(&format!(
            "INSERT INTO {MARKER_TABLE} (note) VALUES ('end of workload')"
        ))
        .await
        .context("writing the end marker")?;
    let wal_bytes = env.wal_bytes(&control, &start_lsn, &end_lsn).await?;
    let changes = written.counts.changes();
    println!(
        "workload: changes={changes} inserts={} updates={} deletes={} transactions={} \
         connections={} seconds={:.2} ({:.0} changes/s written) wal_bytes={wal_bytes} \
         ({:.1} MB, {:.0} B/change) lsn={start_lsn}..{end_lsn}",
        written.counts.inserts,
        written.counts.updates,
        written.counts.deletes,
        written.counts.transactions,
        args.connections,
        written.seconds,
        changes as f64 / written.seconds,
        wal_bytes as f64 / 1e6,
        wal_bytes as f64 / changes as f64,
    );

    // (a) The ceiling.
    let ceiling = run_ceiling(&env, &end_lsn, args.timeout).await?;
    let ceiling_rate = changes as f64 / ceiling.seconds;
    println!(
        "ceiling: pg_recvlogical seconds={:.3} changes_per_sec={ceiling_rate:.0} walsender_cpu_s={:.2} \
         ({:.1} MB WAL/s)",
        ceiling.seconds,
        ceiling.walsender_cpu,
        wal_bytes as f64 / 1e6 / ceiling.seconds,
    );

    // (b) The bridge over the same WAL.
    let config = env.write_config(BRIDGE_SLOT)?;
    let mut bridge = env.spawn_bridge(&config)?;
    let started = bridge.started();
    let sampler = Sampler::spawn(bridge.pid(), Duration::from_millis(100));
    let walsender = WalsenderSampler::spawn(
        env.client().await?,
        BRIDGE_SLOT.to_owned(),
        Duration::from_millis(50),
    );
    let nats_cpu_before = env.nats_pid().and_then(procfs::cpu_secs);
    let perf = match &args.perf_record {
        Some(path) => Some(start_perf(bridge.pid(), path)?),
        None => None,
    };
    let progress = env
        .wait_for_messages(
            &mut bridge,
            changes,
            args.timeout,
            Duration::from_millis(20),
        )
        .await;
    if let Some(perf) = perf {
        stop_perf(perf).await;
    }
    let nats_cpu = env
        .nats_pid()
        .and_then(procfs::cpu_secs)
        .zip(nats_cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    let stats = sampler.finish().await;
    let walsender_stats = walsender.finish().await;
    let stopped = bridge.stop().await;
    let progress = progress?;
    let status = stopped?;
    let seconds = secs(started, progress.done);
    let rate = changes as f64 / seconds;
    println!(
        "tributary: seconds={seconds:.3} (first message after {:.3} s) changes_per_sec={rate:.0} \
         stream_messages={} stream_bytes={} ({:.0} B/event) bridge_cpu_s={:.2} \
         walsender_cpu_s={:.2} nats_server_cpu_s={nats_cpu:.2} peak_rss_mb={:.1} exit={status}",
        progress
            .first_message
            .map_or(f64::NAN, |t| secs(started, t)),
        progress.messages,
        progress.bytes,
        progress.bytes as f64 / progress.messages.max(1) as f64,
        stats.cpu_secs,
        walsender_stats.cpu_secs,
        stats.peak_rss_mb(),
    );
    if progress.messages != changes {
        println!(
            "warning: the stream holds {} messages, {changes} changes were written",
            progress.messages
        );
    }
    if let Some(path) = &args.perf_record {
        println!(
            "perf profile: {} (perf report -i {} --no-children)",
            path.display(),
            path.display()
        );
    }
    println!("load average after: {}", procfs::load_average());
    println!(
        "e2e_changes_per_sec={rate:.0} ceiling_changes_per_sec={ceiling_rate:.0} ratio={:.3}",
        rate / ceiling_rate
    );
    Ok(())
}

struct Written {
    counts: Counts,
    seconds: f64,
}

async fn write_workload(
    env: &BenchEnv,
    changes: u64,
    connections: usize,
) -> anyhow::Result<Written> {
    let connections = connections.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for (worker, quota) in workload::split(changes, connections)
        .into_iter()
        .enumerate()
    {
        let client = env.client().await?;
        let generator = Generator::new(worker, connections, 0x7269_6275_7461_7279);
        tasks.spawn(workload::unpaced(client, generator, quota));
    }
    let mut counts = Counts::default();
    while let Some(joined) = tasks.join_next().await {
        counts.add(&joined.context("workload task")??);
    }
    Ok(Written {
        counts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

struct Ceiling {
    seconds: f64,
    walsender_cpu: f64,
}

async fn run_ceiling(env: &BenchEnv, end_lsn: &str, timeout: Duration) -> anyhow::Result<Ceiling> {
    let binary = env.pg.bin_dir().join("pg_recvlogical");
    let walsender = WalsenderSampler::spawn(
        env.client().await?,
        CEILING_SLOT.to_owned(),
        Duration::from_millis(50),
    );
    let started = Instant::now();
    let child = tokio::process::Command::new(&binary)
        .args(["-h", env.pg.host(), "-p", &env.pg.port().to_string()])
        .args([
            "-U",
            env.pg.user(),
            "-d",
            DB,
            "--slot",
            CEILING_SLOT,
            "--start",
        ])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={PUBLICATION}"))
        .args(["--endpos", end_lsn, "--no-loop", "-f", "/dev/null"])
        .env("PGPASSWORD", env.pg.password())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.context("waiting for pg_recvlogical")?,
        Err(_) => bail!("pg_recvlogical did not reach {end_lsn} within {timeout:?}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let stats = walsender.finish().await;
    if !output.status.success() {
        bail!(
            "pg_recvlogical failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Ceiling {
        seconds,
        walsender_cpu: stats.cpu_secs,
    })
}

pub(crate) fn start_perf(
    pid: u32,
    path: &std::path::Path,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new("perf")
        .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting `perf record` (is perf installed?)")
}

pub(crate) async fn stop_perf(mut perf: tokio::process::Child) {
    if let Some(pid) = perf.id() {
        if let Err(e) = crate::env::signal(pid, nix::sys::signal::Signal::SIGINT) {
            eprintln!("warning: stopping perf: {e}");
        }
    }
    if tokio::time::timeout(Duration::from_secs(60), perf.wait())
        .await
        .is_err()
    {
        eprintln!("warning: perf did not finish writing within 60 s; killed");
        let _ = perf.kill().await;
    }
}

//! `e2e`: throughput of the bridge over a pre-written WAL, against the `pg_recvlogical` ceiling
//! (the walsender decoding the same WAL with pgoutput, output thrown away). With
//! `--replicas 1,3` the same WAL is also read by a bridge publishing to R3 streams on a local
//! 3-node cluster: one slot per run, all created before the first change.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::cluster::Cluster;
use crate::env::{self, BenchEnv, NatsTarget, Settings, DB, MARKER_TABLE, PUBLICATION};
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
    /// Stream replicas of each bridge run, in order: 1 is the single nats-server, N > 1 a
    /// local N-node cluster with R N streams and no confirmation delay.
    pub replicas: Vec<usize>,
    /// Add an `[ha]` block (one replica holding the lease) to the replicated runs.
    pub ha: bool,
    /// `[[sources]] schema` of the runs, each for every replica count.
    pub schemas: Vec<Schema>,
    /// `[[sources]] changes_per_message` of the runs, each for every replica count and schema.
    pub changes_per_message: Vec<usize>,
}

/// The text of the workload's last change (an update written after everything else): a run
/// with batches is complete once the stream's last event carries it.
const LAST_CHANGE_NOTE: &str = "bench: the last change";

/// `[[sources]] schema`: column descriptions in every event, or by reference (issue #16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Schema {
    Inline,
    Reference,
}

impl Schema {
    pub fn label(self) -> &'static str {
        match self {
            Schema::Inline => "inline",
            Schema::Reference => "reference",
        }
    }

    pub fn source_keys(self) -> &'static str {
        match self {
            Schema::Inline => "",
            Schema::Reference => "schema = \"reference\"\n",
        }
    }
}

/// The bridge's slot for a run with `replicas` stream replicas (R1 inline keeps the historical
/// name).
fn slot_for(replicas: usize, schema: Schema, changes_per_message: usize) -> String {
    let mut slot = BRIDGE_SLOT.to_owned();
    if replicas != 1 {
        slot.push_str(&format!("_r{replicas}"));
    }
    if schema == Schema::Reference {
        slot.push_str("_ref");
    }
    if changes_per_message != 1 {
        slot.push_str(&format!("_b{changes_per_message}"));
    }
    slot
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.changes == 0 {
        bail!("--changes must be at least 1");
    }
    let mut seen = Vec::new();
    for &r in &args.replicas {
        if !(1..=5).contains(&r) || seen.contains(&r) {
            bail!(
                "--replicas takes distinct values from 1 to 5, got {:?}",
                args.replicas
            );
        }
        seen.push(r);
    }
    if args.replicas.is_empty() {
        bail!("--replicas needs at least one value");
    }
    if args.schemas.is_empty()
        || (1..args.schemas.len()).any(|i| args.schemas[i..].contains(&args.schemas[i - 1]))
    {
        bail!("--schema takes distinct values, got {:?}", args.schemas);
    }
    println!("load average before: {}", procfs::load_average());
    let env = BenchEnv::start(settings).await?;
    println!("{}", env.describe());
    let control = env.client().await?;

    // Every slot exists before the first change, so every run sees the whole workload.
    env.create_slot(CEILING_SLOT).await?;
    if args.changes_per_message.is_empty() || args.changes_per_message.contains(&0) {
        bail!("--changes-per-message must list values of at least 1");
    }
    for &r in &args.replicas {
        for &schema in &args.schemas {
            for &cpm in &args.changes_per_message {
                env.create_slot(&slot_for(r, schema, cpm)).await?;
            }
        }
    }
    let start_lsn = env.current_lsn(&control).await?;

    let mut written = write_workload(&env, args.changes, args.connections).await?;
    // One more change, known to be the last: how a run with batches knows it is complete.
    let last = control
        .execute(
            "UPDATE sales_orders SET note = $1 WHERE id = (SELECT max(id) FROM sales_orders)",
            &[&LAST_CHANGE_NOTE],
        )
        .await
        .context("writing the last change")?;
    if last != 1 {
        bail!("the last change updated {last} rows");
    }
    written.counts.updates += 1;
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

    // (b) The bridge over the same WAL, once per replica count and schema mode.
    let mut runs = Vec::new();
    for &replicas in &args.replicas {
        let perf = args.perf_record.as_deref().map(|p| {
            if args.replicas.len() == 1 {
                p.to_owned()
            } else {
                p.with_extension(format!("r{replicas}.data"))
            }
        });
        if replicas == 1 {
            let pid = env.nats_pid();
            let nats = Publishing {
                js: &env.js,
                target: env.single_node(),
                cpu_secs: Box::new(move || vec![pid.and_then(procfs::cpu_secs)]),
            };
            for &schema in &args.schemas {
                for &cpm in &args.changes_per_message {
                    let perf = perf.clone();
                    runs.push(bridge_run(&env, &nats, changes, &args, (schema, cpm), perf).await?);
                }
            }
        } else {
            // Started only now (and dropped after) so that its idle nodes cost the other runs
            // nothing.
            let cluster = Cluster::start(replicas, env.settings.durability).await?;
            let nats = Publishing {
                js: &cluster.js,
                target: cluster.target(args.ha),
                cpu_secs: Box::new(|| cluster.cpu_secs()),
            };
            for &schema in &args.schemas {
                for &cpm in &args.changes_per_message {
                    let perf = perf.clone();
                    runs.push(bridge_run(&env, &nats, changes, &args, (schema, cpm), perf).await?);
                }
            }
        }
    }
    println!("load average after: {}", procfs::load_average());
    print_summary(&runs, changes, ceiling_rate);
    Ok(())
}

/// Where a bridge run publishes: the servers' JetStream, the bridge's NATS settings, and the
/// servers' CPU seconds (summed over a cluster's nodes).
struct Publishing<'a> {
    js: &'a async_nats::jetstream::Context,
    target: NatsTarget,
    cpu_secs: Box<dyn Fn() -> Vec<Option<f64>> + 'a>,
}

/// What one bridge run measured.
struct BridgeRun {
    replicas: usize,
    schema: Schema,
    changes_per_message: usize,
    settings: String,
    rate: f64,
    /// Changes per second from the first message stored to the last (without the start-up:
    /// connecting, creating the stream, for R3 electing its leader).
    streaming_rate: f64,
    messages: u64,
    bytes: u64,
    bridge_cpu: f64,
    nats_cpu: f64,
}

async fn bridge_run(
    env: &BenchEnv,
    nats: &Publishing<'_>,
    changes: u64,
    args: &Args,
    (schema, changes_per_message): (Schema, usize),
    perf_record: Option<PathBuf>,
) -> anyhow::Result<BridgeRun> {
    let target = &nats.target;
    let replicas = target.stream_replicas;
    let slot = slot_for(replicas, schema, changes_per_message);
    let mut label = if replicas == 1 {
        "tributary".to_owned()
    } else {
        format!("tributary R{replicas}")
    };
    if schema == Schema::Reference {
        label.push_str(" ref");
    }
    if changes_per_message != 1 {
        label.push_str(&format!(" {changes_per_message}/message"));
    }
    // Each run counts the messages of a stream of its own (the previous run's is deleted).
    let _ = nats.js.delete_stream(crate::env::STREAM).await;
    let settings = format!(
        "{} nats-server{}, [nats.stream] replicas = {}, [durability] confirm_delay_ms = {}{}",
        target.servers.len(),
        if target.servers.len() == 1 { "" } else { "s" },
        target.stream_replicas,
        target.confirm_delay_ms,
        if target.ha {
            ", [ha] (one replica)"
        } else {
            ""
        },
    );
    println!("{label}: {settings}, slot {slot}");
    let keys = format!(
        "{}changes_per_message = {changes_per_message}\n",
        schema.source_keys()
    );
    let config = env.write_config_for(&slot, &keys, target)?;
    let mut bridge = env.spawn_bridge(&config)?;
    let started = bridge.started();
    let sampler = Sampler::spawn(bridge.pid(), Duration::from_millis(100));
    let walsender = WalsenderSampler::spawn(env.client().await?, slot, Duration::from_millis(50));
    let nats_cpu_before = (nats.cpu_secs)();
    let perf = match &perf_record {
        Some(path) => Some(start_perf(bridge.pid(), path)?),
        None => None,
    };
    let poll = Duration::from_millis(20);
    let progress = if changes_per_message == 1 {
        env::wait_for_messages_on(nats.js, &mut bridge, changes, args.timeout, poll).await
    } else {
        env::wait_for_last_event(nats.js, &mut bridge, LAST_CHANGE_NOTE, args.timeout, poll).await
    };
    if let Some(perf) = perf {
        stop_perf(perf).await;
    }
    // Per node: on a cluster the stream leader's share differs from its followers'.
    let nats_cpu_nodes: Vec<f64> = (nats.cpu_secs)()
        .into_iter()
        .zip(nats_cpu_before)
        .map(|(after, before)| after.zip(before).map_or(f64::NAN, |(a, b)| a - b))
        .collect();
    let nats_cpu: f64 = nats_cpu_nodes.iter().sum();
    let stats = sampler.finish().await;
    let walsender_stats = walsender.finish().await;
    let stopped = bridge.stop().await;
    let progress = progress?;
    let status = stopped?;
    let seconds = secs(started, progress.done);
    let rate = changes as f64 / seconds;
    println!(
        "{label}: seconds={seconds:.3} (first message after {:.3} s) changes_per_sec={rate:.0} \
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
    if nats_cpu_nodes.len() > 1 {
        let nodes: Vec<String> = nats_cpu_nodes.iter().map(|c| format!("{c:.2}")).collect();
        let leader = match nats.js.get_stream(crate::env::STREAM).await {
            Ok(mut stream) => stream
                .info()
                .await
                .ok()
                .and_then(|i| i.cluster.as_ref()?.leader.clone())
                .unwrap_or_else(|| "?".to_owned()),
            Err(_) => "?".to_owned(),
        };
        println!(
            "{label}: nats_server_cpu_s per node (n1..n{}) = {} (stream leader now: {leader})",
            nodes.len(),
            nodes.join(" ")
        );
    }
    if changes_per_message == 1 && progress.messages != changes {
        println!(
            "warning: the stream holds {} messages, {changes} changes were written",
            progress.messages
        );
    }
    if changes_per_message > 1 {
        let events = env::count_events(nats.js).await?;
        println!(
            "{label}: the stream holds {events} events in {} messages ({:.1} events/message)",
            progress.messages,
            events as f64 / progress.messages.max(1) as f64
        );
        if events != changes {
            bail!("the stream holds {events} events, {changes} changes were written");
        }
    }
    if let Some(path) = &perf_record {
        println!(
            "perf profile: {} (perf report -i {} --no-children)",
            path.display(),
            path.display()
        );
    }
    Ok(BridgeRun {
        replicas,
        schema,
        changes_per_message,
        settings,
        rate,
        streaming_rate: progress
            .first_message
            .map_or(f64::NAN, |t| changes as f64 / secs(t, progress.done)),
        messages: progress.messages,
        bytes: progress.bytes,
        bridge_cpu: stats.cpu_secs,
        nats_cpu,
    })
}

/// A table of the runs, then the summary line (R1's figures first, as before `--replicas`).
fn print_summary(runs: &[BridgeRun], changes: u64, ceiling_rate: f64) {
    let r1 = runs
        .iter()
        .find(|r| r.replicas == 1 && r.schema == runs[0].schema && r.changes_per_message == 1)
        .map(|r| r.rate);
    if runs.len() > 1 {
        println!("summary (ceiling {ceiling_rate:.0} changes/s):");
        for run in runs {
            let per_change = |cpu: f64| cpu * 1e6 / changes as f64;
            println!(
                "  R{} {:?} {}/message: changes_per_sec={:.0} vs_ceiling={:.3} vs_R1={} \
                 after_first_message={:.0} B/event={:.0} \
                 bridge_cpu_s={:.2} ({:.1} us/change) nats_cpu_s={:.2} ({:.1} us/change) -- {}",
                run.replicas,
                run.schema,
                run.changes_per_message,
                run.rate,
                run.rate / ceiling_rate,
                r1.map_or_else(|| "-".to_owned(), |r1| format!("{:.3}", run.rate / r1)),
                run.streaming_rate,
                run.bytes as f64 / run.messages.max(1) as f64,
                run.bridge_cpu,
                per_change(run.bridge_cpu),
                run.nats_cpu,
                per_change(run.nats_cpu),
                run.settings,
            );
        }
    }
    let mut line = Vec::new();
    for run in runs {
        let mut prefix = if run.replicas == 1 {
            "e2e".to_owned()
        } else {
            format!("r{}", run.replicas)
        };
        let main = run.replicas == 1
            && run.schema == runs[0].schema
            && run.changes_per_message == runs[0].changes_per_message;
        if !main {
            prefix.push_str(match run.schema {
                Schema::Reference => "_ref",
                Schema::Inline => "_inline",
            });
            if run.changes_per_message != 1 {
                prefix.push_str(&format!("_b{}", run.changes_per_message));
            }
        }
        let mut part = format!("{prefix}_changes_per_sec={:.0}", run.rate);
        if main {
            part.push_str(&format!(
                " ceiling_changes_per_sec={ceiling_rate:.0} ratio={:.3}",
                run.rate / ceiling_rate
            ));
        } else {
            part.push_str(&format!(" {prefix}_ratio={:.3}", run.rate / ceiling_rate));
            if let Some(r1) = r1 {
                part.push_str(&format!(" {prefix}_vs_r1={:.3}", run.rate / r1));
            }
        }
        line.push(part);
    }
    if r1.is_none() {
        line.push(format!("ceiling_changes_per_sec={ceiling_rate:.0}"));
    }
    println!("{}", line.join(" "));
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

pub(crate) fn start_perf(pid: u32, path: &Path) -> anyhow::Result<tokio::process::Child> {
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
        if let Err(e) = crate::bridge::signal(pid, nix::sys::signal::Signal::SIGINT) {
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

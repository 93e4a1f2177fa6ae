//! `snapshot`: the initial snapshot of a large table (the bridge creates its slot with an
//! exported snapshot and copies the table in parallel chunks before streaming), against the
//! ceiling of reading the same rows out of PostgreSQL with one `COPY … TO STDOUT` drained and
//! thrown away.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::StreamExt as _;

use crate::bridge::Bridge;
use crate::e2e::Schema;
use crate::env::{BenchEnv, Settings, TABLE};
use crate::procfs::{self, Sampler};
use crate::workload::secs;

/// Created by the bridge itself (with `EXPORT_SNAPSHOT`): it must not exist before.
const SLOT: &str = "bench_snapshot";

/// The KV bucket of the snapshot progress (`tributary_pipeline::snapshot::SNAPSHOT_BUCKET`).
const SNAPSHOT_BUCKET: &str = "tributary_snapshots";

/// The session settings of the bridge's snapshot workers (`COPY_SESSION_SQL` of
/// tributary-postgres), so that the ceiling formats values exactly as the bridge reads them.
const COPY_SESSION_SQL: &str = "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; \
     SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// N ERP-like rows in one statement; notes are ~150–250 bytes (avg ~200), as in `e2e`.
const FILL_SQL: &str = "
INSERT INTO public.sales_orders (id, customer_id, amount, status, updated_at, note)
SELECT g,
       (1 + (g * 7919) % 50000)::int,
       ((100 + (g * 104729) % 4999901) / 100.0)::numeric(12,2),
       (ARRAY['placed', 'paid', 'picked', 'shipped', 'invoiced'])[1 + (g % 5)::int],
       now() - (g % 5000000) * interval '1 second',
       'order ' || g || ': ' || left(repeat(md5(g::text), 8), 135 + (g % 101)::int)
FROM generate_series(1::bigint, $1::bigint) AS g";

pub struct Args {
    pub rows: u64,
    pub parallelism: usize,
    pub chunk_rows: u64,
    pub timeout: Duration,
    /// `[[sources]] schema` of each run, in order.
    pub schemas: Vec<Schema>,
    /// Runs this `tributary` binary first (each schema), then the current one.
    pub baseline_binary: Option<std::path::PathBuf>,
    /// `snapshot_rows_per_message` of each run of the current binary (the baseline: 1).
    pub rows_per_message: Vec<usize>,
}

/// One bridge run: which binary (`None`: the current one), its schema mode and batching.
#[derive(Clone, Copy)]
struct Run<'a> {
    binary: Option<&'a std::path::Path>,
    schema: Schema,
    rows_per_message: usize,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    if args.parallelism == 0 {
        bail!("--parallelism must be at least 1");
    }
    if args.chunk_rows == 0 {
        bail!("--chunk-rows must be at least 1");
    }
    if args.rows_per_message.is_empty() || args.rows_per_message.contains(&0) {
        bail!("--rows-per-message must list values of at least 1");
    }
    let rows = i64::try_from(args.rows).context("--rows is too large")?;
    println!("load average before: {}", procfs::load_average());
    // Starts the servers and creates the table and the publication (bench_pub); no slot yet.
    let env = BenchEnv::start(settings).await?;
    println!("{}", env.describe());
    let control = env.client().await?;

    // (1) The table.
    let started = Instant::now();
    let inserted = control
        .execute(FILL_SQL, &[&rows])
        .await
        .context("filling the table (INSERT … SELECT generate_series)")?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    control
        .batch_execute(&format!("ANALYZE {TABLE}"))
        .await
        .context("ANALYZE")?;
    let analyze_seconds = started.elapsed().as_secs_f64();
    // Reads every row once before either measurement (hint bits, caches), so both read the
    // table in the same state.
    let started = Instant::now();
    let counted: i64 = control
        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
        .await
        .context("counting the rows")?
        .get(0);
    let warm_seconds = started.elapsed().as_secs_f64();
    let size = control
        .query_one(
            &format!(
                "SELECT pg_table_size('{TABLE}')::bigint, pg_total_relation_size('{TABLE}')::bigint, \
                 (SELECT avg(pg_column_size(t.*))::float8 FROM (SELECT * FROM {TABLE} LIMIT 10000) t), \
                 (SELECT avg(length(note))::float8 FROM (SELECT note FROM {TABLE} LIMIT 10000) n)"
            ),
            &[],
        )
        .await
        .context("reading the table's size")?;
    let (heap_bytes, total_bytes, row_bytes, note_bytes): (i64, i64, f64, f64) =
        (size.get(0), size.get(1), size.get(2), size.get(3));
    println!(
        "table: {TABLE} rows={inserted} fill_seconds={fill_seconds:.2} analyze_seconds={analyze_seconds:.2} \
         count_seconds={warm_seconds:.2} table_bytes={heap_bytes} ({:.1} MB; {:.1} MB with the index) \
         avg_row_bytes={row_bytes:.0} avg_note_bytes={note_bytes:.0}",
        heap_bytes as f64 / 1e6,
        total_bytes as f64 / 1e6,
    );
    if u64::try_from(counted).ok() != Some(args.rows) || inserted != args.rows {
        bail!(
            "the table holds {counted} rows ({inserted} inserted), {} expected",
            args.rows
        );
    }

    // (2) The ceiling: one COPY of every row, drained by this process.
    let ceiling = run_ceiling(&env).await?;
    if ceiling.rows != args.rows {
        bail!(
            "the ceiling's COPY returned {} rows, {} expected",
            ceiling.rows,
            args.rows
        );
    }
    let ceiling_rate = ceiling.rows as f64 / ceiling.seconds;
    println!(
        "ceiling: COPY (SELECT * FROM {TABLE}) TO STDOUT drained seconds={:.3} rows_per_sec={ceiling_rate:.0} \
         copy_bytes={} ({:.1} MB/s) backend_cpu_s={:.2} postgres_cpu_s={:.2}",
        ceiling.seconds,
        ceiling.bytes,
        ceiling.bytes as f64 / 1e6 / ceiling.seconds,
        ceiling.backend_cpu,
        ceiling.postgres_cpu,
    );

    // (3) The bridge, once per run: creates the slot with an exported snapshot, copies, then
    // streams. Every run has a slot and a stream of its own (the previous ones are removed).
    let baseline = args.baseline_binary.as_deref();
    let mut runs: Vec<Run> = Vec::new();
    if let Some(b) = baseline {
        runs.extend(args.schemas.iter().map(|&schema| Run {
            binary: Some(b),
            schema,
            rows_per_message: 1,
        }));
    }
    for &schema in &args.schemas {
        runs.extend(args.rows_per_message.iter().map(|&rows_per_message| Run {
            binary: None,
            schema,
            rows_per_message,
        }));
    }
    let mut results = Vec::new();
    for (index, run) in runs.into_iter().enumerate() {
        let label = format!(
            "{}{}{}",
            if run.binary.is_some() {
                "baseline "
            } else {
                ""
            },
            run.schema.label(),
            match run.rows_per_message {
                1 => String::new(),
                n => format!(" {n} rows/message"),
            }
        );
        let rate = run_bridge(&env, &args, index, run, &label).await?;
        println!(
            "{label}: rows_per_sec={rate:.0} vs_ceiling={:.3}",
            rate / ceiling_rate
        );
        results.push((label, rate));
    }
    println!("load average after: {}", procfs::load_average());
    let (first_label, first) = results.first().cloned().context("no bridge run")?;
    let (last_label, last) = results.last().cloned().context("no bridge run")?;
    println!(
        "snapshot_rows_per_sec={first:.0} copy_ceiling_rows_per_sec={ceiling_rate:.0} ratio={:.3}{}",
        first / ceiling_rate,
        if results.len() > 1 {
            format!(
                " last_run=\"{last_label}\" last_rows_per_sec={last:.0} last_ratio={:.3} last_vs_first=\"{first_label}\" {:.3}",
                last / ceiling_rate,
                last / first
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// One bridge run's snapshot of the table; returns its rows per second.
async fn run_bridge(
    env: &BenchEnv,
    args: &Args,
    index: usize,
    run: Run<'_>,
    label: &str,
) -> anyhow::Result<f64> {
    let Run {
        binary,
        schema,
        rows_per_message,
    } = run;
    let control = env.client().await?;
    let slot = if index == 0 {
        SLOT.to_owned()
    } else {
        format!("{SLOT}_{index}")
    };
    let exists: bool = control
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .context("looking for the slot")?
        .get(0);
    if exists {
        bail!("slot {slot} exists already: the bridge would not take a snapshot");
    }
    // A fresh stream to count, and no snapshot progress of an earlier run to resume from.
    let _ = env.js.delete_stream(crate::env::STREAM).await;
    let _ = env.js.delete_key_value(SNAPSHOT_BUCKET).await;
    let config = env.write_config_with(
        &slot,
        &format!(
            "snapshot = \"initial\"\nsnapshot_parallelism = {}\nsnapshot_chunk_rows = {}\n{}{}",
            args.parallelism,
            args.chunk_rows,
            schema.source_keys(),
            match rows_per_message {
                1 => String::new(),
                n => format!("snapshot_rows_per_message = {n}\n"),
            }
        ),
    )?;
    let postmaster = env.postmaster_pid();
    let pg_cpu_before = postmaster.and_then(procfs::cluster_cpu_secs);
    let nats_cpu_before = env.nats_pid().and_then(procfs::cpu_secs);
    let spawned = std::time::SystemTime::now();
    let mut bridge = match binary {
        Some(path) => Bridge::spawn(path, &config, config.with_extension("log"))?,
        None => env.spawn_bridge(&config)?,
    };
    let started = bridge.started();
    let sampler = Sampler::spawn(bridge.pid(), Duration::from_millis(100));
    let poll = Duration::from_millis(20);
    let progress = if rows_per_message == 1 {
        env.wait_for_messages(&mut bridge, args.rows, args.timeout, poll)
            .await
    } else {
        // Batches: the stream holds fewer messages than rows; the snapshot is complete once
        // the bridge logs it (every chunk acknowledged), and the rows are counted after.
        let log = bridge.log_path();
        crate::env::wait_for_stream(
            &env.js,
            &mut bridge,
            "`snapshot: done` in the bridge log",
            args.timeout,
            poll,
            async |_| Ok(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("snapshot: done"))),
        )
        .await
    };
    let pg_cpu = postmaster
        .and_then(procfs::cluster_cpu_secs)
        .zip(pg_cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    let nats_cpu = env
        .nats_pid()
        .and_then(procfs::cpu_secs)
        .zip(nats_cpu_before)
        .map_or(f64::NAN, |(after, before)| after - before);
    let stats = sampler.finish().await;
    let phases = Phases::from_log(&bridge.log_text(), spawned);
    let stopped = bridge.stop().await;
    let progress = progress?;
    let status = stopped?;
    // The slot would hold WAL back for the rest of the invocation.
    let _ = control
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await;
    let seconds = secs(started, progress.done);
    let rate = args.rows as f64 / seconds;
    let per_row = |cpu: f64| cpu * 1e6 / args.rows as f64;
    println!(
        "tributary ({label}): seconds={seconds:.3} (first message after {:.3} s) rows_per_sec={rate:.0} \
         parallelism={} chunk_rows={} stream_messages={} stream_bytes={} ({:.1} MB, {:.0} B/event) \
         bridge_cpu_s={:.2} ({:.2} us/row) postgres_cpu_s={pg_cpu:.2} nats_server_cpu_s={nats_cpu:.2} \
         ({:.2} us/row) peak_rss_mb={:.1} exit={status}",
        progress
            .first_message
            .map_or(f64::NAN, |t| secs(started, t)),
        args.parallelism,
        args.chunk_rows,
        progress.messages,
        progress.bytes,
        progress.bytes as f64 / 1e6,
        progress.bytes as f64 / progress.messages.max(1) as f64,
        stats.cpu_secs,
        per_row(stats.cpu_secs),
        per_row(nats_cpu),
        stats.peak_rss_mb(),
    );
    let fmt = |t: Option<f64>| t.map_or_else(|| "?".to_owned(), |t| format!("{t:.3}"));
    let copy_phase = phases.copying.zip(phases.done).map(|(a, b)| b - a);
    let copy_rate = copy_phase.map(|s| args.rows as f64 / s);
    println!(
        "bridge log (s after spawn): slot created {}, snapshot: copying {} ({}), \
         snapshot: done {}; copy phase {} s = {} rows/s",
        fmt(phases.slot_created),
        fmt(phases.copying),
        phases.plan.as_deref().unwrap_or("?"),
        fmt(phases.done),
        fmt(copy_phase),
        copy_rate.map_or_else(|| "?".to_owned(), |r| format!("{r:.0}")),
    );
    if rows_per_message == 1 && progress.messages != args.rows {
        println!(
            "warning: the stream holds {} messages, the table {} rows",
            progress.messages, args.rows
        );
    }
    if rows_per_message > 1 {
        let events = crate::env::count_events(&env.js).await?;
        println!(
            "stream holds {events} read events in {} messages ({:.1} rows/message)",
            progress.messages,
            events as f64 / progress.messages.max(1) as f64
        );
        if events != args.rows {
            bail!(
                "the stream holds {events} read events, the table {} rows",
                args.rows
            );
        }
    }
    Ok(rate)
}

struct Ceiling {
    rows: u64,
    bytes: u64,
    seconds: f64,
    /// CPU seconds of the backend running the COPY.
    backend_cpu: f64,
    /// CPU seconds of the whole cluster meanwhile.
    postgres_cpu: f64,
}

async fn run_ceiling(env: &BenchEnv) -> anyhow::Result<Ceiling> {
    let client = env.client().await?;
    client
        .batch_execute(COPY_SESSION_SQL)
        .await
        .context("setting up the COPY session")?;
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .context("reading the backend's pid")?
        .get(0);
    let backend = u32::try_from(backend).ok();
    let postmaster = env.postmaster_pid();
    let backend_before = backend.and_then(procfs::cpu_secs);
    let pg_before = postmaster.and_then(procfs::cluster_cpu_secs);
    let started = Instant::now();
    let stream = client
        .copy_out(&format!("COPY (SELECT * FROM {TABLE}) TO STDOUT"))
        .await
        .context("starting the ceiling's COPY")?;
    let mut stream = std::pin::pin!(stream);
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Some(data) = stream.next().await {
        let data = data.context("reading the ceiling's COPY")?;
        bytes += data.len() as u64;
        // Text format: a row ends with a newline; newlines inside values are escaped (\n).
        rows += data.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    let delta = |after: Option<f64>, before: Option<f64>| {
        after
            .zip(before)
            .map_or(f64::NAN, |(after, before)| after - before)
    };
    Ok(Ceiling {
        rows,
        bytes,
        seconds,
        backend_cpu: delta(backend.and_then(procfs::cpu_secs), backend_before),
        postgres_cpu: delta(postmaster.and_then(procfs::cluster_cpu_secs), pg_before),
    })
}

/// When the bridge logged its snapshot milestones, in seconds after `spawned` (wall clock;
/// the log's timestamps are UTC with microseconds).
struct Phases {
    slot_created: Option<f64>,
    copying: Option<f64>,
    done: Option<f64>,
    /// The fields of the `snapshot: copying` line (chunks, tables, parallelism).
    plan: Option<String>,
}

impl Phases {
    fn from_log(log: &str, spawned: std::time::SystemTime) -> Phases {
        let spawned = spawned
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(f64::NAN, |d| d.as_secs_f64() % 86_400.0);
        let at = |needle: &str| {
            let line = log.lines().find(|l| l.contains(needle))?;
            let mut offset = time_of_day(line)? - spawned;
            if offset < -43_200.0 {
                offset += 86_400.0; // across midnight (UTC)
            }
            Some(offset)
        };
        Phases {
            slot_created: at("created replication slot"),
            copying: at("snapshot: copying"),
            done: at("snapshot: done"),
            plan: log
                .lines()
                .find_map(|l| l.split_once("snapshot: copying"))
                .map(|(_, fields)| fields.trim().to_owned()),
        }
    }
}

/// Seconds since midnight of a log line starting with an RFC 3339 UTC timestamp
/// (`2026-01-01T12:34:56.789012Z …`).
fn time_of_day(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let clock = stamp.split_once('T')?.1.strip_suffix('Z')?;
    let mut parts = clock.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

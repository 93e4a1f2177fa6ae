//! `tributary-bench`: end-to-end throughput against the pg_recvlogical ceiling, latency under a steady load, one big transaction, the initial snapshot against a COPY ceiling, the domain stage, and the sinks' events applied per second against their emulators.

mod bigtx;
mod bridge;
mod cluster;
mod domain;
mod e2e;
mod env;
mod failover;
mod latency;
mod nats_cost;
mod priority;
mod procfs;
mod sinks;
mod snapshot;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

// The emulators of `sinks` run in this process and share the two cores with the bridge;
// with the system allocator, heap consolidation and growth took about a third of the
// Shopify emulator's CPU (large request and response buffers between many small JSON
// values). The bridge uses mimalloc too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tributary-bench",
    about = "Benchmarks of the Tributary bridge on throwaway PostgreSQL and nats-server instances",
    after_help = "Build the bridge first: cargo build --release -p tributary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Run PostgreSQL with fsync=on and full_page_writes=on (default: both off).
    #[arg(long, global = true)]
    pg_fsync: bool,
    /// `nats.ack_window` of the bridge (default: the bridge's own default).
    #[arg(long, global = true)]
    ack_window: Option<usize>,
    /// The `tributary` binary (default: $TRIBUTARY_BIN, $CARGO_TARGET_DIR/release/tributary,
    /// or next to this executable).
    #[arg(long, global = true)]
    bridge_binary: Option<PathBuf>,
    /// How acknowledged messages become durable: `always` (fsync per write), `interval`
    /// (1 s sync + confirmation held back 1.5 s; the shipped default) or `none` (not durable).
    #[arg(long, global = true, value_enum, default_value = "interval")]
    durability: env::Durability,
}

#[derive(Subcommand)]
enum Command {
    /// Two replicas share one source under [ha] on a local 3-node cluster: time from the
    /// owner's SIGKILL / SIGTERM to the first change the new owner stores, over many trials.
    Failover {
        /// Trials of each kind (SIGKILL, SIGTERM), alternating.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 10_000)]
        ttl_ms: u64,
    },
    /// Write N row changes, then replay the WAL through pg_recvlogical (the ceiling) and
    /// through the bridge into JetStream; compare the rates.
    E2e {
        #[arg(long, default_value_t = 500_000)]
        changes: u64,
        /// Concurrent connections writing the workload.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Give up when a phase takes longer than this.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Record a perf profile of the bridge (perf record -g) into this file; perturbs the
        /// figures. With several --replicas, one file per run: FILE.r<N>.data.
        #[arg(long)]
        perf_record: Option<PathBuf>,
        /// Bridge runs over the same WAL, by stream replicas: 1 = the single nats-server (R1,
        /// confirm_delay_ms per --durability); N > 1 = a local N-node cluster, R N streams,
        /// confirm_delay_ms = 0 (the shipped HA combination). E.g. `--replicas 1,3`.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        replicas: Vec<usize>,
        /// Add an `[ha]` block (one bridge replica holding the lease) to the N > 1 runs.
        #[arg(long)]
        ha: bool,
        /// Column descriptions of each bridge run (`[[sources]] schema`), in order: `inline`,
        /// `reference` or both, e.g. `--schema inline,reference` (each over the same WAL, for
        /// every --replicas value).
        #[arg(long, value_delimiter = ',', default_value = "inline")]
        schema: Vec<e2e::Schema>,
        /// `[[sources]] changes_per_message` of each run, e.g. `--changes-per-message 1,100`
        /// (1: a message per change; above 1: `ChangeEventBatch` messages), for every
        /// --replicas and --schema value.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        changes_per_message: Vec<usize>,
    },
    /// Offer a steady load of ~10-row transactions and measure commit -> subscriber latency
    /// and the bridge's memory.
    Latency {
        /// Row changes per second.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Connections sharing the rate.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// `[[sources]] schema` of the bridge: `inline` or `reference`.
        #[arg(long, default_value = "inline")]
        schema: e2e::Schema,
        /// `[[sources]] changes_per_message` of the bridge.
        #[arg(long, default_value_t = 1)]
        changes_per_message: usize,
    },
    /// One transaction inserting many rows (INSERT … SELECT generate_series) while the bridge
    /// runs: time until all are in the stream, and peak memory.
    Bigtx {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Fill a table with N rows, then time the bridge's initial snapshot of it (slot created
    /// by the bridge, parallel chunked COPY) against one COPY of the table drained by the bench.
    Snapshot {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// The source's `snapshot_parallelism` (worker connections).
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// The source's `snapshot_chunk_rows`.
        #[arg(long, default_value_t = 50_000)]
        chunk_rows: u64,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// `[[sources]] schema` of each bridge run, in order, e.g. `--schema inline,reference`
        /// (each run copies the same table into a fresh stream).
        #[arg(long, value_delimiter = ',', default_value = "inline")]
        schema: Vec<e2e::Schema>,
        /// Also run this `tributary` binary (an older build), before the current one, for
        /// each --schema: before/after in one invocation.
        #[arg(long)]
        baseline_binary: Option<PathBuf>,
        /// The source's `snapshot_rows_per_message` of each run of the current binary, e.g.
        /// `--rows-per-message 1,500` (1: a message per row; above 1: `ChangeEventBatch`
        /// messages). Runs: every --schema with every value, in order.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        rows_per_message: Vec<usize>,
    },
    /// The domain stage on the sample retail databases: customers and orders (four events
    /// per order) written in bulk, timed live and across a kill -9 of the bridge.
    Domain {
        #[arg(long, default_value_t = 3000)]
        customers: u64,
        #[arg(long, default_value_t = 1500)]
        orders: u64,
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
    },
    /// Publish N domain events per sink to RETAIL, then time each sink (alone, with its
    /// emulator's rate limits off) from the bridge's start until every event is acked, and
    /// check the emulator's final state.
    /// p99 apply latency of the Shopify sink's high class with the cost bucket throttling
    /// hard vs unthrottled, and the low class's lag (docs/performance.md, "Priority classes").
    Priority {
        /// High-class events (stock levels, one SKU each).
        #[arg(long, default_value_t = 300)]
        levels: usize,
        /// High-class events published per second.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
        /// Customers of the low class's backlog.
        #[arg(long, default_value_t = 150)]
        customers: usize,
        /// Updates per customer.
        #[arg(long, default_value_t = 2)]
        versions: u64,
        /// Throttled phases: cost bucket size (points).
        #[arg(long, default_value_t = 200.0)]
        bucket: f64,
        /// Throttled phases: points restored per second.
        #[arg(long, default_value_t = 100.0)]
        restore_rate: f64,
        /// Give up on a phase after this long.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    Sinks {
        /// Events per sink.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Distinct entities: Shopify SKUs; Salesforce customers (and as many orders).
        #[arg(long, default_value_t = 5_000)]
        entities: u64,
        /// Which sinks, in this order.
        #[arg(long, value_delimiter = ',', default_value = "wms,shopify,salesforce")]
        sinks: Vec<String>,
        /// `[sinks.<name>.delivery] lanes` (default: the bridge's default).
        #[arg(long)]
        lanes: Option<usize>,
        /// `batch_size` of Salesforce and Shopify (default: the bridge's defaults, 200 and 50;
        /// Shopify 1 = one document per event, the behaviour before batching).
        #[arg(long)]
        batch_size: Option<usize>,
        /// `batch_linger_ms` of Salesforce and Shopify (default: the bridge's defaults, 20 and 2).
        #[arg(long)]
        batch_linger_ms: Option<u64>,
        /// Give up on a sink after this long.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Record a perf profile of the bridge per sink (FILE.<sink>.data); perturbs the figures.
        #[arg(long)]
        perf_record: Option<PathBuf>,
    },
    /// nats-server's CPU per stored message for each choice of headers (both, as with
    /// `nats.msg_id_header`; the expected sequence only, the default; `Nats-Msg-Id` only;
    /// none) and payload size, pipelined like the bridge.
    NatsCost {
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Payload sizes, bytes.
        #[arg(long, value_delimiter = ',', default_value = "560,370")]
        sizes: Vec<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = env::Settings {
        pg_fsync: cli.pg_fsync,
        ack_window: cli.ack_window,
        bridge_binary: cli.bridge_binary,
        durability: cli.durability,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Failover { trials, ttl_ms } => {
                failover::run(failover::Args {
                    trials,
                    ttl_ms,
                    bridge_binary: settings.bridge_binary.clone(),
                })
                .await
            }
            Command::E2e {
                changes,
                connections,
                timeout_secs,
                perf_record,
                replicas,
                ha,
                schema,
                changes_per_message,
            } => {
                e2e::run(
                    e2e::Args {
                        changes,
                        connections,
                        timeout: Duration::from_secs(timeout_secs),
                        perf_record,
                        replicas,
                        ha,
                        schemas: schema,
                        changes_per_message,
                    },
                    settings,
                )
                .await
            }
            Command::Latency {
                rate,
                seconds,
                connections,
                schema,
                changes_per_message,
            } => {
                latency::run(
                    latency::Args {
                        rate,
                        seconds,
                        connections,
                        schema,
                        changes_per_message,
                    },
                    settings,
                )
                .await
            }
            Command::NatsCost { messages, sizes } => {
                nats_cost::run(nats_cost::Args { messages, sizes }, settings).await
            }
            Command::Bigtx { rows, timeout_secs } => {
                bigtx::run(
                    bigtx::Args {
                        rows,
                        timeout: Duration::from_secs(timeout_secs),
                    },
                    settings,
                )
                .await
            }
            Command::Domain {
                customers,
                orders,
                timeout_secs,
            } => {
                domain::run(
                    domain::Args {
                        customers,
                        orders,
                        timeout: Duration::from_secs(timeout_secs),
                    },
                    settings,
                )
                .await
            }
            Command::Snapshot {
                rows,
                parallelism,
                chunk_rows,
                timeout_secs,
                schema,
                baseline_binary,
                rows_per_message,
            } => {
                snapshot::run(
                    snapshot::Args {
                        rows,
                        parallelism,
                        chunk_rows,
                        timeout: Duration::from_secs(timeout_secs),
                        schemas: schema,
                        baseline_binary,
                        rows_per_message,
                    },
                    settings,
                )
                .await
            }
            Command::Priority {
                levels,
                rate,
                customers,
                versions,
                bucket,
                restore_rate,
                timeout_secs,
            } => {
                priority::run(
                    priority::Args {
                        levels,
                        rate,
                        customers,
                        versions,
                        bucket,
                        restore_rate,
                        timeout: Duration::from_secs(timeout_secs),
                    },
                    settings,
                )
                .await
            }
            Command::Sinks {
                events,
                entities,
                sinks,
                lanes,
                batch_size,
                batch_linger_ms,
                timeout_secs,
                perf_record,
            } => {
                sinks::run(
                    sinks::Args {
                        events,
                        entities,
                        sinks,
                        lanes,
                        batch_size,
                        batch_linger_ms,
                        timeout: Duration::from_secs(timeout_secs),
                        perf_record,
                    },
                    settings,
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

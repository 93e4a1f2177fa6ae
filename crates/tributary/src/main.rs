//! The `tributary` binary: run the bridge, and the commands around it.

mod backfill;
mod check_config;
#[cfg(feature = "demo")]
mod demo;
mod dlq;
mod exit;
mod http;
mod ops;
mod readiness;
mod replay;
mod replicas;
mod run;
#[cfg(feature = "demo")]
mod sandbox;
mod streams_monitor;
mod tail;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The publish path allocates small buffers per change; mimalloc halves what the system
// allocator costs there (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "Change data capture from PostgreSQL to NATS JetStream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the WMS, Shopify and Salesforce emulators (for compose and for trying sinks).
    #[cfg(feature = "demo")]
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:8081")]
        wms: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8082")]
        shopify: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8083")]
        salesforce: std::net::SocketAddr,
        /// Salesforce Pub/Sub API (gRPC) of the same emulated org.
        #[arg(long, default_value = "127.0.0.1:8084")]
        salesforce_pubsub: std::net::SocketAddr,
        /// Products seeded in the Shopify emulator (SKU-0001 …).
        #[arg(long, default_value_t = 40)]
        skus: u32,
    },
    /// Re-read a table (or the rows matching --where) into the stream while streaming goes
    /// on, through the source's signal table; the running bridge does the work.
    Backfill {
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        source: String,
        /// `schema.table`
        #[arg(long)]
        table: String,
        /// SQL predicate selecting the rows, e.g. "region = 'EU'".
        #[arg(long = "where")]
        filter: Option<String>,
        /// Return once the request is recorded instead of following its progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Run the bridge with a configuration file.
    Run {
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration file without connecting anywhere.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// Fail (instead of warning) when a secret cannot be resolved here.
        #[arg(long)]
        strict: bool,
        /// `table` for a terminal, `json` for scripts.
        #[arg(long, value_enum, default_value_t = ops::Format::Table)]
        format: ops::Format,
    },
    /// Start a throwaway PostgreSQL and nats-server, the bridge and a write load, and show
    /// events flowing. Ctrl-C stops and cleans up everything.
    #[cfg(feature = "demo")]
    Demo {
        /// Seconds to run; 0 runs until Ctrl-C.
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Row changes per second written by the load generator.
        #[arg(long, default_value_t = 200)]
        rate: u32,
    },
    /// Check that each source's PostgreSQL and the NATS server are ready for the bridge;
    /// prints a fix for every failure and exits non-zero if any check fails.
    Preflight(ops::preflight::Args),
    /// Show each source's replication slot: position, lag, WAL retention. `slots drop`
    /// removes one.
    Slots(ops::slots::Args),
    /// Show each source's slot and stream, and the running bridge's state.
    Status(ops::status::Args),
    /// Re-apply a sink's events from a stream sequence or a time (idempotent: the targets
    /// end as after one clean application).
    Replay {
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
        /// The sink (wms, shopify, …).
        #[arg(long)]
        sink: String,
        /// First sequence of the domain stream to re-apply.
        #[arg(
            long,
            conflicts_with = "from_time",
            required_unless_present = "from_time"
        )]
        from_seq: Option<u64>,
        /// Re-apply the events stored at or after this time (RFC 3339).
        #[arg(long, value_parser = replay::parse_time)]
        from_time: Option<time::OffsetDateTime>,
    },
    /// A sink's dead letters: list, show, redrive (apply again), drop.
    Dlq(dlq::Args),
    /// Orders as the order-to-cash tracker follows them: `orders show <order>` (its
    /// timeline), `orders stuck --older-than 30m`.
    Orders(ops::orders::Args),
    /// The inventory reconciliation: `inventory drift` (the last sweep's SKU-locations that
    /// disagree between the ERP, the WMS and the storefront; `--sweep` runs one now).
    Inventory(ops::inventory::Args),
    /// Print the events of a subject as JSON, decoded with the published descriptor set.
    Tail(tail::Args),
    /// Print a shell completion script: `source <(tributary completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config).await,
            Command::CheckConfig {
                config,
                strict,
                format,
            } => check_config::run(&config, strict, format).map_err(exit::config),
            #[cfg(feature = "demo")]
            Command::Demo { seconds, rate } => demo::demo(seconds, rate).await,
            #[cfg(feature = "demo")]
            Command::Sandbox {
                wms,
                shopify,
                salesforce,
                salesforce_pubsub,
                skus,
            } => sandbox::run(wms, shopify, salesforce, salesforce_pubsub, skus).await,
            Command::Backfill {
                config,
                source,
                table,
                filter,
                no_wait,
            } => backfill::request(&config, &source, &table, filter, !no_wait).await,
            Command::Preflight(args) => ops::preflight::run(args).await,
            Command::Slots(args) => ops::slots::run(args).await,
            Command::Status(args) => ops::status::run(args).await,
            Command::Replay {
                config,
                sink,
                from_seq,
                from_time,
            } => {
                let from = match (from_seq, from_time) {
                    (Some(n), _) => replay::From::Sequence(n),
                    (None, Some(t)) => replay::From::Time(t),
                    (None, None) => anyhow::bail!("give --from-seq or --from-time"),
                };
                replay::run(&config, &sink, from).await
            }
            Command::Dlq(args) => dlq::run(args).await,
            Command::Orders(args) => ops::orders::run(args).await,
            Command::Inventory(args) => ops::inventory::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "tributary", &mut std::io::stdout());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not `{e:#}`: our error types repeat their source's text, which would print it twice.
            eprintln!("error: {}", tributary_core::chain(e.as_ref()));
            ExitCode::from(exit::code(&e))
        }
    }
}

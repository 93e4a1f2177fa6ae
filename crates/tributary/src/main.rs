//! The `tributary` binary: run the bridge, and the commands around it.

mod demo;
mod http;
mod run;
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
    /// Run the bridge with a configuration file.
    Run {
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration file without connecting anywhere.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start a throwaway PostgreSQL and nats-server, the bridge and a write load, and show
    /// events flowing. Ctrl-C stops and cleans up everything.
    Demo {
        /// Seconds to run; 0 runs until Ctrl-C.
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Row changes per second written by the load generator.
        #[arg(long, default_value_t = 200)]
        rate: u32,
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
            Command::CheckConfig { config } => {
                tributary_config::load(&config)?;
                println!("{}: ok", config.display());
                Ok(())
            }
            Command::Demo { seconds, rate } => demo::demo(seconds, rate).await,
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

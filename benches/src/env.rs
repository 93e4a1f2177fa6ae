//! The benchmark environment: throwaway servers (through tributary-testkit), the ERP-like
//! schema, slots, the bridge's configuration, the bridge process and stream polling.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tributary_testkit::{NatsOptions, NatsServer, PgCluster, PgOptions};

pub const DB: &str = "bench";
pub const PUBLICATION: &str = "bench_pub";
pub const SOURCE: &str = "bench";
pub const STREAM: &str = "CDC_BENCH";
/// The table the workloads write, and the only one the bridge publishes.
pub const TABLE: &str = "public.sales_orders";
/// In the publication but not in the bridge's `tables`: the end-of-workload marker lives here
/// so that `pg_recvlogical --endpos` sees a message past the end without adding an event.
pub const MARKER_TABLE: &str = "public.bench_marker";

const SCHEMA: &str = "
CREATE TABLE public.sales_orders (
    id          bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL,
    updated_at  timestamptz NOT NULL,
    note        text NOT NULL
);
CREATE TABLE public.bench_marker (id bigserial PRIMARY KEY, note text NOT NULL);
CREATE PUBLICATION bench_pub FOR TABLE public.sales_orders, public.bench_marker;
";

/// Options shared by every subcommand.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Run PostgreSQL with `fsync=on` and `full_page_writes=on` (default: both off).
    pub pg_fsync: bool,
    /// `nats.ack_window` for the bridge; `None` keeps the bridge's default.
    pub ack_window: Option<usize>,
    /// Path of the `tributary` binary; `None` searches the usual places.
    pub bridge_binary: Option<PathBuf>,
    /// How acknowledged messages are made durable (see docs/durability.md).
    pub durability: Durability,
}

/// The durability set-ups of docs/durability.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// nats-server `sync_interval: always`: fsync per JetStream write before the ack.
    Always,
    /// nats-server `sync_interval: 1s` and the bridge's `confirm_delay_ms = 1500`: the slot
    /// is confirmed only past messages that are at least one sync old (the shipped default).
    Interval,
    /// nats-server's default 2-minute sync and no confirmation delay: NOT durable on power
    /// loss; shows what durability costs.
    None,
}

/// A nats-server with the JetStream durability set-up of `durability`.
pub async fn start_nats(
    durability: Durability,
) -> Result<NatsServer, tributary_testkit::TestkitError> {
    NatsServer::start_with(NatsOptions {
        sync_always: durability == Durability::Always,
        sync_interval: (durability == Durability::Interval).then(|| "1s".to_owned()),
        ..NatsOptions::default()
    })
    .await
}

/// One PostgreSQL cluster, one nats-server and a scratch directory, all removed on drop.
pub struct BenchEnv {
    pub pg: PgCluster,
    pub nats: NatsServer,
    pub nats_client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
}

impl BenchEnv {
    /// Starts both servers and creates the database, tables and publication.
    pub async fn start(settings: Settings) -> anyhow::Result<BenchEnv> {
        let fsync = if settings.pg_fsync { "on" } else { "off" };
        let pg = PgCluster::start_with(PgOptions {
            settings: [
                ("synchronous_commit", "on"),
                ("fsync", fsync),
                ("full_page_writes", fsync),
                ("max_wal_size", "16GB"),
                ("checkpoint_timeout", "30min"),
                ("max_connections", "50"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            ..PgOptions::default()
        })
        .await
        .context("starting PostgreSQL (tributary-testkit)")?;
        let nats = start_nats(settings.durability)
            .await
            .context("starting nats-server (tributary-testkit)")?;
        let client = nats.connect().await.context("connecting to nats-server")?;
        let js = async_nats::jetstream::new(client.clone());
        // Same switch as tributary-testkit's: keep the bridge's config and log for inspection.
        let keep =
            std::env::var("TRIBUTARY_KEEP_TEST_DIRS").is_ok_and(|v| !v.is_empty() && v != "0");
        let dir = tempfile::Builder::new()
            .prefix("tributary-bench-")
            .disable_cleanup(keep)
            .tempdir()
            .context("creating the benchmark's scratch directory")?;
        if keep {
            eprintln!("keeping {} (bridge config and log)", dir.path().display());
        }
        pg.create_database(DB)
            .await
            .context("creating the bench database")?;
        pg.connect(DB)
            .await?
            .batch_execute(SCHEMA)
            .await
            .context("creating the benchmark schema")?;
        Ok(BenchEnv {
            pg,
            nats,
            nats_client: client,
            js,
            dir,
            settings,
        })
    }

    /// One line describing the servers' durability settings, for every report.
    pub fn describe(&self) -> String {
        let fsync = if self.settings.pg_fsync { "on" } else { "off" };
        let sync = match self.settings.durability {
            Durability::Always => "sync_interval=always",
            Durability::Interval => "sync_interval=1s with bridge confirm_delay_ms=1500",
            Durability::None => "default sync_interval (2 min; NOT durable per ack)",
        };
        format!(
            "setup: postgresql fsync={fsync} full_page_writes={fsync} synchronous_commit=on \
             wal_level=logical (port {}); nats-server JetStream file store {sync} ({}); \
             bridge ack_window={}",
            self.pg.port(),
            self.nats.url(),
            self.settings
                .ack_window
                .map_or_else(|| "default".to_owned(), |w| w.to_string()),
        )
    }

    /// The nats-server's pid, found read-only in /proc by its config path (testkit keeps the
    /// config next to the store directory); only used to sample its CPU time.
    pub fn nats_pid(&self) -> Option<u32> {
        nats_server_pid(&self.nats)
    }

    /// The postmaster's pid (first line of `postmaster.pid` in the data directory); with
    /// [`crate::procfs::cluster_cpu_secs`] it gives the CPU time of the whole cluster.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pg.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        self.pg
            .connect(DB)
            .await
            .context("connecting to the bench database")
    }

    /// Creates a pgoutput slot with SQL and returns its consistent point.
    pub async fn create_slot(&self, name: &str) -> anyhow::Result<String> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&name],
            )
            .await
            .with_context(|| format!("creating the logical replication slot {name}"))?;
        Ok(row.get(0))
    }

    /// Writes a bridge configuration for `slot` (which must exist or will be created).
    pub fn write_config(&self, slot: &str) -> anyhow::Result<PathBuf> {
        self.write_config_with(slot, "")
    }

    /// [`BenchEnv::write_config`] with extra keys (TOML lines, each ending in a newline) in
    /// the `[[sources]]` table, e.g. the snapshot settings.
    pub fn write_config_with(&self, slot: &str, source_keys: &str) -> anyhow::Result<PathBuf> {
        let ack_window = self
            .settings
            .ack_window
            .map(|w| format!("ack_window = {w}\n"))
            .unwrap_or_default();
        let confirm_delay = if self.settings.durability == Durability::Interval {
            1500
        } else {
            0
        };
        let text = format!(
            r#"# Written by tributary-bench.
http_listen = "127.0.0.1:{http}"

[log]
level = "info"

[durability]
confirm_delay_ms = {confirm_delay}

[nats]
servers = [{nats}]
{ack_window}
[[sources]]
name = "{SOURCE}"
publication = "{PUBLICATION}"
slot = {slot}
tables = ["{TABLE}"]
heartbeat_interval_secs = 10
{source_keys}
[sources.connection]
host = "127.0.0.1"
port = {port}
user = {user}
password = {password}
dbname = "{DB}"

[sources.stream]
name = "{STREAM}"
storage = "file"
max_bytes = -1
"#,
            http = tributary_testkit::try_free_port()?,
            nats = toml_string(&self.nats.url()),
            slot = toml_string(slot),
            port = self.pg.port(),
            user = toml_string(self.pg.user()),
            password = toml_string(self.pg.password()),
        );
        tributary_config::parse(&text).context("the generated bridge configuration is invalid")?;
        let path = self.dir.path().join(format!("tributary-{slot}.toml"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// `pg_current_wal_lsn()` as text.
    pub async fn current_lsn(&self, client: &tokio_postgres::Client) -> anyhow::Result<String> {
        let row = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .context("reading pg_current_wal_lsn()")?;
        Ok(row.get(0))
    }

    /// Bytes of WAL between two LSNs.
    pub async fn wal_bytes(
        &self,
        client: &tokio_postgres::Client,
        from: &str,
        to: &str,
    ) -> anyhow::Result<i64> {
        let row = client
            .query_one(
                "SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::bigint",
                &[&from, &to],
            )
            .await
            .context("computing the WAL distance")?;
        Ok(row.get(0))
    }

    /// Starts the bridge with `config`, logging to the scratch directory.
    pub fn spawn_bridge(&self, config: &Path) -> anyhow::Result<Bridge> {
        let binary = match &self.settings.bridge_binary {
            Some(path) => path.clone(),
            None => find_bridge_binary()?,
        };
        Bridge::spawn(&binary, config, self.dir.path().join("tributary.log"))
    }

    /// Waits until the bridge has created the stream; returns it.
    pub async fn wait_for_stream(
        &self,
        bridge: &mut Bridge,
        timeout: Duration,
    ) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
        let deadline = Instant::now() + timeout;
        loop {
            bridge.check_running()?;
            match self.js.get_stream(STREAM).await {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() >= deadline => {
                    bail!(
                        "the bridge did not create stream {STREAM} within {timeout:?} (last error: {e})\n\
                         --- bridge log ---\n{}",
                        bridge.log_tail()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Polls the stream every `poll` until it holds `target` messages; fails after `timeout`
    /// or when the bridge exits.
    pub async fn wait_for_messages(
        &self,
        bridge: &mut Bridge,
        target: u64,
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<StreamProgress> {
        let deadline = Instant::now() + timeout;
        let mut stream: Option<async_nats::jetstream::stream::Stream> = None;
        let mut first_message = None;
        let mut baseline: Option<u64> = None;
        let mut next_report = Instant::now() + Duration::from_secs(10);
        loop {
            bridge.check_running()?;
            if stream.is_none() {
                stream = self.js.get_stream(STREAM).await.ok();
            }
            let mut state = None;
            if let Some(s) = stream.as_mut() {
                let info = s
                    .info()
                    .await
                    .with_context(|| format!("reading the state of stream {STREAM}"))?;
                state = Some((info.state.messages, info.state.bytes));
            }
            let now = Instant::now();
            let (messages, bytes) = state.unwrap_or((0, 0));
            let baseline = *baseline.get_or_insert(messages);
            if messages > baseline && first_message.is_none() {
                first_message = Some(now);
            }
            if messages >= target {
                return Ok(StreamProgress {
                    first_message,
                    done: now,
                    messages,
                    bytes,
                });
            }
            if now >= deadline {
                bail!(
                    "stream {STREAM} holds {messages} of {target} messages after {timeout:?}; giving up\n\
                     --- bridge log ---\n{}",
                    bridge.log_tail()
                );
            }
            if now >= next_report {
                eprintln!("  ... stream {STREAM}: {messages}/{target} messages");
                next_report = now + Duration::from_secs(10);
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// What [`BenchEnv::wait_for_messages`] saw.
#[derive(Debug, Clone, Copy)]
pub struct StreamProgress {
    /// The first poll that saw more messages than the first poll did.
    pub first_message: Option<Instant>,
    pub done: Instant,
    pub messages: u64,
    pub bytes: u64,
}

/// A nats-server's pid, found read-only in /proc by its config path (testkit keeps the
/// config next to the store directory); only used to sample its CPU time.
pub fn nats_server_pid(nats: &NatsServer) -> Option<u32> {
    let config = nats.store_dir().parent()?.join("nats-server.conf");

    let needle = config.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == needle.as_bytes()))
        })
}

/// A TOML basic string.
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The release `tributary` binary: `$TRIBUTARY_BIN`, `$CARGO_TARGET_DIR/release/tributary`,
/// next to this executable, or the workspace's `target/release/tributary`.
pub fn find_bridge_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TRIBUTARY_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("TRIBUTARY_BIN={} is not a file", path.display());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release").join("tributary"));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("tributary"));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("release")
            .join("tributary"),
    );
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot find the release `tributary` binary: build it with \
             `cargo build --release -p tributary` (same CARGO_TARGET_DIR) or set TRIBUTARY_BIN"
        )
    })
}

/// The bridge as a child process (`tributary run --config …`).
pub struct Bridge {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    started: Instant,
}

impl Bridge {
    pub fn spawn(binary: &Path, config: &Path, log: PathBuf) -> anyhow::Result<Bridge> {
        let age = std::fs::metadata(binary)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or_else(String::new, |d| {
                format!(", built {} min ago", d.as_secs() / 60)
            });
        eprintln!("bridge binary: {}{age}", binary.display());
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating the bridge log {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log handle")?;
        let started = Instant::now();
        let child = tokio::process::Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            // Plain log lines in the file (and in error messages quoting its tail).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the bridge exited at once"))?;
        Ok(Bridge {
            child,
            pid,
            log,
            started,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Errors (with the log's tail) if the bridge is no longer running.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("waiting for the bridge")? {
            None => Ok(()),
            Some(status) => bail!(
                "the bridge exited early ({status})\n--- bridge log ---\n{}",
                self.log_tail()
            ),
        }
    }

    /// The bridge's whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the bridge's log.
    pub fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            }
            Err(e) => format!("<cannot read {}: {e}>", self.log.display()),
        }
    }

    /// SIGTERM, then waits up to a minute for the drain (SIGKILL after that).
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        signal(self.pid, nix::sys::signal::Signal::SIGTERM)?;
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => status.context("waiting for the bridge to exit"),
            Err(_) => {
                self.child
                    .kill()
                    .await
                    .context("killing the bridge after a minute")?;
                bail!("the bridge did not stop within 60 s of SIGTERM and was killed")
            }
        }
    }
}

/// Sends `sig` to a process this benchmark started.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).with_context(|| format!("pid {pid} out of range"))?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => bail!("sending {sig} to pid {pid}: {e}"),
    }
}

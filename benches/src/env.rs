//! The benchmark environment: throwaway servers (through tributary-testkit), the ERP-like
//! schema, slots, the bridge's configuration, the bridge process and stream polling.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tributary_testkit::{NatsOptions, NatsServer, PgCluster, PgOptions};

use crate::bridge::{find_bridge_binary, Bridge};

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
    NatsServer::start_with(nats_options(durability)).await
}

/// The nats-server options (standalone or per cluster node) of `durability`.
pub fn nats_options(durability: Durability) -> NatsOptions {
    NatsOptions {
        sync_always: durability == Durability::Always,
        sync_interval: (durability == Durability::Interval).then(|| "1s".to_owned()),
        ..NatsOptions::default()
    }
}

/// The NATS side of a bridge configuration: which servers, how many stream replicas, and how
/// long the slot's confirmation is held back.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    pub servers: Vec<String>,
    /// `[nats.stream] replicas`.
    pub stream_replicas: usize,
    /// `[durability] confirm_delay_ms`.
    pub confirm_delay_ms: u64,
    /// An `[ha]` block (one replica holding the source's lease, library defaults otherwise).
    pub ha: bool,
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
        self.write_config_for(slot, source_keys, &self.single_node())
    }

    /// This environment's nats-server with R1 streams and the confirmation delay that
    /// `--durability` asks for (1500 ms with `interval`, else 0).
    pub fn single_node(&self) -> NatsTarget {
        NatsTarget {
            servers: vec![self.nats.url()],
            stream_replicas: 1,
            confirm_delay_ms: if self.settings.durability == Durability::Interval {
                1500
            } else {
                0
            },
            ha: false,
        }
    }

    /// A bridge configuration for `slot` publishing to `nats`.
    pub fn write_config_for(
        &self,
        slot: &str,
        source_keys: &str,
        nats: &NatsTarget,
    ) -> anyhow::Result<PathBuf> {
        let ack_window = self
            .settings
            .ack_window
            .map(|w| format!("ack_window = {w}\n"))
            .unwrap_or_default();
        let servers: Vec<String> = nats.servers.iter().map(|u| toml_string(u)).collect();
        let ha = if nats.ha {
            "\n[ha]\ninstance_id = \"bench\"\n"
        } else {
            ""
        };
        let text = format!(
            r#"# Written by tributary-bench.
http_listen = "127.0.0.1:{http}"

[log]
level = "info"

[durability]
confirm_delay_ms = {confirm_delay}

[nats]
servers = [{servers}]
{ack_window}
[nats.stream]
replicas = {replicas}
{ha}
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
            confirm_delay = nats.confirm_delay_ms,
            servers = servers.join(", "),
            replicas = nats.stream_replicas,
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
        // One log per configuration: a run with several bridges keeps each one's log.
        Bridge::spawn(&binary, config, config.with_extension("log"))
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
        wait_for_messages_on(&self.js, bridge, target, timeout, poll).await
    }
}

/// [`BenchEnv::wait_for_messages`] on the stream of any JetStream (e.g. a cluster's).
pub async fn wait_for_messages_on(
    js: &async_nats::jetstream::Context,
    bridge: &mut Bridge,
    target: u64,
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<StreamProgress> {
    {
        let deadline = Instant::now() + timeout;
        let mut stream: Option<async_nats::jetstream::stream::Stream> = None;
        let mut first_message = None;
        let mut baseline: Option<u64> = None;
        let mut next_report = Instant::now() + Duration::from_secs(10);
        loop {
            bridge.check_running()?;
            if stream.is_none() {
                stream = js.get_stream(STREAM).await.ok();
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

/// Waits until the stream's last message holds `needle` (the text of a change known to be the
/// last one written): with batches the stream holds fewer messages than changes, and a batch
/// is stored whole, so the last change stored means every change is.
pub async fn wait_for_last_event(
    js: &async_nats::jetstream::Context,
    bridge: &mut Bridge,
    needle: &str,
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<StreamProgress> {
    let mut checked = 0;
    let what = format!("the last change in stream {STREAM}");
    wait_for_stream(js, bridge, &what, timeout, poll, async |last: u64| {
        if last <= checked {
            return Ok(false);
        }
        checked = last;
        let msg = js
            .get_stream(STREAM)
            .await?
            .get_raw_message(last)
            .await
            .with_context(|| format!("reading message {last} of {STREAM}"))?;
        Ok(msg
            .payload
            .windows(needle.len())
            .any(|w| w == needle.as_bytes()))
    })
    .await
}

/// Polls the stream's state until `done(last sequence)` says so; the progress at that moment
/// (first message: the first poll that saw one). For runs where the message count cannot say
/// when the bridge is done (batches).
pub async fn wait_for_stream(
    js: &async_nats::jetstream::Context,
    bridge: &mut Bridge,
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut done: impl AsyncFnMut(u64) -> anyhow::Result<bool>,
) -> anyhow::Result<StreamProgress> {
    let deadline = Instant::now() + timeout;
    let mut first_message = None;
    loop {
        bridge.check_running()?;
        let now = Instant::now();
        let (last, messages, bytes) = match js.get_stream(STREAM).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .with_context(|| format!("reading the state of stream {STREAM}"))?;
                (
                    info.state.last_sequence,
                    info.state.messages,
                    info.state.bytes,
                )
            }
            Err(_) => (0, 0, 0),
        };
        if messages > 0 && first_message.is_none() {
            first_message = Some(now);
        }
        if done(last).await? {
            return Ok(StreamProgress {
                first_message,
                done: now,
                messages,
                bytes,
            });
        }
        if now >= deadline {
            bail!(
                "no {what} after {timeout:?} ({messages} messages stored)\n--- bridge log ---\n{}",
                bridge.log_tail()
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// The events in the stream, read back: a batch counts its events, any other message one.
pub async fn count_events(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    use futures::StreamExt as _;
    use tributary_proto::batch::{is_batch_subject, split_batch};
    let mut stream = js.get_stream(STREAM).await.context("the bench stream")?;
    let total = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .context("reading the stream back")?;
    let mut messages = consumer
        .messages()
        .await
        .context("reading the stream back")?;
    let (mut read, mut events) = (0u64, 0u64);
    while read < total {
        let msg = messages
            .next()
            .await
            .context("the stream read ended")?
            .map_err(|e| anyhow::anyhow!("reading the stream back: {e}"))?;
        read += 1;
        events += if is_batch_subject(msg.subject.as_str()) {
            split_batch(&msg.payload)?.len() as u64
        } else {
            1
        };
    }
    Ok(events)
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

//! Shared helpers for the end-to-end scenarios: servers, the bridge process, and a
//! subscriber's view of the stream (read, check order and uniqueness, replay into state).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use futures::StreamExt;
use tokio::process::{Child, Command};
use tributary_proto::cdc::v1::{value::Kind, ChangeEvent, Operation, Value};
use tributary_proto::Message as _;
use tributary_testkit::{NatsServer, PgCluster};

pub type Result<T> = anyhow::Result<T>;

/// One `[[sources]]` block.
pub struct SourceSpec {
    /// Extra lines for the `[[sources]]` block, e.g. `snapshot = "never"`.
    pub extra: String,
    pub name: String,
    pub dbname: String,
    pub publication: String,
    pub slot: String,
    pub heartbeat_secs: u64,
}

impl SourceSpec {
    pub fn new(name: &str, dbname: &str) -> Self {
        SourceSpec {
            extra: String::new(),
            name: name.into(),
            dbname: dbname.into(),
            publication: format!("pub_{name}"),
            slot: format!("slot_{name}"),
            heartbeat_secs: 2,
        }
    }
}

pub fn config_text(pg: &PgCluster, nats_url: &str, sources: &[SourceSpec]) -> String {
    let mut text = format!(
        "http_listen = \"127.0.0.1:{}\"\n[log]\nlevel = \"info\"\n[nats]\nservers = [\"{nats_url}\"]\nack_window = 2048\n",
        tributary_testkit::free_port()
    );
    for s in sources {
        text.push_str(&format!(
            "\n[[sources]]\nname = \"{}\"\npublication = \"{}\"\nslot = \"{}\"\nheartbeat_interval_secs = {}\nstatus_interval_ms = 200\n{}\
             [sources.connection]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"postgres\"\npassword = \"{}\"\ndbname = \"{}\"\nconnect_timeout_ms = 3000\n",
            s.name, s.publication, s.slot, s.heartbeat_secs, s.extra, pg.port(), pg.password(), s.dbname
        ));
    }
    text
}

pub fn write_config(dir: &Path, text: &str) -> Result<PathBuf> {
    let path = dir.join("tributary.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The config file of the usual single source `erp` on database `erp`, in `dir`.
pub fn erp_config(dir: &Path, pg: &PgCluster, nats: &NatsServer) -> Result<PathBuf> {
    write_config(
        dir,
        &config_text(pg, &nats.url(), &[SourceSpec::new("erp", "erp")]),
    )
}

/// The bridge as a child process, killed on drop.
pub struct Bridge {
    pub child: Child,
    log: PathBuf,
}

impl Bridge {
    pub fn spawn(config: &Path) -> Result<Bridge> {
        let log = config.with_extension(format!("log.{}", rand::random::<u32>()));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,tributary_pipeline=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .context("spawning tributary")?;
        Ok(Bridge { child, log })
    }

    pub fn pid(&self) -> i32 {
        self.child.id().map(|p| p as i32).unwrap_or(0)
    }

    pub async fn kill9(mut self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM and wait; returns the exit code.
    pub async fn stop(mut self) -> Result<i32> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("bridge did not stop within 60 s of SIGTERM")??;
        Ok(status.code().unwrap_or(-1))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs the binary to completion (for start-up failures) and returns (exit code, stderr).
pub async fn run_to_exit(config: &Path, within: Duration) -> Result<(i32, String)> {
    let out = tokio::time::timeout(
        within,
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("tributary did not exit")??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `tributary <args…>` to completion: (exit code, stdout, stderr).
pub async fn tributary(args: &[&str]) -> Result<(i32, String, String)> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(args)
            .env_remove("TRIBUTARY_CONFIG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("tributary {args:?} did not exit"))??;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    println!("$ tributary {}\n{stdout}{stderr}", args.join(" "));
    Ok((out.status.code().unwrap_or(-1), stdout, stderr))
}

pub fn stream_name(source: &str) -> String {
    format!("CDC_{}", source.to_uppercase())
}

/// What one look at a condition found: done (with what it yields) or not yet (and why, for
/// the failure message should the deadline pass).
pub enum Check<T> {
    Done(T),
    Pending(String),
}

/// The one polling loop of the tests: looks every 100 ms until `check` is done, and fails
/// with the last `Pending` description once `within` has passed. An error of `check` ends
/// the wait at once.
pub async fn wait_until<T>(
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<Check<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        match check().await? {
            Check::Done(value) => return Ok(value),
            Check::Pending(why) if Instant::now() > deadline => {
                bail!("not done after {within:?}: {why}")
            }
            Check::Pending(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A sink's events not yet acknowledged, over all its consumers (each priority class and
/// partition: `tributary-sink-<sink>`, `…-low`, `…-p07`); None before any of them exists.
pub async fn sink_unacked(js: &jetstream::Context, sink: &str) -> Result<Option<u64>> {
    use futures::TryStreamExt as _;
    let stream = js.get_stream("RETAIL").await?;
    let name = tributary_sinks::consumer_name(sink);
    let all: Vec<jetstream::consumer::Info> = stream.consumers().try_collect().await?;
    let mine: Vec<&jetstream::consumer::Info> = all
        .iter()
        .filter(|c| c.name == name || c.name.starts_with(&format!("{name}-")))
        .collect();
    Ok((!mine.is_empty()).then(|| {
        mine.iter()
            .map(|c| c.num_pending + c.num_ack_pending as u64)
            .sum()
    }))
}

/// Waits until every durable consumer of every stream has nothing pending and nothing
/// unacknowledged, twice in a row: no redelivery can come any more (an acked message is never
/// delivered again), so whatever is counted afterwards is final. The sentinel that replaces
/// "sleep and hope nothing more arrives".
pub async fn wait_quiescent(nats: &async_nats::Client, within: Duration) -> Result<()> {
    use futures::TryStreamExt as _;
    let js = jetstream::new(nats.clone());
    let mut quiet_before = false;
    wait_until(within, async || {
        let names: Vec<String> = js.stream_names().try_collect().await?;
        let mut busy = Vec::new();
        for name in names {
            let stream = js.get_stream(&name).await?;
            let consumers: Vec<jetstream::consumer::Info> =
                stream.consumers().try_collect().await?;
            for c in consumers.iter().filter(|c| c.config.durable_name.is_some()) {
                if c.num_pending > 0 || c.num_ack_pending > 0 {
                    busy.push(format!(
                        "{name}/{}: {} pending, {} unacked",
                        c.name, c.num_pending, c.num_ack_pending
                    ));
                }
            }
        }
        let quiet = busy.is_empty();
        let done = quiet && quiet_before;
        quiet_before = quiet;
        Ok(if done {
            Check::Done(())
        } else {
            Check::Pending(format!("consumers still busy: {busy:?}"))
        })
    })
    .await
}

/// Waits until the stream holds `n` messages; fails past the deadline with what it saw.
pub async fn wait_for_messages(
    nats: &async_nats::Client,
    stream: &str,
    n: u64,
    within: Duration,
) -> Result<()> {
    let js = jetstream::new(nats.clone());
    wait_until(within, async || {
        let mut last = 0;
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                last = info.state.messages;
            }
        }
        Ok(if last >= n {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "stream {stream} holds {last} messages, expected {n}"
            ))
        })
    })
    .await
}

pub struct Received {
    pub sequence: u64,
    pub subject: String,
    /// `Nats-Msg-Id`, empty when the message has none.
    pub msg_id: String,
    pub event: ChangeEvent,
}

/// Reads the whole stream in order, as a subscriber does.
pub async fn read_stream(nats: &async_nats::Client, stream: &str) -> Result<Vec<Received>> {
    let js = jetstream::new(nats.clone());
    let mut s = js.get_stream(stream).await?;
    let last = s.info().await?.state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return Ok(out);
    }
    let consumer = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .context("reading the stream timed out")?
    {
        let msg = msg?;
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let sequence = info.stream_sequence;
        let msg_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        // A batch (`snapshot_rows_per_message`, `changes_per_message`): one entry per event,
        // the message's Nats-Msg-Id (its last event's id) on the last.
        let payloads = if tributary_proto::batch::is_batch_subject(&msg.subject) {
            tributary_proto::batch::split_batch(&msg.payload)?
        } else {
            vec![msg.payload.clone()]
        };
        let final_index = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.into_iter().enumerate() {
            out.push(Received {
                sequence,
                subject: msg.subject.to_string(),
                msg_id: if i == final_index {
                    msg_id.clone()
                } else {
                    String::new()
                },
                event: ChangeEvent::decode(payload)?,
            });
        }
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

/// Checks what a subscriber relies on: ids unique (and equal to Nats-Msg-Id when the bridge
/// sends it, `nats.msg_id_header`), commit order,
/// ordinals 1..n within each transaction with the count on the last change.
pub fn check_stream_invariants(received: &[Received]) -> Result<()> {
    let mut ids = HashSet::new();
    let mut prev_commit = 0u64;
    let mut expected_ordinal = 1u32;
    let mut current_tx = None;
    for r in received {
        let e = &r.event;
        if !r.msg_id.is_empty() && e.event_id != r.msg_id {
            bail!(
                "seq {}: event id {} differs from Nats-Msg-Id {}",
                r.sequence,
                e.event_id,
                r.msg_id
            );
        }
        if !ids.insert(e.event_id.clone()) {
            bail!("seq {}: duplicate event {}", r.sequence, e.event_id);
        }
        if e.op == Operation::Message as i32 && !e.message.as_ref().is_some_and(|m| m.transactional)
        {
            continue;
        }
        // Snapshot reads are not part of a transaction; they precede the changes after them.
        if e.op == Operation::Read as i32 {
            prev_commit = prev_commit.max(e.commit_lsn);
            continue;
        }
        if e.commit_lsn < prev_commit {
            bail!(
                "seq {}: commit LSN {:X} after {:X}: out of commit order",
                r.sequence,
                e.commit_lsn,
                prev_commit
            );
        }
        if current_tx != Some(e.commit_lsn) {
            if expected_ordinal != 1 {
                bail!(
                    "seq {}: transaction {:X} ended without its last change",
                    r.sequence,
                    prev_commit
                );
            }
            current_tx = Some(e.commit_lsn);
        }
        prev_commit = e.commit_lsn;
        if e.ordinal != expected_ordinal {
            bail!(
                "seq {}: ordinal {} where {} was expected (event {})",
                r.sequence,
                e.ordinal,
                expected_ordinal,
                e.event_id
            );
        }
        if e.last_in_transaction {
            if e.transaction_changes != e.ordinal {
                bail!(
                    "seq {}: last change says {} changes at ordinal {}",
                    r.sequence,
                    e.transaction_changes,
                    e.ordinal
                );
            }
            expected_ordinal = 1;
        } else {
            expected_ordinal += 1;
        }
    }
    if expected_ordinal != 1 {
        bail!("the stream ends inside a transaction");
    }
    Ok(())
}

/// A value in a canonical text form, comparable with `column::text` from SQL
/// (timestamptz as epoch microseconds).
pub fn value_text(v: &Value) -> String {
    match &v.kind {
        None | Some(Kind::Null(_)) => "NULL".into(),
        Some(Kind::Unchanged(_)) => "UNCHANGED".into(),
        Some(Kind::Bool(b)) => if *b { "t" } else { "f" }.into(),
        Some(Kind::Int(i)) => i.to_string(),
        Some(Kind::Decimal(d)) => d.clone(),
        Some(Kind::Float(f)) => f.to_string(),
        Some(Kind::Text(t)) => t.clone(),
        Some(Kind::Timestamptz(t)) => t.to_string(),
        Some(Kind::Json(j)) => j.clone(),
        Some(other) => format!("{other:?}"),
    }
}

/// Replays the changes of one table into rows keyed by the first column, as a consumer
/// applying the stream would. Unchanged TOAST values keep the previous value.
pub fn replay(received: &[Received], table: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let mut state: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in received.iter().filter(|r| r.event.table == table) {
        let e = &r.event;
        let op = Operation::try_from(e.op).unwrap_or(Operation::Unspecified);
        match op {
            Operation::Insert | Operation::Update | Operation::Read => {
                let after = e.after.as_ref().context("insert/update without after")?;
                let mut row: Vec<String> = after.values.iter().map(value_text).collect();
                if let Some(b) = &e.before {
                    let old_key = value_text(&b.values[0]);
                    if old_key != row[0] {
                        state.remove(&old_key);
                    }
                }
                if let Some(prev) = state.get(&row[0]) {
                    for (i, v) in row.iter_mut().enumerate() {
                        if v == "UNCHANGED" {
                            *v = prev.get(i).cloned().unwrap_or_default();
                        }
                    }
                }
                state.insert(row[0].clone(), row);
            }
            Operation::Delete => {
                let before = e.before.as_ref().context("delete without before")?;
                state.remove(&value_text(&before.values[0]));
            }
            Operation::Truncate => state.clear(),
            _ => {}
        }
    }
    Ok(state)
}

/// Rows of a query whose columns are all text, keyed by the first column.
pub async fn table_state(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<BTreeMap<String, Vec<String>>> {
    let rows = client.query(sql, &[]).await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let values: Vec<String> = (0..row.len())
            .map(|i| {
                row.get::<_, Option<String>>(i)
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect();
        out.insert(values[0].clone(), values);
    }
    Ok(out)
}

pub async fn start_servers() -> Result<(PgCluster, NatsServer)> {
    let pg = PgCluster::start().await?;
    let nats = NatsServer::start().await?;
    Ok((pg, nats))
}

/// The `orders` table of the workload scenarios, with its publication.
pub const ORDERS_DDL: &str = "CREATE TABLE orders (
    id bigint PRIMARY KEY,
    qty int NOT NULL,
    price numeric(14,4) NOT NULL,
    note text,
    updated_at timestamptz NOT NULL
);";

/// `orders` as text columns in the canonical form of [`value_text`].
pub const ORDERS_STATE_SQL: &str = "SELECT id::text, qty::text, price::text, note, \
    (extract(epoch from updated_at) * 1000000)::bigint::text FROM orders";

/// Writes `changes` inserts / updates / deletes to `orders` in transactions of 1–100
/// rows. Returns the number of row changes written (exactly `changes`).
pub async fn orders_workload(
    client: &tokio_postgres::Client,
    changes: usize,
    seed: u64,
    first_id: i64,
) -> Result<usize> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut live: Vec<i64> = Vec::new();
    let mut next_id = first_id;
    let mut written = 0;
    while written < changes {
        let size = rng.random_range(1..=100usize).min(changes - written);
        let mut sql = String::from("BEGIN;");
        for _ in 0..size {
            let roll = rng.random_range(0..10);
            if live.len() < 10 || roll < 5 {
                let id = next_id;
                next_id += 1;
                live.push(id);
                sql.push_str(&format!(
                    "INSERT INTO orders VALUES ({id}, {}, {}.{:04}, 'note {}', now() - interval '{} seconds');",
                    rng.random_range(1..1000),
                    rng.random_range(0..100000),
                    rng.random_range(0..10000),
                    rng.random::<u32>(),
                    rng.random_range(0..100000)
                ));
            } else if roll < 8 {
                let id = live[rng.random_range(0..live.len())];
                sql.push_str(&format!(
                    "UPDATE orders SET qty = qty + 1, price = price + 1.2345, note = {}, updated_at = clock_timestamp() WHERE id = {id};",
                    if rng.random_bool(0.1) { "NULL".to_string() } else { format!("'upd {}'", rng.random::<u16>()) }
                ));
            } else {
                let i = rng.random_range(0..live.len());
                let id = live.swap_remove(i);
                sql.push_str(&format!("DELETE FROM orders WHERE id = {id};"));
            }
        }
        sql.push_str("COMMIT;");
        client.batch_execute(&sql).await?;
        written += size;
    }
    Ok(written)
}

pub async fn slot_confirmed(client: &tokio_postgres::Client, slot: &str) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Compares two LSNs in text form.
pub fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap_or(("0", "0"));
    (u64::from_str_radix(hi, 16).unwrap_or(0) << 32) | u64::from_str_radix(lo, 16).unwrap_or(0)
}

/// Waits until each slot exists and a walsender streams from it, so that writes made
/// afterwards are captured (writes before a slot's creation are not part of its stream).
pub async fn wait_streaming(pg: &PgCluster, slots: &[&str], bridge: &Bridge) -> Result<()> {
    let client = pg.connect("postgres").await?;
    wait_until(Duration::from_secs(60), async || {
        let mut all = true;
        for slot in slots {
            let row = client
                .query_opt(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[slot],
                )
                .await?;
            all &= row.is_some_and(|r| r.get::<_, bool>(0));
        }
        Ok(if all {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "slots {slots:?} not streaming\nbridge log:\n{}",
                bridge.log()
            ))
        })
    })
    .await
}

/// A plain HTTP/1.0 GET (for /metrics, /healthz, /readyz): status and body.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sample retail schemas and mappings (config/retail).
pub fn retail_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/retail")
}

/// The sample retail databases `erp` and `pos` created and loaded from config/retail, one
/// source each on the publication their schema creates.
pub async fn retail_sources(pg: &PgCluster) -> Result<Vec<SourceSpec>> {
    let mut sources = Vec::new();
    for name in ["erp", "pos"] {
        pg.create_database(name).await?;
        let sql = std::fs::read_to_string(retail_dir().join(format!("{name}.sql")))?;
        pg.connect(name).await?.batch_execute(&sql).await?;
        let mut spec = SourceSpec::new(name, name);
        spec.publication = format!("tributary_{name}");
        sources.push(spec);
    }
    Ok(sources)
}

/// The bridge configuration for `sources` with the sample retail domain mappings; sinks
/// are appended by the caller.
pub fn retail_config(pg: &PgCluster, nats_url: &str, sources: &[SourceSpec]) -> Result<String> {
    let mut text = config_text(pg, nats_url, sources);
    text.push('\n');
    text.push_str(&std::fs::read_to_string(retail_dir().join("domain.toml"))?);
    Ok(text)
}

/// The bridge's `http_listen` address in a configuration text (for `/metrics`).
pub fn http_listen(config_text: &str) -> String {
    config_text
        .split("http_listen = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// One product per SKU in the shop, one variant each at `price`: SKU → inventory item gid.
pub fn shop_catalog(
    shop: &tributary_sandbox::shopify::Shopify,
    skus: impl IntoIterator<Item = String>,
    price: &str,
) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for (i, sku) in skus.into_iter().enumerate() {
        let p = shop.add_product(
            &format!("Item {}", i + 1),
            &[tributary_sandbox::shopify::VariantSeed {
                sku: sku.clone(),
                price: price.into(),
            }],
        );
        items.insert(sku, p.variants[0].1.clone());
    }
    items
}

/// Every message of a stream, in order (empty when the stream does not exist).
pub async fn read_all(nats: &async_nats::Client, stream: &str) -> Result<Vec<jetstream::Message>> {
    let js = jetstream::new(nats.clone());
    let Ok(mut s) = js.get_stream(stream).await else {
        return Ok(Vec::new());
    };
    let n = s.info().await?.state.messages;
    if n == 0 {
        return Ok(Vec::new());
    }
    let consumer = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .with_context(|| format!("reading {stream} timed out"))?
            .context("stream ended")??;
        out.push(msg);
    }
    Ok(out)
}

/// The sinks' parked events.
pub async fn dead_letters(nats: &async_nats::Client) -> Result<Vec<jetstream::Message>> {
    read_all(nats, "DLQ_SINKS").await
}

/// A header's value, empty when absent.
pub fn header(msg: &jetstream::Message, name: &str) -> String {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default()
}

/// Every stream on the server (KV buckets and object stores included) carries the bridge's
/// ownership mark and the component that created it; returns their names, sorted.
pub async fn marked_streams(nats: &async_nats::Client) -> Result<Vec<String>> {
    let js = jetstream::new(nats.clone());
    let mut names = js.stream_names();
    let mut out = Vec::new();
    while let Some(name) = names.next().await {
        let name = name?;
        let info = js.get_stream(&name).await?.info().await?.clone();
        let metadata = &info.config.metadata;
        if metadata.get("tributary.owner").map(String::as_str) != Some("tributary")
            || !metadata.contains_key("tributary.component")
        {
            bail!("stream {name} lacks the ownership mark: {metadata:?}");
        }
        out.push(name);
    }
    out.sort();
    Ok(out)
}

/// `tributary replay --sink <sink> --from-seq 1`, then waits until the sink's consumer on
/// `RETAIL` has delivered and acked every event of its filter again, and the streams are quiet.
pub async fn replay_sink_from_start(
    nats: &async_nats::Client,
    config: &Path,
    sink: &str,
    bridge: &Bridge,
) -> Result<()> {
    let (code, out, err) = tributary(&[
        "replay",
        "--sink",
        sink,
        "--from-seq",
        "1",
        "--config",
        &config.to_string_lossy(),
    ])
    .await?;
    anyhow::ensure!(code == 0, "replay failed: {out}{err}");
    let js = jetstream::new(nats.clone());
    let durable = format!("tributary-sink-{sink}");
    wait_until(Duration::from_secs(90), async || {
        let mut consumer: jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream(&durable, "RETAIL").await?;
        let info = consumer.info().await?;
        Ok(
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.consumer_sequence > 0
            {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "replay: {} pending, {} unacked, {} acked\nbridge log:\n{}",
                    info.num_pending,
                    info.num_ack_pending,
                    info.ack_floor.consumer_sequence,
                    bridge.log()
                ))
            },
        )
    })
    .await?;
    wait_quiescent(nats, Duration::from_secs(60)).await
}

//! `sinks`: events applied per second by each sink against its emulator (rate limits off),
//! over a backlog of domain events published to `RETAIL` before the bridge starts.
//!
//! ```text
//!  per sink, one after the other (each alone on the two cores):
//!    fresh nats-server ─► RETAIL ◄── bench publishes N DomainEvents (pipelined acks)
//!    emulator (in this process, limits off, request log off, Salesforce CDC log off) ◄── seeded
//!    tributary run (that sink only; an idle [[shopify]] webhook source, no PostgreSQL)
//!       timed from spawn until the sink's consumer has acked the stream's last sequence
//!    the emulator's final state is checked against the events (a bench that applies
//!    nothing fast is worthless)
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, stream};
use tributary_sandbox::salesforce::{self, SalesforceOptions};
use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed};
use tributary_sandbox::wms::{self, WmsOptions};

mod events;

use events::{
    publish, salesforce_events, shopify_events, stock_of, wms_events, LINES_PER_ORDER,
    ORDER_STATUSES, PREFIX,
};

use crate::bridge::Bridge;
use crate::env::{self, Durability, Settings};
use crate::procfs::{self, Sampler};

const STREAM: &str = "RETAIL";

pub struct Args {
    /// Events per sink.
    pub events: u64,
    /// Distinct entities (Shopify SKUs; Salesforce customers and as many orders).
    pub entities: u64,
    pub sinks: Vec<String>,
    /// `[sinks.<name>.delivery] lanes` (None: the bridge's default).
    pub lanes: Option<usize>,
    /// Salesforce and Shopify `batch_size` (None: the defaults, 200 and 50).
    pub batch_size: Option<usize>,
    /// Salesforce and Shopify `batch_linger_ms` (None: the defaults, 20 and 2).
    pub batch_linger_ms: Option<u64>,
    pub timeout: Duration,
    pub perf_record: Option<PathBuf>,
}

/// What one sink's phase measured.
struct Phase {
    sink: String,
    events: u64,
    seconds: f64,
    from_first_ack: f64,
    bridge_cpu: f64,
    nats_cpu: f64,
    bench_cpu: f64,
    peak_rss_mb: f64,
    target_writes: String,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.events == 0 || args.entities == 0 {
        bail!("--events and --entities must be at least 1");
    }
    println!("load average before: {}", procfs::load_average());
    println!(
        "setup: one phase per sink, each with a fresh nats-server (JetStream file store, {}), \
         the emulator in this process with rate limits off and its request log off (Salesforce: \
         no CDC events for REST writes), the bridge \
         running only that sink (lanes={}, salesforce/shopify batch_size={} batch_linger_ms={}); no PostgreSQL",
        match settings.durability {
            Durability::Always => "sync_interval=always",
            Durability::Interval => "sync_interval=1s",
            Durability::None => "default sync_interval",
        },
        args.lanes
            .map_or_else(|| "default".to_owned(), |l| l.to_string()),
        args.batch_size
            .map_or_else(|| "default".to_owned(), |b| b.to_string()),
        args.batch_linger_ms
            .map_or_else(|| "default".to_owned(), |b| b.to_string()),
    );
    let mut phases = Vec::new();
    for sink in &args.sinks {
        let phase = match sink.as_str() {
            "wms" | "shopify" | "salesforce" => run_phase(sink, &args, &settings).await?,
            other => bail!("unknown sink {other:?} (wms, shopify, salesforce)"),
        };
        phases.push(phase);
    }
    println!("load average after: {}", procfs::load_average());
    let mut last = String::new();
    for p in &phases {
        let _ = write!(
            last,
            "{}sinks_{}_events_per_sec={:.0}",
            if last.is_empty() { "" } else { " " },
            p.sink,
            p.events as f64 / p.seconds
        );
    }
    for p in &phases {
        println!(
            "sink={} events={} seconds={:.3} events_per_sec={:.0} (from the first ack: {:.0}) \
             bridge_cpu_s={:.2} nats_server_cpu_s={:.2} bench_and_emulator_cpu_s={:.2} \
             bridge_peak_rss_mb={:.1} target: {}",
            p.sink,
            p.events,
            p.seconds,
            p.events as f64 / p.seconds,
            p.events as f64 / p.from_first_ack,
            p.bridge_cpu,
            p.nats_cpu,
            p.bench_cpu,
            p.peak_rss_mb,
            p.target_writes,
        );
    }
    println!("{last}");
    Ok(())
}

/// The emulator of one phase, kept alive until the phase's end.
enum Emulator {
    Wms(tributary_sandbox::RunningEmulator<wms::Wms>),
    Shopify(
        tributary_sandbox::RunningEmulator<shopify::Shopify>,
        /// (location GID, SKU → inventory item GID)
        String,
        Vec<String>,
    ),
    Salesforce(tributary_sandbox::RunningEmulator<salesforce::Salesforce>),
}

async fn run_phase(sink: &str, args: &Args, settings: &Settings) -> anyhow::Result<Phase> {
    let nats = env::start_nats(settings.durability)
        .await
        .context("starting nats-server (tributary-testkit)")?;
    let client = nats.connect().await.context("connecting to nats-server")?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![format!("{PREFIX}.>")],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .context("creating the RETAIL stream")?;

    let keep = std::env::var("TRIBUTARY_KEEP_TEST_DIRS").is_ok_and(|v| !v.is_empty() && v != "0");
    let dir = tempfile::Builder::new()
        .prefix("tributary-bench-sinks-")
        .disable_cleanup(keep)
        .tempdir()
        .context("creating the scratch directory")?;
    if keep {
        eprintln!("keeping {} (bridge config and log)", dir.path().display());
    }

    // The emulator and the events.
    let (emulator, events) = match sink {
        "wms" => {
            let w = wms::start(WmsOptions {
                rate_limits: false,
                requests_per_second: None,
                ..WmsOptions::default()
            })
            .await?;
            w.requests().set_enabled(false);
            (Emulator::Wms(w), wms_events(args.events))
        }
        "shopify" => {
            // The sink paces itself by the throttleStatus every answer reports (claims
            // against the bucket's maximum and restore rate), so "limits off" needs a bucket
            // that never runs dry as well as the emulator not refusing: with the default
            // 1,000 points refilled at 50/s the sink would hold itself to 5 mutations/s.
            let s = shopify::start(ShopifyOptions {
                throttling: false,
                bucket_size: 1e9,
                restore_rate: 1e9,
                ..ShopifyOptions::default()
            })
            .await?;
            s.requests().set_enabled(false);
            let location = s.add_location("DC1");
            let mut items = Vec::new();
            let skus: Vec<String> = (0..args.entities).map(|i| format!("SKU-{i:06}")).collect();
            for chunk in skus.chunks(50) {
                let seeds: Vec<VariantSeed> = chunk
                    .iter()
                    .map(|sku| VariantSeed {
                        sku: sku.clone(),
                        price: "9.50".into(),
                    })
                    .collect();
                let p = s.add_product(&format!("Product {}", chunk[0]), &seeds);
                items.extend(p.variants.into_iter().map(|(_, item, _)| item));
            }
            let events = shopify_events(args.events, args.entities);
            (Emulator::Shopify(s, location, items), events)
        }
        _ => {
            let sf = salesforce::start(SalesforceOptions {
                enforce_limits: false,
                ..SalesforceOptions::default()
            })
            .await?;
            sf.requests().set_enabled(false);
            // Nothing subscribes to the emulator's CDC log here; a real org encodes its
            // change events on its own machines, not on the bridge's cores.
            sf.set_rest_change_events(false);
            (
                Emulator::Salesforce(sf),
                salesforce_events(args.events, args.entities),
            )
        }
    };
    let events_len = events.len() as u64;
    let published = Instant::now();
    let last_sequence = publish(&js, &events).await?;
    println!(
        "{sink}: published events={events_len} to {STREAM} in {:.2} s (last sequence {last_sequence})",
        published.elapsed().as_secs_f64()
    );
    drop(events);

    // The bridge: this sink only.
    let (config, http_port) = write_config(dir.path(), &nats.url(), sink, &emulator, args)?;
    let binary = match &settings.bridge_binary {
        Some(p) => p.clone(),
        None => crate::bridge::find_bridge_binary()?,
    };
    let nats_pid = env::nats_server_pid(&nats);
    let nats_cpu_before = nats_pid.and_then(procfs::cpu_secs);
    let bench_cpu_before = procfs::cpu_secs(std::process::id()).unwrap_or(0.0);
    let mut bridge = Bridge::spawn(&binary, &config, dir.path().join("tributary.log"))?;
    let started = bridge.started();
    let sampler = Sampler::spawn(bridge.pid(), Duration::from_millis(100));
    let perf = match &args.perf_record {
        Some(path) => {
            let path = path.with_extension(format!("{sink}.data"));
            Some((crate::e2e::start_perf(bridge.pid(), &path)?, path))
        }
        None => None,
    };
    let drained = wait_drained(&js, &mut bridge, sink, last_sequence, args.timeout).await;
    if let Some((perf, path)) = perf {
        crate::e2e::stop_perf(perf).await;
        println!(
            "{sink}: perf profile {} (perf report -i {} --no-children)",
            path.display(),
            path.display()
        );
    }
    let nats_cpu = nats_pid
        .and_then(procfs::cpu_secs)
        .zip(nats_cpu_before)
        .map_or(f64::NAN, |(a, b)| a - b);
    let bench_cpu = procfs::cpu_secs(std::process::id()).unwrap_or(0.0) - bench_cpu_before;
    let stats = sampler.finish().await;
    for line in sink_metrics(http_port, sink).await {
        println!("{sink}: bridge metric {line}");
    }
    let log_errors = bridge
        .log_text()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(5)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let stopped = bridge.stop().await;
    let drained = drained?;
    stopped?;
    for l in &log_errors {
        println!("{sink}: bridge log: {l}");
    }
    let dead_letters = match js.get_stream("DLQ_SINKS").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    };
    if dead_letters > 0 {
        bail!("{sink}: {dead_letters} events were dead-lettered; the run does not count");
    }
    let target_writes = verify(&emulator, args)
        .with_context(|| format!("{sink}: the emulator's final state does not match the events"))?;
    let seconds = drained.done.duration_since(started).as_secs_f64();
    let from_first_ack = drained
        .done
        .duration_since(drained.first_ack.unwrap_or(started))
        .as_secs_f64();
    println!(
        "{sink}: applied events={events_len} seconds={seconds:.3} events_per_sec={:.0} verified: {target_writes}",
        events_len as f64 / seconds
    );
    Ok(Phase {
        sink: sink.to_owned(),
        events: events_len,
        seconds,
        from_first_ack,
        bridge_cpu: stats.cpu_secs,
        nats_cpu,
        bench_cpu,
        peak_rss_mb: stats.peak_rss_mb(),
        target_writes,
    })
}

fn write_config(
    dir: &std::path::Path,
    nats_url: &str,
    sink: &str,
    emulator: &Emulator,
    args: &Args,
) -> anyhow::Result<(PathBuf, u16)> {
    let q = env::toml_string;
    let http = tributary_testkit::try_free_port()?;
    let mut delivery = String::from("request_timeout_ms = 10000\n");
    if let Some(lanes) = args.lanes {
        let _ = writeln!(delivery, "lanes = {lanes}");
    }
    let mut batch = args
        .batch_size
        .map(|b| format!("batch_size = {b}\n"))
        .unwrap_or_default();
    if let Some(ms) = args.batch_linger_ms {
        let _ = writeln!(batch, "batch_linger_ms = {ms}");
    }
    let section = match emulator {
        Emulator::Wms(w) => format!(
            "[sinks.wms]\nbase_url = {}\napi_key = \"wms_sandbox\"\n[sinks.wms.delivery]\n{delivery}",
            q(w.base_url())
        ),
        Emulator::Shopify(s, location, _) => format!(
            "[sinks.shopify]\nbase_url = {}\naccess_token = \"shpat_sandbox\"\napply = [\"inventory\"]\n\
             locations = {{ DC1 = {} }}\n{batch}[sinks.shopify.delivery]\n{delivery}",
            q(s.base_url()),
            q(location)
        ),
        Emulator::Salesforce(sf) => {
            let (id, secret) = SalesforceOptions::default().clients[0].clone();
            format!(
                "[sinks.salesforce]\nbase_url = {}\nclient_id = {}\nclient_secret = {}\n{batch}\
                 [sinks.salesforce.delivery]\n{delivery}",
                q(sf.base_url()),
                q(&id),
                q(&secret)
            )
        }
    };
    let text = format!(
        r#"# Written by tributary-bench sinks ({sink}).
http_listen = "127.0.0.1:{http}"

[log]
level = "info"

[nats]
servers = [{nats}]

# No PostgreSQL: an idle webhook source satisfies "at least one source".
[[shopify]]
name = "benchidle"
listen = "127.0.0.1:{webhook}"
webhook_secret = "3f9c2a7e41b8d605c1e7a9f24b6d8e03"
domain_events = false

[sinks]
{section}"#,
        webhook = tributary_testkit::try_free_port()?,
        nats = q(nats_url),
    );
    tributary_config::parse(&text).context("the generated bridge configuration is invalid")?;
    let path = dir.join(format!("tributary-sinks-{sink}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok((path, http))
}

/// The bridge's `/metrics` text (HTTP/1.0 GET); empty when it cannot be read.
pub(crate) async fn metrics_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fetch = async {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut text = String::new();
        conn.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// The bridge's `tributary_sink_<sink>_…` metric lines, to show how the sink sent its
/// requests; empty when they cannot be read.
async fn sink_metrics(port: u16, sink: &str) -> Vec<String> {
    let text = metrics_text(port).await;
    let prefix = format!("tributary_sink_{sink}_");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && !l.contains("_bucket{"))
        .map(str::to_owned)
        .collect()
}

struct Drained {
    first_ack: Option<Instant>,
    done: Instant,
}

/// Polls the sink's consumer every 20 ms until its ack floor reaches `last_sequence` (every
/// event acked: applied, stored and confirmed).
async fn wait_drained(
    js: &jetstream::Context,
    bridge: &mut Bridge,
    sink: &str,
    last_sequence: u64,
    timeout: Duration,
) -> anyhow::Result<Drained> {
    let name = format!("tributary-sink-{sink}");
    let stream = js.get_stream(STREAM).await?;
    let deadline = Instant::now() + timeout;
    let mut first_ack = None;
    let mut next_report = Instant::now() + Duration::from_secs(10);
    loop {
        bridge.check_running()?;
        if let Ok(info) = stream.consumer_info(&name).await {
            let now = Instant::now();
            let floor = info.ack_floor.stream_sequence;
            if floor > 0 && first_ack.is_none() {
                first_ack = Some(now);
            }
            if floor >= last_sequence && info.num_ack_pending == 0 {
                return Ok(Drained {
                    first_ack,
                    done: now,
                });
            }
            if now >= next_report {
                eprintln!(
                    "  ... {sink}: ack floor {floor}/{last_sequence}, ack pending {}, pending {}",
                    info.num_ack_pending, info.num_pending
                );
                next_report = now + Duration::from_secs(10);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{sink}: not drained within {timeout:?}\n--- bridge log ---\n{}",
                bridge.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks the emulator's final state against the events; returns a summary of it.
fn verify(emulator: &Emulator, args: &Args) -> anyhow::Result<String> {
    match emulator {
        Emulator::Wms(w) => {
            let per_order = LINES_PER_ORDER as u64 + 2;
            let expected = (args.events / per_order).max(1);
            let orders = w.orders();
            if orders.len() as u64 != expected {
                bail!("{} WMS orders, expected {expected}", orders.len());
            }
            if let Some(o) = orders.iter().find(|o| o.products.len() != LINES_PER_ORDER) {
                bail!(
                    "WMS order {} has {} lines, expected {LINES_PER_ORDER}",
                    o.reference_id,
                    o.products.len()
                );
            }
            Ok(format!(
                "wms_orders={} (one POST /orders per {per_order} events), each with {LINES_PER_ORDER} lines",
                orders.len()
            ))
        }
        Emulator::Shopify(s, location, items) => {
            let n = args.events;
            let mut checked = 0;
            for (sku, item) in items.iter().enumerate() {
                let sku = sku as u64;
                if sku >= n {
                    break;
                }
                // The last version of this SKU: the number of rounds that reached it.
                let version = (n - 1 - sku) / args.entities + 1;
                let want = stock_of(sku, version);
                let got = s.inventory(item, location).map(|l| l.available);
                if got != Some(want) {
                    bail!("SKU-{sku:06}: available {got:?}, expected {want} (version {version})");
                }
                checked += 1;
            }
            // Every event's own idempotency key applied once: no duplicate side effect, and
            // no event answered under another event's key.
            let (keys, repeated) = s.with_state(|st| {
                (
                    st.idempotent_applies.len(),
                    st.idempotent_applies.values().filter(|n| **n > 1).count(),
                )
            });
            if repeated > 0 {
                bail!("{repeated} Shopify idempotency keys were applied more than once");
            }
            Ok(format!(
                "shopify_levels={checked} at their last version, idempotency_keys_applied={keys} \
                 (one per event, each once; one inventorySetQuantities field per event)"
            ))
        }
        Emulator::Salesforce(sf) => {
            let n = args.events;
            let mut expected: HashMap<String, String> = HashMap::new();
            let mut orders: HashMap<String, String> = HashMap::new();
            for i in 0..n {
                let j = i / 2;
                let (e, version) = (j % args.entities, j / args.entities + 1);
                if i % 2 == 0 {
                    expected.insert(format!("C-{e}"), format!("Last{e}-v{version}"));
                } else {
                    orders.insert(
                        format!("SO-{e}"),
                        ORDER_STATUSES[(version as usize - 1) % ORDER_STATUSES.len()].into(),
                    );
                }
            }
            let field = |r: &salesforce::Record, f: &str| {
                r.fields
                    .get(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let contacts = sf.records("Contact");
            if contacts.len() != expected.len() {
                bail!("{} Contacts, expected {}", contacts.len(), expected.len());
            }
            for r in &contacts {
                let ext = field(r, "External_Id__c");
                if expected.get(&ext) != Some(&field(r, "LastName")) {
                    bail!(
                        "Contact {ext}: LastName {:?}, expected {:?}",
                        field(r, "LastName"),
                        expected.get(&ext)
                    );
                }
            }
            let order_records = sf.records("Order");
            if order_records.len() != orders.len() {
                bail!("{} Orders, expected {}", order_records.len(), orders.len());
            }
            for r in &order_records {
                let ext = field(r, "External_Id__c");
                if orders.get(&ext) != Some(&field(r, "Status")) {
                    bail!(
                        "Order {ext}: Status {:?}, expected {:?}",
                        field(r, "Status"),
                        orders.get(&ext)
                    );
                }
            }
            Ok(format!(
                "contacts={} orders={} at their last version, record_writes={} api_requests={}",
                contacts.len(),
                order_records.len(),
                sf.writes().len(),
                sf.api_usage().0
            ))
        }
    }
}

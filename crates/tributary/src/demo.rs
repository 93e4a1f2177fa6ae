//! `tributary demo`: a throwaway PostgreSQL (the sample ERP and POS databases) and nats-server,
//! the bridge with its domain stage, retail traffic (orders, stock, shipments, returns, POS
//! sales), and a live view of what subscribers receive: row changes per source, domain events
//! per entity, dead letters, and how far the slots lag.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::Message as _;
use tributary_testkit::{NatsServer, PgCluster};

use crate::ops::status::StatusReport;

mod traffic;

const ERP_SCHEMA: &str = include_str!("../../../config/retail/erp.sql");
const POS_SCHEMA: &str = include_str!("../../../config/retail/pos.sql");
const DOMAIN: &str = include_str!("../../../config/retail/domain.toml");

/// The WMS and Shopify emulators the sinks write to, seeded with the sample catalogue.
struct Targets {
    wms: tributary_sandbox::RunningEmulator<tributary_sandbox::wms::Wms>,
    shop: tributary_sandbox::RunningEmulator<tributary_sandbox::shopify::Shopify>,
    dc1: String,
}

async fn start_targets() -> anyhow::Result<Targets> {
    use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed};
    use tributary_sandbox::wms::{self, WmsOptions};
    let wms = wms::start(WmsOptions::default()).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    for i in 1..=traffic::SKUS {
        let sku = format!("SKU-{i:04}");
        shop.add_product(
            &format!("Item {i}"),
            &[VariantSeed {
                sku,
                price: "19.99".into(),
            }],
        );
    }
    Ok(Targets { wms, shop, dc1 })
}

fn sinks_config(t: &Targets) -> String {
    format!(
        "\n[sinks]\n[sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{}\" }}\n",
        t.wms.base_url(),
        t.shop.base_url(),
        t.dc1
    )
}

fn bridge_config(nats_url: &str, pg_port: u16, pg_password: &str, http: &str) -> String {
    let source = |name: &str| {
        format!(
            "[[sources]]\nname = \"{name}\"\npublication = \"tributary_{name}\"\nslot = \"tributary_{name}\"\n\
             heartbeat_interval_secs = 5\n[sources.connection]\nhost = \"127.0.0.1\"\nport = {pg_port}\n\
             user = \"postgres\"\npassword = \"{pg_password}\"\ndbname = \"{name}\"\n\n"
        )
    };
    format!(
        "# Demo configuration written by `tributary demo`.\nhttp_listen = \"{http}\"\n\n[nats]\nservers = [\"{nats_url}\"]\n\n{}{}{DOMAIN}",
        source("erp"),
        source("pos")
    )
}

pub async fn demo(seconds: u64, rate: u32) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&tributary_config::LogConfig {
        level: Some("error,tributary=info,tributary_pipeline=info".into()),
        ..Default::default()
    });
    println!("starting PostgreSQL (wal_level=logical) and nats-server -js ...");
    // synchronous_commit = on: the walsender sends WAL once flushed, so commits reach the
    // bridge at once instead of on the WAL writer's next round.
    let pg = PgCluster::start_with(tributary_testkit::PgOptions {
        settings: vec![("synchronous_commit".into(), "on".into())],
        ..Default::default()
    })
    .await
    .context("starting PostgreSQL")?;
    let nats = NatsServer::start().await.context("starting nats-server")?;
    for (db, schema) in [("erp", ERP_SCHEMA), ("pos", POS_SCHEMA)] {
        pg.create_database(db).await?;
        let client = pg.connect(db).await?;
        client
            .batch_execute(schema)
            .await
            .with_context(|| format!("creating the {db} schema"))?;
    }
    let erp = pg.connect("erp").await?;
    let pos = pg.connect("pos").await?;
    traffic::seed(&erp, &pos).await?;
    let http = format!("127.0.0.1:{}", tributary_testkit::free_port());
    let targets = start_targets()
        .await
        .context("starting the WMS and Shopify emulators")?;
    let mut text = bridge_config(&nats.url(), pg.port(), pg.password(), &http);
    text.push_str(&sinks_config(&targets));
    let config = tributary_config::parse(&text)?;
    println!(
        "PostgreSQL 127.0.0.1:{} (databases erp, pos), NATS {}, metrics http://{http}/metrics",
        pg.port(),
        nats.url()
    );
    println!("subjects: cdc.<source>.<schema>.<table>.<op> (streams CDC_ERP, CDC_POS), retail.v1.<entity>.<event> (stream RETAIL), dlq.> (DLQ_DOMAIN, DLQ_SINKS)");
    println!(
        "targets: WMS emulator {} (orders released on status `confirmed`), Shopify emulator {} (inventory at DC1)",
        targets.wms.base_url(),
        targets.shop.base_url()
    );

    let shutdown = CancellationToken::new();
    let bridge = tokio::spawn(crate::run::run_config(config, shutdown.clone()));
    // Traffic starts once every source streams: rows written before a slot exists arrive as
    // snapshot reads, which the sample mappings do not turn into `order.placed`.
    let ready_by = Instant::now() + Duration::from_secs(60);
    let web = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let readyz = format!("http://{http}/readyz");
    while !web
        .get(&readyz)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the bridge did not become ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let load_stop = CancellationToken::new();
    let load = tokio::spawn(traffic::run(erp, pos, rate, load_stop.clone()));

    let client = async_nats::connect(nats.url()).await?;
    let mut cdc = client.subscribe("cdc.>").await?;
    let mut domain = client.subscribe("retail.v1.>").await?;
    let mut dlq = client.subscribe("dlq.>").await?;
    let started = Instant::now();
    let mut view = View::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            Some(msg) = cdc.next() => {
                if let Ok(ev) = ChangeEvent::decode(msg.payload.clone()) {
                    view.cdc(&ev);
                }
            }
            Some(msg) = domain.next() => view.domain(msg.subject.as_str()),
            Some(_) = dlq.next() => view.dead_letters += 1,
            _ = tick.tick() => {
                let status = bridge_status(&web, &http).await;
                view.print(started.elapsed(), &lag_line(status.as_ref()), &sink_line(status.as_ref(), &targets));
                if seconds > 0 && started.elapsed() >= Duration::from_secs(seconds) {
                    break;
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    println!(
        "demo summary: row_changes={} domain_events={} target_requests={} dead_letters={}",
        view.cdc_total,
        view.domain_total,
        targets.wms.requests().len() + targets.shop.requests().len(),
        view.dead_letters
    );
    println!("stopping ...");
    load_stop.cancel();
    let _ = load.await;
    shutdown.cancel();
    bridge.await??;
    drop(pg);
    drop(nats);
    println!("cleaned up");
    Ok(())
}

/// Counts for the last second and in total.
#[derive(Default)]
struct View {
    cdc_window: BTreeMap<String, u64>,
    cdc_total: u64,
    domain_window: BTreeMap<String, u64>,
    domain_total: u64,
    dead_letters: u64,
    max_capture_ms: i64,
}

impl View {
    fn cdc(&mut self, ev: &ChangeEvent) {
        *self.cdc_window.entry(ev.source.clone()).or_default() += 1;
        self.cdc_total += 1;
        self.max_capture_ms = self
            .max_capture_ms
            .max((ev.captured_at_micros - ev.commit_time_micros) / 1000);
    }

    fn domain(&mut self, subject: &str) {
        let name = subject
            .strip_prefix("retail.v1.")
            .unwrap_or(subject)
            .to_string();
        *self.domain_window.entry(name).or_default() += 1;
        self.domain_total += 1;
    }

    fn print(&mut self, elapsed: Duration, lag: &str, sinks: &str) {
        let cdc: Vec<String> = self
            .cdc_window
            .iter()
            .map(|(s, n)| format!("{s} {n}/s"))
            .collect();
        let domain: Vec<String> = self
            .domain_window
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        println!(
            "[{:>4}s] row changes: {} (total {}, commit→capture ≤ {} ms) | {lag} | dead letters {}",
            elapsed.as_secs(),
            cdc.join(", "),
            self.cdc_total,
            self.max_capture_ms,
            self.dead_letters
        );
        println!(
            "        domain events: {} (total {})",
            domain.join(", "),
            self.domain_total
        );
        println!("        sinks: {sinks}");
        self.cdc_window.clear();
        self.domain_window.clear();
        self.max_capture_ms = 0;
    }
}

/// The running bridge's report (`GET /status`); None while it does not answer.
async fn bridge_status(web: &reqwest::Client, http: &str) -> Option<StatusReport> {
    let response = web.get(format!("http://{http}/status")).send().await.ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

/// WAL each source's slot has not confirmed yet.
fn lag_line(status: Option<&StatusReport>) -> String {
    let lags: Vec<String> = status
        .map(|s| s.sources.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Some(format!("{} {} B", s.source, s.slot.lag_bytes?)))
        .collect();
    format!(
        "slot lag {}",
        if lags.is_empty() {
            "n/a".into()
        } else {
            lags.join(", ")
        }
    )
}

/// Each sink's consumer position (from the bridge's report) and what the emulators hold.
fn sink_line(status: Option<&StatusReport>, t: &Targets) -> String {
    let sinks: Vec<String> = status
        .map(|s| s.sinks.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            format!(
                "{} through seq {}, {} pending, {} dead letters",
                s.sink,
                s.ack_floor.unwrap_or(0),
                s.pending.unwrap_or(0),
                s.dead_letters.unwrap_or(0)
            )
        })
        .collect();
    format!(
        "{} | WMS holds {} orders",
        if sinks.is_empty() {
            "n/a".to_string()
        } else {
            sinks.join("; ")
        },
        t.wms.orders().len(),
    )
}

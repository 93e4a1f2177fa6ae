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

const SHOP_SECRET: &str = "demo-shopify-webhook-secret";
const WMS_SECRET: &str = "demo-wms-webhook-secret";
/// The Salesforce sink's `Sforce-Call-Options` client: the CDC feed drops its echoes.
const SF_CLIENT: &str = "tributary-demo";

/// The storefront (Shopify), the warehouse (WMS) and the CRM (Salesforce) emulators, seeded
/// with the sample catalogue; Shopify and the WMS send their webhooks to the bridge.
pub(crate) struct Targets {
    wms: tributary_sandbox::RunningEmulator<tributary_sandbox::wms::Wms>,
    shop: tributary_sandbox::RunningEmulator<tributary_sandbox::shopify::Shopify>,
    sf: tributary_sandbox::RunningEmulator<tributary_sandbox::salesforce::Salesforce>,
    /// The CRM's Change Data Capture (Pub/Sub API): agents' return Cases reach the bridge.
    sf_pubsub: tributary_sandbox::salesforce::pubsub::RunningPubSub,
    dc1: String,
    shop_hooks: String,
    wms_hooks: String,
}

async fn start_targets() -> anyhow::Result<Targets> {
    use tributary_sandbox::salesforce::{self, SalesforceOptions};
    use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed, WebhookSubscription};
    use tributary_sandbox::wms::{self, WmsOptions, WmsWebhookOptions};
    let shop_hooks = format!("127.0.0.1:{}", tributary_testkit::free_port());
    let wms_hooks = format!("127.0.0.1:{}", tributary_testkit::free_port());
    let wms = wms::start(WmsOptions::default()).await?;
    wms.set_webhook(Some(WmsWebhookOptions::new(
        format!("http://{wms_hooks}/webhooks/wms"),
        WMS_SECRET,
    )))?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    shop.set_webhook_subscription(Some(WebhookSubscription {
        url: format!("http://{shop_hooks}/webhooks/shopify/web"),
        secret: SHOP_SECRET.into(),
        policy: Default::default(),
    }))?;
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
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let sf_pubsub = salesforce::pubsub::start(
        sf.handle().clone(),
        ([127, 0, 0, 1], 0).into(),
        Duration::from_millis(300),
    )
    .await?;
    Ok(Targets {
        wms,
        shop,
        sf,
        sf_pubsub,
        dc1,
        shop_hooks,
        wms_hooks,
    })
}

/// The feeds the emulators call and the sinks that write to them and to the ERP's inbox.
fn loop_config(t: &Targets, pg_port: u16, pg_password: &str) -> String {
    let (client_id, client_secret) = tributary_sandbox::salesforce::SalesforceOptions::default()
        .clients
        .first()
        .cloned()
        .unwrap_or_default();
    format!(
        "\n[[shopify]]\nname = \"web\"\nlisten = \"{}\"\nwebhook_secret = \"{SHOP_SECRET}\"\n\
         \n[[wms]]\nlisten = \"{}\"\npath = \"/webhooks/wms\"\nsecret = \"{WMS_SECRET}\"\n\
         \n[[salesforce_cdc]]\nname = \"crm\"\nlogin_url = \"{sf}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
         pubsub_url = \"{}\"\necho_client_id = \"{SF_CLIENT}\"\nexternal_id_field = \"External_Id__c\"\ninitial_position = \"earliest\"\n\
         \n[sinks]\n[sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{}\" }}\n\
         [sinks.salesforce]\nbase_url = \"{sf}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\ncall_options_client = \"{SF_CLIENT}\"\n\
         [sinks.erp]\ntable = \"tributary_inbox\"\n\
         [sinks.erp.connection]\nhost = \"127.0.0.1\"\nport = {pg_port}\nuser = \"postgres\"\npassword = \"{pg_password}\"\ndbname = \"erp\"\n",
        t.shop_hooks,
        t.wms_hooks,
        t.sf_pubsub.url(),
        t.wms.base_url(),
        t.shop.base_url(),
        t.dc1,
        sf = t.sf.base_url(),
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

/// Where the storefront's orders are in the loop: placed on the storefront, sales orders in
/// the ERP (from the inbox), shipped by the warehouse, fulfilled on the storefront, refunds
/// credited in the ERP.
async fn loop_counts(erp: &tokio_postgres::Client, t: &Targets) -> [(&'static str, u64); 8] {
    let count = async |sql: &str| -> u64 {
        match erp.query_one(sql, &[]).await {
            Ok(row) => u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            Err(_) => 0,
        }
    };
    let (placed, fulfilled) = t
        .shop
        .with_state(|s| (s.orders.len() as u64, s.fulfillments.len() as u64));
    let shipped = t
        .wms
        .orders()
        .iter()
        .filter(|o| o.status == tributary_sandbox::wms::WmsStatus::Shipped)
        .count() as u64;
    [
        ("storefront_orders", placed),
        (
            "erp_sales_orders",
            count("SELECT count(*) FROM sales_orders WHERE storefront_ref IS NOT NULL").await,
        ),
        ("wms_shipped", shipped),
        ("storefront_fulfillments", fulfilled),
        (
            "erp_credit_memos",
            count("SELECT count(*) FROM credit_memos").await,
        ),
        ("salesforce_orders", t.sf.records("Order").len() as u64),
        (
            "return_cases",
            t.sf.records("Case")
                .iter()
                .filter(|c| c.fields.get("Origin").and_then(|o| o.as_str()) == Some("Phone"))
                .count() as u64,
        ),
        (
            "erp_returns_refunded",
            count("SELECT count(*) FROM returns WHERE status = 'refunded'").await,
        ),
    ]
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
    text.push_str(&loop_config(&targets, pg.port(), pg.password()));
    let targets = std::sync::Arc::new(targets);
    let config = tributary_config::parse(&text)?;
    println!(
        "PostgreSQL 127.0.0.1:{} (databases erp, pos), NATS {}, metrics http://{http}/metrics",
        pg.port(),
        nats.url()
    );
    println!("subjects: cdc.<source>.<schema>.<table>.<op> (streams CDC_ERP, CDC_POS), retail.v1.<entity>.<event> (stream RETAIL), dlq.> (DLQ_DOMAIN, DLQ_SINKS)");
    println!(
        "targets: WMS emulator {} (orders released on status `confirmed`), Shopify emulator {} (the storefront: checkouts, refunds, inventory at DC1), Salesforce emulator {}",
        targets.wms.base_url(),
        targets.shop.base_url(),
        targets.sf.base_url()
    );
    println!("loop: storefront checkout → webhook → order.placed → ERP inbox (sink erp) → ERP sales order, stock allocated, confirmed → WMS release → shipped → WMS webhook → Shopify fulfilment + Salesforce Order; storefront refund → ERP credit memo; agent's return Case (Salesforce CDC) → ERP return → WMS expected receipt → received → ERP restock + credit memo, return refunded → Case and Order in Salesforce, payment state on the storefront");

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
    let load = tokio::spawn(traffic::run(
        erp,
        pos,
        targets.clone(),
        rate,
        load_stop.clone(),
    ));
    let erp_view = pg.connect("erp").await?;

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
                let events = tributary_proto::batch::events_of(&msg.subject, &msg.payload);
                for ev in events.unwrap_or_default().into_iter().filter_map(|e| ChangeEvent::decode(e).ok()) {
                    view.cdc(&ev);
                }
            }
            Some(msg) = domain.next() => view.domain(msg.subject.as_str()),
            Some(_) = dlq.next() => view.dead_letters += 1,
            _ = tick.tick() => {
                let status = bridge_status(&web, &http).await;
                let counts = loop_counts(&erp_view, &targets).await;
                view.print(started.elapsed(), &lag_line(status.as_ref()), &sink_line(status.as_ref(), &targets), &counts);
                if seconds > 0 && started.elapsed() >= Duration::from_secs(seconds) {
                    break;
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    let counts = loop_counts(&erp_view, &targets).await;
    let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "demo summary: row_changes={} domain_events={} target_requests={} dead_letters={} {}",
        view.cdc_total,
        view.domain_total,
        targets.wms.requests().len() + targets.shop.requests().len(),
        view.dead_letters,
        counts.join(" ")
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

    fn print(&mut self, elapsed: Duration, lag: &str, sinks: &str, counts: &[(&str, u64)]) {
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
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("        loop: {}", counts.join(" → "));
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

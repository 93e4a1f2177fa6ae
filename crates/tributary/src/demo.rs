//! `tributary demo`: a throwaway PostgreSQL (an ERP and a POS database) and nats-server, the
//! bridge, a retail write load, and a live view of what a JetStream subscriber receives.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::Message as _;
use tributary_testkit::{NatsServer, PgCluster};

const ERP_SCHEMA: &str = include_str!("../../../config/demo/erp.sql");
const POS_SCHEMA: &str = include_str!("../../../config/demo/pos.sql");

pub async fn demo(seconds: u64, rate: u32) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&tributary_config::LogConfig {
        level: Some("warn,tributary=info".into()),
        ..Default::default()
    });
    println!("starting PostgreSQL (wal_level=logical) and nats-server -js ...");
    let pg = PgCluster::start().await.context("starting PostgreSQL")?;
    let nats = NatsServer::start().await.context("starting nats-server")?;
    for (db, schema) in [("erp", ERP_SCHEMA), ("pos", POS_SCHEMA)] {
        pg.create_database(db).await?;
        pg.connect(db)
            .await?
            .batch_execute(schema)
            .await
            .with_context(|| format!("creating the {db} schema"))?;
    }
    let config_text = format!(
        include_str!("../../../config/demo/tributary.toml.in"),
        nats_url = nats.url(),
        pg_port = pg.port(),
        pg_password = pg.password(),
    );
    let config = tributary_config::parse(&config_text)?;
    println!(
        "PostgreSQL on 127.0.0.1:{}, NATS on {}, metrics on http://{}/metrics",
        pg.port(),
        nats.url(),
        config.http_listen
    );

    let shutdown = CancellationToken::new();
    let bridge = tokio::spawn(crate::run::run_config(config, shutdown.clone()));
    let load_stop = CancellationToken::new();
    let erp = pg.connect("erp").await?;
    let pos = pg.connect("pos").await?;
    let load = tokio::spawn(write_load(erp, pos, rate, load_stop.clone()));

    let client = async_nats::connect(nats.url()).await?;
    let mut sub = client.subscribe("cdc.>").await?;
    let started = Instant::now();
    let mut per_table: BTreeMap<String, u64> = BTreeMap::new();
    let mut window = 0u64;
    let mut lag_ms_max = 0i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                if let Ok(ev) = ChangeEvent::decode(msg.payload.clone()) {
                    *per_table.entry(format!("{}.{}.{}", ev.source, ev.schema, ev.table)).or_default() += 1;
                    window += 1;
                    let lag = (ev.captured_at_micros - ev.commit_time_micros) / 1000;
                    lag_ms_max = lag_ms_max.max(lag);
                }
            }
            _ = tick.tick() => {
                let totals: Vec<String> = per_table.iter().map(|(t, n)| format!("{t}={n}")).collect();
                println!("[{:>4}s] {window:>5} events/s  max commit→capture {lag_ms_max} ms  | {}", started.elapsed().as_secs(), totals.join(" "));
                window = 0;
                lag_ms_max = 0;
                if seconds > 0 && started.elapsed() >= Duration::from_secs(seconds) {
                    break;
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
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

/// Retail traffic: customers sign up, orders are placed and shipped, stock moves, POS sales.
async fn write_load(
    erp: tokio_postgres::Client,
    pos: tokio_postgres::Client,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let per_tick = (rate / 10).max(1);
    let mut order_no = 0i64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        for _ in 0..per_tick / 4 + 1 {
            let (customer, sku, qty, store) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(1..=50i64),
                    format!("SKU-{:04}", rng.random_range(1..=40)),
                    rng.random_range(1..=3i32),
                    rng.random_range(1..=5i32),
                )
            };
            order_no += 1;
            erp.batch_execute(&format!(
                "BEGIN;
                 INSERT INTO customers (id, email, name) VALUES ({customer}, 'c{customer}@example.com', 'Customer {customer}')
                   ON CONFLICT (id) DO UPDATE SET updated_at = now();
                 INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-{order_no}', {customer}, 'placed', {qty} * 19.99);
                 INSERT INTO order_lines (order_no, line_no, sku, quantity, unit_price) VALUES ('SO-{order_no}', 1, '{sku}', {qty}, 19.99);
                 UPDATE stock SET on_hand = on_hand - {qty}, updated_at = now() WHERE sku = '{sku}' AND location = 'DC1';
                 COMMIT;"
            )).await?;
            if order_no % 3 == 0 {
                erp.execute(
                    "UPDATE sales_orders SET status = 'shipped' WHERE order_no = $1",
                    &[&format!("SO-{}", order_no - 2)],
                )
                .await?;
            }
            pos.batch_execute(&format!(
                "BEGIN;
                 INSERT INTO sales (store_id, total) VALUES ({store}, {qty} * 19.99);
                 INSERT INTO sale_lines (sale_id, sku, quantity) VALUES (currval('sales_id_seq'), '{sku}', {qty});
                 UPDATE store_stock SET on_hand = on_hand - {qty} WHERE store_id = {store} AND sku = '{sku}';
                 COMMIT;"
            )).await?;
        }
    }
}

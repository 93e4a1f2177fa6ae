//! `domain`: throughput of the domain stage on the sample retail databases (config/retail).
//!
//! ```text
//!  round 1 (live):   one bulk write of customers and orders (header, two lines, a status
//!                    change: four events on one entity) ─► CDC_ERP ─► domain stage ─► RETAIL
//!                    timed until CDC_ERP holds the changes and RETAIL the events
//!  round 2 (kill -9): the same write; the bridge is killed once a third of the events are
//!                    published, restarted, and timed until RETAIL holds them all, exactly once
//! ```
//! Moved here from an ignored test of tests/domain_events.rs (issue #12): a benchmark is run
//! on purpose, against the release binary, not skipped in every test run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use tributary_testkit::{NatsServer, PgCluster};

use crate::bridge::Bridge;
use crate::env::{self, Durability, Settings};

pub struct Args {
    pub customers: u64,
    pub orders: u64,
    pub timeout: Duration,
}

fn retail_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/retail")
}

/// Both sample databases loaded, one source each, and the sample domain mappings.
async fn retail_config(pg: &PgCluster, nats: &NatsServer) -> anyhow::Result<String> {
    let mut text = format!(
        "http_listen = \"127.0.0.1:{}\"\n[log]\nlevel = \"info\"\n[nats]\nservers = [{}]\n",
        tributary_testkit::try_free_port()?,
        env::toml_string(&nats.url()),
    );
    for name in ["erp", "pos"] {
        pg.create_database(name).await?;
        let sql = std::fs::read_to_string(retail_dir().join(format!("{name}.sql")))
            .with_context(|| format!("reading config/retail/{name}.sql"))?;
        pg.connect(name).await?.batch_execute(&sql).await?;
        text.push_str(&format!(
            "\n[[sources]]\nname = \"{name}\"\npublication = \"tributary_{name}\"\nslot = \"slot_{name}\"\n\
             [sources.connection]\nhost = \"127.0.0.1\"\nport = {}\nuser = {}\npassword = {}\ndbname = \"{name}\"\n",
            pg.port(),
            env::toml_string(pg.user()),
            env::toml_string(pg.password()),
        ));
    }
    text.push('\n');
    text.push_str(&std::fs::read_to_string(retail_dir().join("domain.toml"))?);
    tributary_config::parse(&text).context("the generated bridge configuration is invalid")?;
    Ok(text)
}

fn workload(round: u64, customers: u64, orders: u64) -> String {
    let c0 = round * 1_000_000;
    format!(
        "BEGIN;
         INSERT INTO customers SELECT g, 'c' || g || '@example.com', 'F', 'L', NULL, false, now()
           FROM generate_series({c1}, {c2}) g;
         COMMIT;
         BEGIN;
         INSERT INTO sales_orders (order_no, customer_id, status, total)
           SELECT 'B{round}-' || g, {c1}, 'placed', 10 FROM generate_series(1, {orders}) g;
         INSERT INTO order_lines SELECT 'B{round}-' || g, l, 'SKU-1', 1, 5
           FROM generate_series(1, {orders}) g, generate_series(1, 2) l;
         UPDATE sales_orders SET status = 'confirmed' WHERE order_no LIKE 'B{round}-%';
         COMMIT;",
        c1 = c0 + 1,
        c2 = c0 + customers,
    )
}

async fn count(js: &jetstream::Context, name: &str) -> anyhow::Result<u64> {
    match js.get_stream(name).await {
        Ok(mut s) => Ok(s.info().await?.state.messages),
        Err(_) => Ok(0),
    }
}

/// Polls `RETAIL` until it holds `target` more events than `base`; the time of the first
/// poll past `first_above` (when given) and of the last.
async fn wait_retail(
    js: &jetstream::Context,
    bridge: &mut Bridge,
    base: u64,
    target: u64,
    first_above: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<(Option<Duration>, Duration)> {
    let t0 = Instant::now();
    let mut first = None;
    loop {
        bridge.check_running()?;
        let n = count(js, "RETAIL").await? - base;
        if first.is_none() && first_above.is_some_and(|a| n > a) {
            first = Some(t0.elapsed());
        }
        if n >= target {
            return Ok((first, t0.elapsed()));
        }
        if t0.elapsed() > timeout {
            bail!("RETAIL holds {n} of {target} events\n{}", bridge.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    let pg = PgCluster::start().await.context("starting PostgreSQL")?;
    let nats = env::start_nats(settings.durability)
        .await
        .context("starting nats-server")?;
    let sync = match settings.durability {
        Durability::Always => "always",
        Durability::Interval => "1s",
        Durability::None => "default (2 min)",
    };
    eprintln!("nats-server sync: {sync}");
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tributary.toml");
    std::fs::write(&config, retail_config(&pg, &nats).await?)?;
    let binary = match &settings.bridge_binary {
        Some(path) => path.clone(),
        None => crate::bridge::find_bridge_binary()?,
    };
    let log = dir.path().join("tributary.log");
    let mut bridge = Bridge::spawn(&binary, &config, log.clone())?;
    let js = jetstream::new(nats.connect().await?);
    let erp = pg.connect("erp").await?;
    // Writes count once a walsender streams from each slot.
    let t0 = Instant::now();
    let postgres = pg.connect("postgres").await?;
    loop {
        bridge.check_running()?;
        let active: i64 = postgres
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name IN ('slot_erp', 'slot_pos')",
                &[],
            )
            .await?
            .get(0);
        if active == 2 {
            break;
        }
        if t0.elapsed() > args.timeout {
            bail!("the bridge never started streaming\n{}", bridge.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_round = args.customers + args.orders * 4;
    eprintln!("load average before: {}", crate::procfs::load_average());

    // Round 1: live.
    let (retail0, cdc0) = (count(&js, "RETAIL").await?, count(&js, "CDC_ERP").await?);
    let t0 = Instant::now();
    erp.batch_execute(&workload(1, args.customers, args.orders))
        .await?;
    let mut cdc_done = None;
    loop {
        bridge.check_running()?;
        if cdc_done.is_none() && count(&js, "CDC_ERP").await? - cdc0 >= per_round {
            cdc_done = Some(t0.elapsed());
        }
        if count(&js, "RETAIL").await? - retail0 >= per_round {
            break;
        }
        if t0.elapsed() > args.timeout {
            bail!("round 1 did not complete\n{}", bridge.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = t0.elapsed();
    let cdc_done = cdc_done.unwrap_or(total);
    println!(
        "live: {per_round} changes -> CDC_ERP in {:.2}s; {per_round} domain events in {:.2}s = {:.0} events/s (domain lag after the source: {:.2}s)",
        cdc_done.as_secs_f64(),
        total.as_secs_f64(),
        per_round as f64 / total.as_secs_f64(),
        (total - cdc_done).as_secs_f64()
    );

    // Round 2: kill -9 when a third of the events are published, restart, time the rest.
    let retail0 = count(&js, "RETAIL").await?;
    erp.batch_execute(&workload(2, args.customers, args.orders))
        .await?;
    wait_retail(&js, &mut bridge, retail0, per_round / 3, None, args.timeout).await?;
    crate::bridge::signal(bridge.pid(), nix::sys::signal::Signal::SIGKILL)?;
    drop(bridge);
    let at_kill = count(&js, "RETAIL").await? - retail0;
    let mut bridge = Bridge::spawn(&binary, &config, log)?;
    let (first, rest) = wait_retail(
        &js,
        &mut bridge,
        retail0,
        per_round,
        Some(at_kill),
        args.timeout,
    )
    .await?;
    // A sentinel change made now is mapped after every change before it: once its event is
    // in, a duplicate of an earlier change would be too.
    erp.batch_execute(
        "INSERT INTO customers VALUES (9999999, 's@example.com', 'S', 'L', NULL, false, now())",
    )
    .await?;
    wait_retail(&js, &mut bridge, retail0, per_round + 1, None, args.timeout).await?;
    let final_count = count(&js, "RETAIL").await? - retail0 - 1;
    println!(
        "kill -9 at {at_kill}/{per_round}: first new event {:.2}s after the restart, all in {:.2}s ({:.0} events/s incl. startup); {final_count} events in the round",
        first.unwrap_or(rest).as_secs_f64(),
        rest.as_secs_f64(),
        (per_round - at_kill) as f64 / rest.as_secs_f64(),
    );
    eprintln!("load average after: {}", crate::procfs::load_average());
    if final_count != per_round {
        bail!("{final_count} events for {per_round} changes: lost or duplicated");
    }
    bridge.stop().await?;
    Ok(())
}

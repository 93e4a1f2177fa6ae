//! Partitioned sinks under `[ha]`: three replicas on a 3-node JetStream cluster, the domain
//! events in 16 partitions (`domain.partitions` = `sinks.partitions` = 16), so that each of
//! the WMS and Shopify sinks is 16 work units. While the sample ERP writes orders and stock,
//! replicas are SIGKILLed and a new one joins; the emulators end exactly in the written
//! state, every idempotency key has one side effect, and each SKU's stock reached the WMS in
//! version order.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use futures::StreamExt;
use support::*;
use tributary_core::partition::{partition_of, partition_token};
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{self, ShopifyOptions};
use tributary_sandbox::wms::{self, WmsOptions, WmsStatus};
use tributary_testkit::{NatsCluster, PgCluster};

const TTL_MS: u64 = 3000;
const PARTITIONS: u32 = 16;
const ORDERS: usize = 300;
const SKUS: usize = 16;
const ROUNDS: i64 = 60;
const LEASES: &str = "tributary_leases";
/// Every this many rounds the stock at DC2, the shop's location, changes too: Shopify's cost
/// bucket (10 points per level) caps the shop's levels per second whatever the replicas.
const SHOP_EVERY: i64 = 4;

/// Stock of a SKU after `round`: rising, so that the WMS's adjustments of one SKU, applied
/// in version order, leave its on-hand count rising too.
fn level(sku: usize, round: i64) -> i64 {
    1000 + round * 20 + sku as i64
}

fn cancelled(order: usize) -> bool {
    order.is_multiple_of(5)
}

/// One replica's configuration: its own HTTP port and instance id; streams and leases R3.
fn replica_config(
    dir: &Path,
    pg: &PgCluster,
    cluster: &NatsCluster,
    sources: &[SourceSpec],
    sinks: &str,
    instance: &str,
    partitions: u32,
) -> Result<PathBuf> {
    let urls = cluster.urls().join("\", \"");
    let text = retail_config(pg, &urls, sources)?;
    let text = text.replacen(
        "[domain]\n",
        &format!("[domain]\npartitions = {partitions}\n"),
        1,
    );
    let text = format!(
        "{text}\n{sinks}\n[nats.stream]\nreplicas = 3\n\n[ha]\ninstance_id = \"{instance}\"\nlease_ttl_ms = {TTL_MS}\nreplicas = 3\n"
    );
    let sub = dir.join(instance);
    std::fs::create_dir_all(&sub)?;
    write_config(&sub, &text)
}

/// Unit → owning instance, from the lease bucket.
async fn owners(js: &jetstream::Context) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Ok(kv) = js.get_key_value(LEASES).await else {
        return Ok(out);
    };
    let mut keys = kv.keys().await?;
    while let Some(key) = keys.next().await {
        let key = key?;
        let Some(unit) = key.strip_prefix("unit.") else {
            continue;
        };
        if let Some(value) = kv.get(&key).await? {
            let v: serde_json::Value = serde_json::from_slice(&value)?;
            if let Some(instance) = v["instance"].as_str() {
                out.insert(unit.replace("=20", " "), instance.to_string());
            }
        }
    }
    Ok(out)
}

/// Waits until `unit` is owned by a live replica other than `not`.
async fn owner_of(js: &jetstream::Context, unit: &str, not: Option<&str>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(o) = owners(js).await?.get(unit) {
            if Some(o.as_str()) != not {
                return Ok(o.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("no owner of {unit} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sample ERP's writes: orders (placed with two lines, confirmed, every fifth then
/// cancelled) interleaved with stock levels of every SKU at DC1 (the WMS's) and
/// DC2 (the shop's).
async fn workload(erp: tokio_postgres::Client) -> Result<()> {
    erp.batch_execute("INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee')")
        .await?;
    let per_round = ORDERS.div_ceil(ROUNDS as usize);
    for round in 1..=ROUNDS {
        let mut sql = String::new();
        for sku in 0..SKUS {
            for dc in ["DC1", "DC2"] {
                if dc == "DC2" && round % SHOP_EVERY != 0 {
                    continue;
                }
                sql.push_str(&format!(
                    "INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-{sku}', '{dc}', {}) \
                     ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now();",
                    level(sku, round)
                ));
            }
        }
        let first = (round as usize - 1) * per_round + 1;
        for o in first..(first + per_round).min(ORDERS + 1) {
            sql.push_str(&format!(
                "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-{o}', 1, 'placed', 10);\
                 INSERT INTO order_lines VALUES ('SO-{o}', 1, 'SKU-{}', 2, 5), ('SO-{o}', 2, 'SKU-{}', 1, 5); COMMIT;\
                 UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-{o}';",
                o % SKUS,
                (o + 1) % SKUS
            ));
            if cancelled(o) {
                sql.push_str(&format!(
                    "UPDATE sales_orders SET status = 'cancelled' WHERE order_no = 'SO-{o}';"
                ));
            }
        }
        erp.batch_execute(&sql).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Waits until both sources have created their slots: rows committed before that reach the
/// streams as the initial snapshot's reads, which the sample mappings do not turn into
/// `order.placed` (an order that existed before the bridge is not placed again), so a
/// workload started earlier — on a loaded machine a source's first owner can take seconds —
/// would leave its first orders out of the WMS by design.
async fn slots_created(pg: &PgCluster) -> Result<()> {
    let client = pg.connect("postgres").await?;
    wait_until(Duration::from_secs(120), async || {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('slot_erp', 'slot_pos')",
                &[],
            )
            .await?
            .get(0);
        Ok(if n == 2 {
            Check::Done(())
        } else {
            Check::Pending(format!("{n} of the 2 slots created"))
        })
    })
    .await
}

/// The partition consumers of both sinks that are missing or have events pending or
/// unacknowledged: (name, pending, unacknowledged).
async fn busy_consumers(js: &jetstream::Context) -> Result<Vec<(String, u64, usize)>> {
    let stream = js.get_stream("RETAIL").await?;
    let mut busy = Vec::new();
    for sink in ["wms", "shopify"] {
        for p in 0..PARTITIONS {
            let name = format!("tributary-sink-{sink}-{}", partition_token(p));
            match stream.consumer_info(&name).await {
                Ok(i) if i.num_pending == 0 && i.num_ack_pending == 0 => {}
                Ok(i) => busy.push((name, i.num_pending, i.num_ack_pending)),
                Err(_) => busy.push((name, u64::MAX, 0)),
            }
        }
    }
    Ok(busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_sinks_survive_sigkills_and_a_joining_replica() -> Result<()> {
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    let sources = retail_sources(&pg).await?;
    let wms = wms::start(WmsOptions::default()).await?;
    wms.set_rate_limits(false);
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc2 = shop.add_location("DC2");
    let items = shop_catalog(&shop, (0..SKUS).map(|i| format!("SKU-{i}")), "9.50");
    let sinks = format!(
        "[sinks]\npartitions = {PARTITIONS}\n\
         [sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\ninventory_location = \"DC1\"\n\
         [sinks.wms.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nrequest_timeout_ms = 3000\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC2 = \"{dc2}\" }}\n\
         apply = [\"inventory\"]\nbatch_size = 4\n\
         [sinks.shopify.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nrequest_timeout_ms = 3000\n",
        wms.base_url(),
        shop.base_url()
    );

    let dir = tempfile::tempdir()?;
    let mut replicas: BTreeMap<String, (PathBuf, Bridge)> = BTreeMap::new();
    for r in ["r1", "r2", "r3"] {
        let config = replica_config(dir.path(), &pg, &cluster, &sources, &sinks, r, PARTITIONS)?;
        replicas.insert(r.to_string(), (config.clone(), Bridge::spawn(&config)?));
    }
    let logs = |replicas: &BTreeMap<String, (PathBuf, Bridge)>| {
        replicas
            .iter()
            .map(|(r, (_, b))| format!("--- {r}\n{}", b.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let nats = cluster.connect().await?;
    let js = jetstream::new(nats.clone());
    // 2 sources, 2 domain consumers, 2 sinks × 16 partitions.
    let units = 4 + 2 * PARTITIONS as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned = owners(&js).await?;
        let holders: std::collections::BTreeSet<_> = owned.values().collect();
        if owned.len() == units && holders.len() == 3 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "units never spread over 3 replicas: {owned:?}\n{}",
                logs(&replicas)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    slots_created(&pg).await?;
    let writer = tokio::spawn(workload(pg.connect("erp").await?));
    let started = Instant::now();
    // SIGKILL the owner of a WMS partition, then a replica joins, then SIGKILL the owner of
    // a Shopify partition: partitions move while their events are being applied.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = owner_of(&js, "sink wms p03", None).await?;
    let mut dead_logs = String::new();
    let (_, killed) = replicas.remove(&victim).context("known replica")?;
    let last_words = killed.log();
    killed.kill9().await?;
    dead_logs.push_str(&format!("--- {victim} (killed)\n{last_words}"));
    eprintln!("{:?}: SIGKILLed {victim}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let config = replica_config(
        dir.path(),
        &pg,
        &cluster,
        &sources,
        &sinks,
        "r4",
        PARTITIONS,
    )?;
    replicas.insert("r4".into(), (config.clone(), Bridge::spawn(&config)?));
    eprintln!("{:?}: r4 joined", started.elapsed());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let victim = owner_of(&js, "sink shopify p11", Some(&victim)).await?;
    let (_, killed) = replicas.remove(&victim).context("known replica")?;
    let last_words = killed.log();
    killed.kill9().await?;
    dead_logs.push_str(&format!("--- {victim} (killed)\n{last_words}"));
    eprintln!("{:?}: SIGKILLed {victim}", started.elapsed());
    writer.await.context("workload task")??;
    eprintln!("{:?}: workload written", started.elapsed());

    // The final state: every order in the WMS with its lines (the cancelled ones cancelled),
    // every SKU's last level in the WMS and in Shopify, nothing left in the consumers.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut last_report = Instant::now();
    loop {
        let orders_done = (1..=ORDERS).all(|o| {
            wms.order_by_reference(&format!("SO-{o}")).is_some_and(|w| {
                w.products.len() == 2 && (w.status == WmsStatus::Cancelled) == cancelled(o)
            })
        });
        let stock_done = (0..SKUS).all(|s| {
            let last = level(s, ROUNDS);
            wms.stock(&format!("SKU-{s}")) == Some(last)
                && shop
                    .inventory(&items[&format!("SKU-{s}")], &dc2)
                    .is_some_and(|l| l.available == last)
        });
        let busy = busy_consumers(&js).await?;
        if orders_done && stock_done && busy.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let unfinished: Vec<String> = (1..=ORDERS)
                .filter_map(|o| {
                    let reference = format!("SO-{o}");
                    let w = wms.order_by_reference(&reference);
                    let done = w.as_ref().is_some_and(|w| {
                        w.products.len() == 2 && (w.status == WmsStatus::Cancelled) == cancelled(o)
                    });
                    (!done).then(|| {
                        format!("{reference}: {:?}", w.map(|w| (w.status, w.products.len())))
                    })
                })
                .take(20)
                .collect();
            let stock: Vec<String> = (0..SKUS)
                .map(|s| {
                    let sku = format!("SKU-{s}");
                    format!(
                        "{sku}: wms {:?} shop {:?} want {}",
                        wms.stock(&sku),
                        shop.inventory(&items[&sku], &dc2).map(|l| l.available),
                        level(s, ROUNDS)
                    )
                })
                .collect();
            let mut per_subject: BTreeMap<String, usize> = BTreeMap::new();
            for m in read_all(&nats, "RETAIL").await? {
                let mut parts: Vec<&str> = m.subject.split('.').collect();
                parts.pop();
                *per_subject.entry(parts.join(".")).or_default() += 1;
            }
            let domain_dlq = read_all(&nats, "DLQ_DOMAIN").await?.len();
            let mut sink_dlq: BTreeMap<String, usize> = BTreeMap::new();
            for m in dead_letters(&nats).await? {
                let key = format!(
                    "{} {}: {}",
                    header(&m, "Tributary-Sink"),
                    header(&m, "Tributary-Subject"),
                    header(&m, "Tributary-Reason")
                );
                *sink_dlq.entry(key).or_default() += 1;
            }
            let mut cdc_per_subject: BTreeMap<String, usize> = BTreeMap::new();
            for m in read_all(&nats, &stream_name("erp")).await? {
                *cdc_per_subject.entry(m.subject.to_string()).or_default() += 1;
            }
            let log_path = std::env::temp_dir().join("ha_sinks_fail.log");
            std::fs::write(&log_path, format!("{}\n{dead_logs}", logs(&replicas))).ok();
            bail!(
                "targets did not reach the final state (orders {orders_done}, stock {stock_done}, busy consumers {busy:?})\nunfinished orders: {unfinished:?}\nstock: {stock:?}\nRETAIL per subject: {per_subject:?}\nCDC_ERP per subject: {cdc_per_subject:?}\nDLQ_DOMAIN: {domain_dlq}\nDLQ_SINKS: {sink_dlq:?}\n(logs of every replica, the killed ones too: {})",
                log_path.display()
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "{:?}: orders {orders_done}, stock {stock_done}, busy {busy:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("{:?}: final state reached", started.elapsed());
    // Any straggling redelivery would show in the counts below.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every event on its partition's subject; one side effect per idempotency key.
    let mut per_sku: BTreeMap<String, usize> = BTreeMap::new();
    let (mut releases, mut cancels, mut shopify_levels) = (0, 0, 0);
    let events = read_all(&nats, "RETAIL").await?;
    for msg in &events {
        let ev = DomainEvent::decode(msg.payload.clone())?;
        let meta = ev.meta.clone().unwrap_or_default();
        let token = partition_token(partition_of(&meta.entity_key, PARTITIONS));
        assert_eq!(
            msg.subject.as_str(),
            format!("retail.v1.{}.{}.{token}", meta.entity, meta.event),
            "subject of {}",
            meta.event_id
        );
        let wms_key = tributary_sinks::idempotency_key("wms", &meta.event_id);
        match &ev.entity {
            Some(Entity::Order(o)) if meta.event == "status_changed" => {
                assert_eq!(
                    wms.key_applies(&wms_key),
                    1,
                    "WMS writes for {} {}",
                    o.order_id,
                    o.status
                );
                match o.status.as_str() {
                    "confirmed" => releases += 1,
                    _ => cancels += 1,
                }
            }
            Some(Entity::Inventory(l)) if l.location == "DC1" => {
                assert_eq!(
                    wms.key_applies(&wms_key),
                    1,
                    "WMS adjustments for {}",
                    meta.event_id
                );
                *per_sku.entry(l.sku.clone()).or_default() += 1;
            }
            Some(Entity::Inventory(_)) => {
                let key = tributary_sinks::idempotency_key("shopify", &meta.event_id);
                let applies = shop.idempotent_applies(&key);
                assert_eq!(applies, 1, "Shopify writes for {}", meta.event_id);
                shopify_levels += 1;
            }
            _ => {}
        }
    }
    assert_eq!(releases, ORDERS);
    assert_eq!(shopify_levels, SKUS * (ROUNDS / SHOP_EVERY) as usize);
    assert_eq!(cancels, (1..=ORDERS).filter(|o| cancelled(*o)).count());
    for o in 1..=ORDERS {
        assert_eq!(
            wms.reference_creates(&format!("SO-{o}")),
            1,
            "WMS orders for SO-{o}"
        );
    }
    // Per-entity order: each SKU's adjustments, in the order the WMS applied them, raise
    // its count every time (an older level after a newer one would lower it), one per level.
    let adjustments = wms.with_state(|s| s.adjustments.clone());
    let mut by_sku: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for a in &adjustments {
        by_sku
            .entry(a.sku.clone())
            .or_default()
            .push(a.on_hand_after);
    }
    for s in 0..SKUS {
        let sku = format!("SKU-{s}");
        let counts = by_sku.get(&sku).cloned().unwrap_or_default();
        assert_eq!(
            counts.len(),
            ROUNDS as usize,
            "{sku}: one adjustment per level"
        );
        assert_eq!(
            per_sku.get(&sku).copied(),
            Some(ROUNDS as usize),
            "{sku} levels"
        );
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "{sku}: levels applied out of version order: {counts:?}"
        );
    }
    assert!(dead_letters(&nats).await?.is_empty(), "no dead letters");
    eprintln!(
        "{} events, {} adjustments; owners now {:?}",
        events.len(),
        adjustments.len(),
        owners(&js)
            .await?
            .values()
            .collect::<std::collections::BTreeSet<_>>()
    );

    // `tributary status`: one row per sink, summed over its 16 partition consumers.
    let (_, (config, _)) = replicas.iter().next().context("a replica")?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["status", "--format", "json", "--config"])
        .arg(config)
        .output()
        .await?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).to_string())?;
    let rows = status["sinks"].as_array().cloned().unwrap_or_default();
    let wms_row = rows
        .iter()
        .find(|s| s["sink"] == "wms")
        .context("wms row")?;
    assert_eq!(wms_row["pending"], 0, "{status}");
    assert_eq!(wms_row["in_flight"], 0, "{status}");
    assert!(
        wms_row["consumer"]
            .as_str()
            .is_some_and(|c| c.contains("16 partitions")),
        "{status}"
    );

    if let Ok(path) = std::env::var("HA_SINKS_LOGS") {
        std::fs::write(path, logs(&replicas))?;
    }
    for (r, (_, bridge)) in replicas {
        let log = bridge.log();
        let code = bridge.stop().await?;
        assert_eq!(code, 0, "replica {r} exited {code}:\n{log}");
    }
    Ok(())
}

/// Stock levels of every SKU at DC1 (the WMS's location) for `rounds`, one transaction each.
async fn stock_rounds(
    erp: &tokio_postgres::Client,
    rounds: std::ops::RangeInclusive<i64>,
) -> Result<()> {
    for round in rounds {
        let mut sql = String::from("BEGIN;");
        for sku in 0..SKUS {
            sql.push_str(&format!(
                "INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-{sku}', 'DC1', {}) \
                 ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now();",
                level(sku, round)
            ));
        }
        sql.push_str("COMMIT;");
        erp.batch_execute(&sql).await?;
    }
    Ok(())
}

/// Waits until every SKU's WMS stock is its level after `round` and the sink's consumer has
/// nothing pending or unacknowledged.
async fn wait_stock(
    js: &jetstream::Context,
    wms: &wms::Wms,
    round: i64,
    logs: &dyn Fn() -> String,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stocked = (0..SKUS).all(|s| wms.stock(&format!("SKU-{s}")) == Some(level(s, round)));
        let idle = match js.get_stream("RETAIL").await {
            Ok(stream) => stream
                .consumer_info("tributary-sink-wms")
                .await
                .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0),
            Err(_) => false,
        };
        if stocked && idle {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the WMS never reached round {round}'s stock\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Zombie sink: the owner of `sink wms` is paused (SIGSTOP) for 2 × TTL while its lanes hold
/// throttled events; the standby takes the unit over and applies everything; the woken
/// replica sends the WMS nothing at all (its fence refuses before every apply) and steps
/// down; later events are applied once each, in version order per SKU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sink_owner_woken_after_losing_its_lease_applies_nothing() -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    let sources = retail_sources(&pg).await?;
    // Slow, so that the owner's lanes hold events in flight when it freezes.
    let wms = wms::start(WmsOptions {
        processing_delay: Duration::from_millis(100),
        ..WmsOptions::default()
    })
    .await?;
    wms.set_rate_limits(false);
    let sinks = format!(
        "[sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\ninventory_location = \"DC1\"\n\
         [sinks.wms.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 500\nrequest_timeout_ms = 3000\n",
        wms.base_url()
    );
    let dir = tempfile::tempdir()?;
    let mut replicas: BTreeMap<String, (PathBuf, Bridge)> = BTreeMap::new();
    for r in ["r1", "r2"] {
        let config = replica_config(dir.path(), &pg, &cluster, &sources, &sinks, r, 1)?;
        replicas.insert(r.to_string(), (config.clone(), Bridge::spawn(&config)?));
    }
    let logs = |replicas: &BTreeMap<String, (PathBuf, Bridge)>| {
        replicas
            .iter()
            .map(|(r, (_, b))| format!("--- {r}\n{}", b.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let nats = cluster.connect().await?;
    let js = jetstream::new(nats.clone());
    // 2 sources, 2 domain consumers, 1 sink: spread over both replicas.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned = owners(&js).await?;
        let holders: std::collections::BTreeSet<_> = owned.values().collect();
        if owned.len() == 5 && holders.len() == 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("units never spread: {owned:?}\n{}", logs(&replicas));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    slots_created(&pg).await?;
    let zombie = owner_of(&js, "sink wms", None).await?;
    // The sample ERP's own rows first.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let idle = match js.get_stream("RETAIL").await {
            Ok(stream) => stream
                .consumer_info("tributary-sink-wms")
                .await
                .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0),
            Err(_) => false,
        };
        if idle {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the WMS sink never caught up with the sample data\n{}",
                logs(&replicas)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let applied_before = wms.with_state(|s| s.adjustments.len());
    let erp = pg.connect("erp").await?;
    stock_rounds(&erp, 1..=12).await?;
    // Freeze the owner while it works through the backlog.
    let deadline = Instant::now() + Duration::from_secs(180);
    while wms.with_state(|s| s.adjustments.len()) < applied_before + SKUS * 2 {
        if Instant::now() > deadline {
            bail!("the WMS sink never started\n{}", logs(&replicas));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = Pid::from_raw(replicas[&zombie].1.pid());
    kill(pid, Signal::SIGSTOP)?;
    let frozen = Instant::now();
    let standby = owner_of(&js, "sink wms", Some(&zombie))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&replicas)))?;
    wait_stock(&js, &wms, 12, &|| logs(&replicas)).await?;
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS).saturating_sub(frozen.elapsed())).await;
    let before_wake = wms.requests().all().len();
    eprintln!(
        "{standby} took the sink over and applied everything; waking {zombie} after {:?}",
        frozen.elapsed()
    );
    kill(pid, Signal::SIGCONT)?;
    // Nothing is left to apply: any request now would be the woken replica acting on a
    // lease it no longer holds.
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS)).await;
    let after_wake = wms.requests().all();
    assert_eq!(
        after_wake.len(),
        before_wake,
        "the woken replica sent the WMS {:?}\n{}",
        &after_wake[before_wake..],
        logs(&replicas)
    );
    let log = replicas[&zombie].1.log();
    assert!(
        log.contains("self-fenced") || log.contains("lease taken over"),
        "the woken owner never stepped down:\n{log}"
    );
    // Later changes: applied once each, wherever the unit is now.
    stock_rounds(&erp, 13..=16).await?;
    wait_stock(&js, &wms, 16, &|| logs(&replicas)).await?;
    let adjustments = wms.with_state(|s| s.adjustments.clone());
    for s in 0..SKUS {
        let sku = format!("SKU-{s}");
        let counts: Vec<i64> = adjustments
            .iter()
            .filter(|a| a.sku == sku)
            .map(|a| a.on_hand_after)
            .collect();
        // Levels a lane found already reached (a newer one applied first after the
        // takeover's redelivery) are recorded without an adjustment; none goes backwards.
        assert_eq!(
            counts.last().copied(),
            Some(level(s, 16)),
            "{sku}: {counts:?}"
        );
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "{sku}: levels applied out of version order: {counts:?}"
        );
    }
    if let Ok(path) = std::env::var("HA_SINKS_LOGS") {
        std::fs::write(path, logs(&replicas))?;
    }
    let twice: Vec<(String, u64)> = wms.with_state(|s| {
        s.key_applies
            .iter()
            .filter(|(_, n)| **n != 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    });
    assert!(
        twice.is_empty(),
        "idempotency keys applied more than once: {twice:?}"
    );
    for (r, (_, bridge)) in replicas {
        let log = bridge.log();
        let code = bridge.stop().await?;
        assert_eq!(code, 0, "replica {r} exited {code}:\n{log}");
    }
    Ok(())
}

//! `priority`: apply latency of the Shopify sink's high class (stock levels) while a backlog
//! of low-class customer updates competes for a hard-throttled cost bucket, against the same
//! workload unthrottled, in one invocation (docs/sinks.md, "Priority classes").
//!
//! ```text
//!  per phase (unthrottled; throttled; throttled with priority off), each from scratch:
//!    fresh nats-server ─► RETAIL
//!    Shopify emulator in this process (throttled: --bucket points, --restore-rate a second)
//!    tributary run (the shopify sink only: inventory + customers; no PostgreSQL)
//!    bench publishes --customers × --versions customer updates at once (the low class),
//!       then --levels stock levels live at --rate a second, one SKU each (the high class)
//!    polls the emulator: when each level is applied (its latency from publish), when the
//!       last customer update is; samples tributary_sink_lag_seconds of each class
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, stream};
use prost::Message as _;
use tributary_proto::retail::v1::{
    domain_event::Entity, Customer, DomainEvent, EventMeta, InventoryLevel,
};
use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed};

use crate::bridge::Bridge;
use crate::env::{self, Settings};
use crate::procfs;

pub struct Args {
    /// High-class events: one stock level per SKU.
    pub levels: usize,
    /// High-class events published per second.
    pub rate: f64,
    pub customers: usize,
    /// Updates per customer (the low class's backlog is customers × versions).
    pub versions: u64,
    /// Throttled phases: the emulator's cost bucket and its refill per second.
    pub bucket: f64,
    pub restore_rate: f64,
    pub timeout: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Unthrottled,
    Throttled,
    ThrottledWithoutPriority,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Unthrottled => "unthrottled",
            Phase::Throttled => "throttled",
            Phase::ThrottledWithoutPriority => "throttled_priority_off",
        }
    }
}

struct Measured {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Customer updates applied when the last stock level was.
    low_applied_at_high_end: u64,
    /// From the customer burst to its last update applied.
    low_catch_up_s: f64,
    peak_low_lag_s: f64,
    peak_high_lag_s: f64,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    if args.levels == 0 || args.customers == 0 || args.versions == 0 || args.rate <= 0.0 {
        bail!("--levels, --customers, --versions and --rate must be positive");
    }
    println!("load average before: {}", procfs::load_average());
    println!(
        "setup: per phase a fresh nats-server and Shopify emulator (in this process), the bridge \
         running the shopify sink only (apply inventory + customers, default priority: inventory \
         high, customer low); low class: {} customer updates published at once; high class: {} \
         stock levels at {}/s; throttled: {} points refilled at {}/s (10 per mutation)",
        args.customers as u64 * args.versions,
        args.levels,
        args.rate,
        args.bucket,
        args.restore_rate
    );
    let mut results = Vec::new();
    for phase in [
        Phase::Unthrottled,
        Phase::Throttled,
        Phase::ThrottledWithoutPriority,
    ] {
        let m = run_phase(phase, &args, &settings)
            .await
            .with_context(|| format!("phase {}", phase.name()))?;
        println!(
            "phase={} high_p50_ms={:.1} high_p99_ms={:.1} high_max_ms={:.1} \
             low_applied_when_high_done={}/{} low_catch_up_s={:.1} peak_lag_s_low={:.1} peak_lag_s_high={:.1}",
            phase.name(),
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            m.low_applied_at_high_end,
            args.customers as u64 * args.versions,
            m.low_catch_up_s,
            m.peak_low_lag_s,
            m.peak_high_lag_s
        );
        results.push((phase, m));
    }
    println!("load average after: {}", procfs::load_average());
    let p99 = |p: Phase| {
        results
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(f64::NAN, |(_, m)| m.p99_ms)
    };
    println!(
        "priority_high_p99_ratio_throttled={:.2} priority_high_p99_ratio_throttled_priority_off={:.2}",
        p99(Phase::Throttled) / p99(Phase::Unthrottled),
        p99(Phase::ThrottledWithoutPriority) / p99(Phase::Unthrottled)
    );
    Ok(())
}

fn event(entity: &str, name: &str, key: String, version: u64, body: Entity) -> (String, Vec<u8>) {
    let ev = DomainEvent {
        meta: Some(EventMeta {
            event_id: format!("bench/{entity}/{key}/{version}"),
            entity: entity.into(),
            event: name.into(),
            entity_key: key,
            entity_version: version,
            system_of_record: "erp".into(),
            event_time_micros: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
            source_ref: None,
            mapping: "bench".into(),
        }),
        entity: Some(body),
    };
    (format!("retail.v1.{entity}.{name}"), ev.encode_to_vec())
}

fn customer(i: usize, version: u64) -> (String, Vec<u8>) {
    let key = format!("C-{i}");
    let body = Entity::Customer(Customer {
        customer_id: key.clone(),
        email: format!("c{i}@example.com"),
        first_name: "Ada".into(),
        last_name: format!("V{version}"),
        ..Default::default()
    });
    event("customer", "updated", key, version, body)
}

fn level(i: usize) -> (String, Vec<u8>) {
    let body = Entity::Inventory(InventoryLevel {
        sku: sku(i),
        location: "DC1".into(),
        on_hand: i as i64 + 1,
        available: i as i64 + 1,
        reporting_system: "erp".into(),
        ..Default::default()
    });
    event(
        "inventory",
        "level_changed",
        format!("{}@DC1", sku(i)),
        1,
        body,
    )
}

fn sku(i: usize) -> String {
    format!("SKU-{i:05}")
}

async fn run_phase(phase: Phase, args: &Args, settings: &Settings) -> anyhow::Result<Measured> {
    let nats = env::start_nats(settings.durability)
        .await
        .context("starting nats-server")?;
    let js = jetstream::new(nats.connect().await?);
    js.create_stream(stream::Config {
        name: "RETAIL".into(),
        subjects: vec!["retail.v1.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let throttled = phase != Phase::Unthrottled;
    let shop = shopify::start(ShopifyOptions {
        throttling: throttled,
        bucket_size: if throttled { args.bucket } else { 1e9 },
        restore_rate: if throttled { args.restore_rate } else { 1e9 },
        ..ShopifyOptions::default()
    })
    .await?;
    shop.requests().set_enabled(false);
    let location = shop.add_location("DC1");
    // One SKU more than measured: the warm-up's.
    let mut items = Vec::with_capacity(args.levels + 1);
    let skus: Vec<String> = (0..=args.levels).map(sku).collect();
    for chunk in skus.chunks(50) {
        let seeds: Vec<VariantSeed> = chunk
            .iter()
            .map(|s| VariantSeed {
                sku: s.clone(),
                price: "9.50".into(),
            })
            .collect();
        let p = shop.add_product(&format!("Product {}", chunk[0]), &seeds);
        items.extend(p.variants.into_iter().map(|(_, item, _)| item));
    }
    let customers: Vec<String> = (0..args.customers)
        .map(|i| shop.add_customer(&format!("c{i}@example.com"), "Ada", "V0"))
        .collect();

    let dir = tempfile::Builder::new()
        .prefix("tributary-bench-priority-")
        .tempdir()?;
    let http = tributary_testkit::try_free_port()?;
    let q = env::toml_string;
    let text = format!(
        "http_listen = \"127.0.0.1:{http}\"\n[log]\nlevel = \"info\"\n[nats]\nservers = [{}]\n\
         [[shopify]]\nname = \"benchidle\"\nlisten = \"127.0.0.1:{}\"\n\
         webhook_secret = \"3f9c2a7e41b8d605c1e7a9f24b6d8e03\"\ndomain_events = false\n\
         [sinks]\n[sinks.shopify]\nbase_url = {}\naccess_token = \"shpat_sandbox\"\n\
         apply = [\"inventory\", \"customers\"]\nlocations = {{ DC1 = {} }}\n\
         [sinks.shopify.priority]\nenabled = {}\n",
        q(&nats.url()),
        tributary_testkit::try_free_port()?,
        q(shop.base_url()),
        q(&location),
        phase != Phase::ThrottledWithoutPriority
    );
    tributary_config::parse(&text).context("the generated configuration is invalid")?;
    let config = dir.path().join("tributary.toml");
    std::fs::write(&config, text)?;
    let binary = match &settings.bridge_binary {
        Some(p) => p.clone(),
        None => crate::bridge::find_bridge_binary()?,
    };
    let mut bridge = Bridge::spawn(&binary, &config, dir.path().join("tributary.log"))?;
    // Consuming: the shopify consumer exists (and, with priority, the low class's).
    let stream = js.get_stream("RETAIL").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream
        .consumer_info("tributary-sink-shopify")
        .await
        .is_err()
        || (phase != Phase::ThrottledWithoutPriority
            && stream
                .consumer_info("tributary-sink-shopify-low")
                .await
                .is_err())
    {
        bridge.check_running()?;
        if Instant::now() > deadline {
            bail!("the sink never started\n{}", bridge.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A warm-up level outside the measurement: the SKU catalogue load (a 102-point query)
    // and the first connection are the same in every phase and not what is measured.
    let (subject, payload) = level(args.levels);
    js.publish(subject, payload.into()).await?.await?;
    while shop
        .inventory(&items[args.levels], &location)
        .is_none_or(|l| l.available != args.levels as i64 + 1)
    {
        bridge.check_running()?;
        if Instant::now() > deadline {
            bail!("the warm-up level was not applied\n{}", bridge.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burst = Instant::now();
    let mut acks = Vec::new();
    for v in 1..=args.versions {
        for i in 0..args.customers {
            let (subject, payload) = customer(i, v);
            acks.push(js.publish(subject, payload.into()).await?);
        }
    }
    for ack in acks {
        ack.await?;
    }

    // The high class, live; a task samples the lag gauges meanwhile.
    let sampling = sample_lag(http);
    let mut published: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(args.levels);
    let mut low_at_high_end = 0;
    let mut low_done: Option<Instant> = None;
    let customer_writes = || -> u64 { customers.iter().map(|c| shop.entity_writes(c)).sum() };
    let wanted_low = args.customers as u64 * args.versions;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut next = 0usize;
    loop {
        bridge.check_running()?;
        let now = Instant::now();
        while next < args.levels && start + interval.mul_f64(next as f64) <= now {
            let (subject, payload) = level(next);
            js.publish(subject, payload.into()).await?.await?;
            published.insert(next, Instant::now());
            next += 1;
        }
        published.retain(|i, at| {
            let applied = shop
                .inventory(&items[*i], &location)
                .is_some_and(|l| l.available == *i as i64 + 1);
            if applied {
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            }
            !applied
        });
        let high_done = next == args.levels && published.is_empty();
        if low_done.is_none() && customer_writes() >= wanted_low {
            low_done = Some(Instant::now());
        }
        if high_done && low_at_high_end == 0 {
            low_at_high_end = customer_writes().max(1);
        }
        if high_done && low_done.is_some() {
            break;
        }
        if now > deadline {
            bail!(
                "not done within {:?}: {} levels pending, customer writes {}/{wanted_low}\n{}",
                args.timeout,
                published.len() + args.levels - next,
                customer_writes(),
                bridge.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (peak_low, peak_high) = sampling.finish().await;
    bridge.stop().await?;

    // Exactly once: one write per customer version, one per stock level.
    if let Some(c) = customers
        .iter()
        .find(|c| shop.entity_writes(c) != args.versions)
    {
        bail!(
            "customer {c}: {} writes, expected {}",
            shop.entity_writes(c),
            args.versions
        );
    }
    if let Some(c) = customers
        .iter()
        .find(|c| shop.customer(c).and_then(|c| c.last_name) != Some(format!("V{}", args.versions)))
    {
        bail!("customer {c} is not at its last version");
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Ok(Measured {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        low_applied_at_high_end: low_at_high_end.min(wanted_low),
        low_catch_up_s: low_done.map_or(f64::NAN, |d| d.duration_since(burst).as_secs_f64()),
        peak_low_lag_s: peak_low,
        peak_high_lag_s: peak_high,
    })
}

/// Scrapes `/metrics` every 250 ms and keeps the peak of each class's lag gauge.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(f64, f64)>,
}

impl Sampler {
    async fn finish(self) -> (f64, f64) {
        let _ = self.stop.send(());
        self.task.await.unwrap_or((f64::NAN, f64::NAN))
    }
}

fn sample_lag(port: u16) -> Sampler {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut low, mut high) = (0.0f64, 0.0f64);
        loop {
            let text = crate::sinks::metrics_text(port).await;
            for l in text.lines() {
                let Some(rest) = l.strip_prefix("tributary_sink_lag_seconds{") else {
                    continue;
                };
                let value: f64 = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                if rest.contains("class=\"low\"") {
                    low = low.max(value);
                } else {
                    high = high.max(value);
                }
            }
            tokio::select! {
                _ = &mut stopped => return (low, high),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    Sampler { stop, task }
}

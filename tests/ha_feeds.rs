//! SaaS feeds under `[ha]`: the Shopify webhook server runs on every replica (each answers
//! deliveries behind a load balancer), the shop's mapping consumer is a leased unit. Its owner
//! is SIGKILLed mid-burst and restarted: every webhook answered 200 is stored once, the unit
//! moves to the other replica, and every event becomes exactly one domain event.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use serde_json::json;
use support::*;
use tributary_proto::retail::v1::DomainEvent;
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{BatchOptions, ShopifyWebhook, WebhookSender};
use tributary_sandbox::webhooks::RetryPolicy;
use tributary_testkit::{NatsCluster, PgCluster};

const SECRET: &str = "shpss_test_secret";
const DOMAIN: &str = "sandbox.myshopify.com";
const MAPPER: &str = "shopify mapper web";
const HOOKS: usize = 2400;

fn replica_config(
    dir: &std::path::Path,
    pg: &PgCluster,
    cluster: &NatsCluster,
    listen: SocketAddr,
    instance: &str,
) -> Result<PathBuf> {
    let urls = cluster.urls().join("\", \"");
    let mut text = config_text(pg, &urls, &[SourceSpec::new("shopdb", "shopdb")]);
    text.push_str(&format!(
        "\n[[shopify]]\nname = \"web\"\nshop_domain = \"{DOMAIN}\"\nlisten = \"{listen}\"\nwebhook_secret = \"{SECRET}\"\n\
         \n[nats.stream]\nreplicas = 3\n\n[ha]\ninstance_id = \"{instance}\"\nlease_ttl_ms = 3000\nreplicas = 3\n"
    ));
    let sub = dir.join(instance);
    std::fs::create_dir_all(&sub)?;
    write_config(&sub, &text)
}

async fn owner(js: &jetstream::Context, unit: &str) -> Option<String> {
    let kv = js.get_key_value("tributary_leases").await.ok()?;
    let value = kv
        .get(format!("unit.{}", unit.replace(' ', "=20")))
        .await
        .ok()??;
    let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
    v["instance"].as_str().map(str::to_string)
}

async fn wait_owner(js: &jetstream::Context, unit: &str, not: Option<&str>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(o) = owner(js, unit).await.filter(|o| Some(o.as_str()) != not) {
            return Ok(o);
        }
        if Instant::now() > deadline {
            bail!("no owner of {unit} other than {not:?} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_listening(addr: SocketAddr, bridge: &Bridge) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("the webhook server never listened\n{}", bridge.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// (Nats-Msg-Id, payload) of every message of `stream`.
async fn read_ids(nats: &async_nats::Client, stream: &str) -> Result<Vec<(String, bytes::Bytes)>> {
    Ok(read_all(nats, stream)
        .await?
        .into_iter()
        .map(|m| {
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            (id, m.payload.clone())
        })
        .collect())
}

/// Orders and customers on distinct entities.
fn hooks(n: usize) -> Vec<ShopifyWebhook> {
    (0..n)
        .map(|i| {
            let at = tributary_sandbox::rfc3339_millis(1_800_000_000_000 + i as u64);
            let id = 50_000 + i as u64;
            let (topic, payload) = if i % 2 == 0 {
                ("orders/create", json!({"id": id, "financial_status": "paid", "created_at": at, "updated_at": at,
                    "line_items": [{"id": id * 10, "sku": "MUG-1", "quantity": 1, "price": "9.50"}]}))
            } else {
                ("customers/update", json!({"id": id, "email": format!("c{id}@example.com"), "created_at": at, "updated_at": at}))
            };
            let mut hook = ShopifyWebhook::new(topic, payload);
            hook.triggered_at = at;
            hook
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_feed_under_ha_loses_and_duplicates_nothing_when_the_mapper_owner_dies(
) -> Result<()> {
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    pg.create_database("shopdb").await?;
    let db = pg.connect("shopdb").await?;
    db.batch_execute(ORDERS_DDL).await?;
    db.batch_execute("CREATE PUBLICATION pub_shopdb FOR TABLE orders")
        .await?;
    let dir = tempfile::tempdir()?;
    let mut replicas: BTreeMap<String, (SocketAddr, PathBuf, Bridge)> = BTreeMap::new();
    for r in ["r1", "r2"] {
        let listen: SocketAddr = ([127, 0, 0, 1], tributary_testkit::free_port()).into();
        let config = replica_config(dir.path(), &pg, &cluster, listen, r)?;
        let bridge = Bridge::spawn(&config)?;
        wait_listening(listen, &bridge).await?;
        replicas.insert(r.into(), (listen, config, bridge));
    }
    let logs = |replicas: &BTreeMap<String, (SocketAddr, PathBuf, Bridge)>| {
        replicas
            .iter()
            .map(|(r, (_, _, b))| format!("--- {r}\n{}", b.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let nats = cluster.connect().await?;
    let js = jetstream::new(nats.clone());
    let first = wait_owner(&js, MAPPER, None).await?;

    // Half the deliveries to each replica, as a load balancer would spread them; Shopify
    // retries what a dead replica refused (compressed here).
    let policy = RetryPolicy {
        max_attempts: 40,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..RetryPolicy::default()
    };
    let all = hooks(HOOKS);
    let mut senders = Vec::new();
    let mut bursts = Vec::new();
    for (i, (_, (listen, _, _))) in replicas.iter().enumerate() {
        let url = format!("http://{listen}/webhooks/shopify/web");
        let sender = WebhookSender::with_policy(&url, SECRET, DOMAIN, policy.clone())?;
        let share: Vec<ShopifyWebhook> = all.iter().skip(i).step_by(2).cloned().collect();
        let s = sender.clone();
        bursts.push(tokio::spawn(async move {
            s.send_batch(
                share,
                &BatchOptions {
                    duplicate_rate: 0.05,
                    shuffle: true,
                    concurrency: 8,
                    seed: 11 + i as u64,
                    ..BatchOptions::default()
                },
            )
            .await
        }));
        senders.push(sender);
    }

    // SIGKILL the mapper's owner once a third of the events are domain events.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mapped = js
            .get_stream("RETAIL")
            .await
            .ok()
            .map(|mut s| async move { s.info().await.map(|i| i.state.messages).unwrap_or(0) });
        let mapped = match mapped {
            Some(f) => f.await,
            None => 0,
        };
        if mapped >= (HOOKS / 3) as u64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the mapper never got going\n{}", logs(&replicas));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (listen, config, bridge) = replicas.remove(&first).context("known replica")?;
    bridge.kill9().await?;
    let next = wait_owner(&js, MAPPER, Some(&first))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&replicas)))?;
    eprintln!("{MAPPER}: {first} SIGKILLed, {next} took over");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bridge = Bridge::spawn(&config)?;
    wait_listening(listen, &bridge).await?;
    replicas.insert(first.clone(), (listen, config, bridge));
    for burst in bursts {
        let report = burst.await?;
        assert!(
            report.sent.iter().all(|s| s.outcome.delivered),
            "every event was delivered in the end"
        );
    }

    // Every delivery answered 200 stored, every event once.
    let answered_200: BTreeSet<String> = senders
        .iter()
        .flat_map(|s| s.client().attempts())
        .filter(|a| a.status == Some(200))
        .filter_map(|a| {
            a.headers
                .iter()
                .find(|(k, _)| k == "X-Shopify-Event-Id")
                .map(|(_, v)| format!("web:{v}"))
        })
        .collect();
    let raw = read_ids(&nats, "SAAS_SHOPIFY").await?;
    let unique: BTreeSet<String> = raw.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(raw.len(), unique.len(), "a webhook was stored twice");
    let lost: Vec<&String> = answered_200.difference(&unique).collect();
    assert!(lost.is_empty(), "answered 200 but not stored: {lost:?}");
    assert_eq!(unique.len(), HOOKS, "every event stored once");

    // One domain event per webhook, whichever replica mapped it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let events = loop {
        let events: Vec<DomainEvent> = read_ids(&nats, "RETAIL")
            .await?
            .into_iter()
            .map(|(_, p)| DomainEvent::decode(p))
            .collect::<std::result::Result<_, _>>()?;
        if events.len() >= HOOKS {
            break events;
        }
        if Instant::now() > deadline {
            bail!(
                "RETAIL holds {} of {HOOKS} events\n{}",
                events.len(),
                logs(&replicas)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *per_id
            .entry(e.meta.clone().unwrap_or_default().event_id)
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), HOOKS, "one domain event per webhook");
    assert!(per_id.values().all(|n| *n == 1), "a domain event twice");
    for (r, (_, _, bridge)) in replicas {
        let log = bridge.log();
        let code = bridge.stop().await?;
        assert_eq!(code, 0, "replica {r} exited {code}:\n{log}");
    }
    Ok(())
}

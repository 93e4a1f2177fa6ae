//! Shopify webhooks as a change feed: signed deliveries with duplicates, shuffled order and
//! forged signatures land in `SAAS_SHOPIFY` exactly once (forged ones answered 401, nothing
//! stored), map to `tributary.retail.v1` domain events, never roll an entity back, are
//! recovered by the reconciliation poll when Shopify never delivers them, and survive a
//! `kill -9` of the bridge: nothing answered 200 is lost.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_saas::shopify::ShopifySources;
use tributary_sandbox::shopify::{
    self, BatchOptions, ShopifyOptions, ShopifyWebhook, VariantSeed, WebhookSender,
};
use tributary_sandbox::webhooks::{Delivery, RetryPolicy, WebhookClient};
use tributary_testkit::NatsServer;

const SECRET: &str = "shpss_test_secret";
const DOMAIN: &str = "sandbox.myshopify.com";

/// `[[shopify]]` for shop `web`; `admin`: (Admin API URL, reconcile interval secs).
fn shopify_block(listen: SocketAddr, admin: Option<(&str, u64)>) -> String {
    let mut text = format!(
        "\n[[shopify]]\nname = \"web\"\nshop_domain = \"{DOMAIN}\"\nlisten = \"{listen}\"\nwebhook_secret = \"{SECRET}\"\n"
    );
    if let Some((url, every)) = admin {
        text.push_str(&format!(
            "[shopify.admin]\nurl = \"{url}\"\naccess_token = \"shpat_sandbox\"\nreconcile_interval_secs = {every}\nreconcile_lag_secs = 0\ninventory_sweep_interval_secs = {every}\n"
        ));
    }
    text
}

/// The Shopify source in-process (crate API). The config needs one database source to
/// validate; it is never started here.
struct InProcess {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start_in_process(nats: &NatsServer, admin: Option<(&str, u64)>) -> Result<InProcess> {
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let text = format!(
        "[nats]\nservers = [\"{}\"]\n[[sources]]\nname = \"unused\"\npublication = \"p\"\nslot = \"s\"\n[sources.connection]\nhost = \"127.0.0.1\"\nuser = \"u\"\ndbname = \"d\"\n{}",
        nats.url(),
        shopify_block(listen, admin)
    );
    let config = tributary_config::parse(&text)?;
    let js = jetstream::new(nats.connect().await?);
    let sources = ShopifySources::prepare(&config, js)
        .await?
        .context("no shop configured")?;
    let addr = sources.local_addrs()[0];
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = sources.run(s).await;
    });
    Ok(InProcess { addr, stop, task })
}

impl InProcess {
    fn url(&self) -> String {
        format!("http://{}/webhooks/shopify/web", self.addr)
    }

    async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn sender(url: &str, policy: RetryPolicy) -> Result<WebhookSender> {
    Ok(WebhookSender::with_policy(url, SECRET, DOMAIN, policy)?)
}

/// Every message of a stream: (Nats-Msg-Id, subject, payload), in stream order.
async fn read_all(
    nats: &async_nats::Client,
    stream: &str,
) -> Result<Vec<(String, String, bytes::Bytes)>> {
    let js = jetstream::new(nats.clone());
    let mut s = js.get_stream(stream).await?;
    let total = s.info().await?.state.messages;
    let mut out = Vec::new();
    if total == 0 {
        return Ok(out);
    }
    let consumer = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    while (out.len() as u64) < total {
        let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("reading the stream timed out")?
            .context("stream ended")??;
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((id, msg.subject.to_string(), msg.payload.clone()));
    }
    Ok(out)
}

async fn stream_count(nats: &async_nats::Client, stream: &str) -> u64 {
    let js = jetstream::new(nats.clone());
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Domain events of the RETAIL stream once `until` holds (or fails after 60 s).
async fn retail_until(
    nats: &async_nats::Client,
    until: impl Fn(&[DomainEvent]) -> bool,
) -> Result<Vec<DomainEvent>> {
    wait_until(Duration::from_secs(60), async || {
        let events: Vec<DomainEvent> = read_all(nats, "RETAIL")
            .await?
            .into_iter()
            .map(|(_, _, p)| DomainEvent::decode(p))
            .collect::<std::result::Result<_, _>>()?;
        Ok(if until(&events) {
            Check::Done(events)
        } else {
            Check::Pending(format!(
                "RETAIL holds {} events; the condition never held",
                events.len()
            ))
        })
    })
    .await
}

fn key(e: &DomainEvent) -> (String, String, String) {
    let m = e.meta.clone().unwrap_or_default();
    (m.entity, m.event, m.entity_key)
}

/// Synthetic events over distinct entities of the six mapped topics.
fn synthetic_hooks(n: usize) -> Vec<ShopifyWebhook> {
    (0..n)
        .map(|i| {
            let at = tributary_sandbox::rfc3339_millis(1_800_000_000_000 + i as u64);
            let id = 10_000 + i as u64;
            let (topic, payload) = match i % 6 {
                0 => ("orders/create", json!({"id": id, "financial_status": "paid", "created_at": at, "updated_at": at,
                        "line_items": [{"id": id * 10, "sku": "MUG-1", "quantity": 1, "price": "9.50"}]})),
                1 => ("orders/updated", json!({"id": id, "financial_status": "refunded", "created_at": at, "updated_at": at})),
                2 => ("refunds/create", json!({"id": id, "order_id": id - 2, "created_at": at,
                        "transactions": [{"kind": "refund", "status": "success", "amount": "1.00"}]})),
                3 => ("inventory_levels/update", json!({"inventory_item_id": id, "location_id": 1, "available": 5, "updated_at": at})),
                4 => ("customers/update", json!({"id": id, "email": format!("c{id}@example.com"), "created_at": at, "updated_at": at})),
                _ => ("fulfillments/create", json!({"id": id, "order_id": id - 5, "status": "success", "created_at": at, "updated_at": at})),
            };
            let mut hook = ShopifyWebhook::new(topic, payload);
            hook.triggered_at = at;
            hook
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_webhooks_with_duplicates_shuffle_and_bad_signatures_are_stored_once() -> Result<()>
{
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let source = start_in_process(&nats, None).await?;
    let sender = sender(&source.url(), RetryPolicy::default())?;
    let hooks = synthetic_hooks(5000);
    let report = sender
        .send_batch(
            hooks.clone(),
            &BatchOptions {
                duplicate_rate: 0.10,
                shuffle: true,
                bad_signature_rate: 0.01,
                concurrency: 32,
                seed: 42,
                ..BatchOptions::default()
            },
        )
        .await;

    // Forged deliveries: 401; genuine ones: 200.
    let forged = report.sent.iter().filter(|s| s.bad_signature).count();
    assert!(forged > 0, "the batch holds forged deliveries");
    for s in &report.sent {
        if s.bad_signature {
            assert_eq!(
                s.outcome.status,
                Some(401),
                "forged delivery of {}",
                s.event_id
            );
        } else {
            assert!(
                s.outcome.delivered,
                "genuine delivery of {} failed: {:?}",
                s.event_id, s.outcome
            );
        }
    }
    // A delivery without a signature: 401 too.
    let naked = Delivery {
        url: source.url(),
        headers: vec![
            ("X-Shopify-Topic".into(), "orders/create".into()),
            ("X-Shopify-Event-Id".into(), "unsigned-1".into()),
            ("X-Shopify-Shop-Domain".into(), DOMAIN.into()),
        ],
        body: bytes::Bytes::from_static(b"{\"id\": 1}"),
    };
    let outcome = WebhookClient::new(RetryPolicy::once())?
        .deliver(&naked)
        .await;
    assert_eq!(outcome.status, Some(401));

    // Every genuine event exactly once; nothing from a forged-only or unsigned delivery.
    let genuine: BTreeSet<String> = report
        .sent
        .iter()
        .filter(|s| !s.bad_signature)
        .map(|s| format!("web:{}", s.event_id))
        .collect();
    let raw = read_all(&client, "SAAS_SHOPIFY").await?;
    let ids: Vec<String> = raw.iter().map(|(id, _, _)| id.clone()).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "a webhook was stored twice");
    assert_eq!(
        unique, genuine,
        "the stream holds exactly the genuine events"
    );
    let duplicates = report.sent.iter().filter(|s| s.duplicate).count();
    assert!(
        duplicates > 300,
        "the batch re-delivered events ({duplicates})"
    );
    for (id, subject, payload) in raw.iter().take(50) {
        let change = ChangeEvent::decode(payload.clone())?;
        assert_eq!(&change.event_id, id);
        assert_eq!(change.source, "web");
        assert!(subject.starts_with("saas.shopify.web."), "{subject}");
    }

    // One domain event per genuine event (all entities distinct, none stale).
    let by_event: HashMap<String, &ShopifyWebhook> = hooks
        .iter()
        .map(|h| (format!("web:{}", h.event_id), h))
        .collect();
    let expected = genuine.len();
    let events = retail_until(&client, |e| e.len() >= expected).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_again = retail_until(&client, |_| true).await?;
    assert_eq!(
        events_again.len(),
        expected,
        "one domain event per genuine webhook"
    );
    let mut sources = BTreeSet::new();
    for e in &events {
        let meta = e.meta.as_ref().context("meta")?;
        let r = meta.source_ref.as_ref().context("source_ref")?;
        assert!(
            by_event.contains_key(&r.event_id),
            "{} traces back to a webhook",
            meta.event_id
        );
        assert!(
            sources.insert(meta.event_id.clone()),
            "domain event {} twice",
            meta.event_id
        );
        assert_eq!(meta.entity_version, 1);
        assert_eq!(meta.system_of_record, "shopify");
    }
    source.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_delivery_does_not_roll_back_the_entity() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let source = start_in_process(&nats, None).await?;
    let sender = sender(&source.url(), RetryPolicy::once())?;
    let hook = |email: &str, at: &str| {
        let mut h = ShopifyWebhook::new(
            "customers/update",
            json!({"id": 77, "email": email, "created_at": "2026-01-01T00:00:00.000Z", "updated_at": at}),
        );
        h.triggered_at = at.to_string();
        h
    };
    let older = hook("old@example.com", "2026-01-01T10:00:00.000Z");
    let newer = hook("new@example.com", "2026-01-01T11:00:00.000Z");
    assert!(sender.send(&newer).await.delivered);
    retail_until(&client, |e| e.len() == 1).await?;
    // The older state arrives late: acknowledged (Shopify must stop retrying), not published.
    assert!(sender.send(&older).await.delivered);
    // A sentinel on another entity: the mapper works in stream order, so once the sentinel's
    // event is out, the stale one has been handled.
    let mut sentinel = hook("x@example.com", "2026-01-01T09:00:00.000Z");
    sentinel.payload["id"] = json!(78);
    assert!(sender.send(&sentinel).await.delivered);
    let events = retail_until(&client, |e| e.len() >= 2).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = if events.len() == 2 {
        retail_until(&client, |_| true).await?
    } else {
        events
    };
    let customer_77: Vec<&DomainEvent> = events.iter().filter(|e| key(e).2 == "WEB-77").collect();
    assert_eq!(customer_77.len(), 1, "the stale delivery was not published");
    match &customer_77[0].entity {
        Some(Entity::Customer(c)) => assert_eq!(c.email, "new@example.com"),
        other => bail!("unexpected entity {other:?}"),
    }
    assert_eq!(
        stream_count(&client, "SAAS_SHOPIFY").await,
        3,
        "all three stored raw"
    );
    source.shutdown().await;
    Ok(())
}

/// The first poll stores the cursors (reconciliation starts from the first start); changes
/// made after this returns are inside the next poll's window.
async fn wait_for_reconcile_cursors(client: &async_nats::Client) -> Result<()> {
    let js = jetstream::new(client.clone());
    wait_until(Duration::from_secs(30), async || {
        let kv = js.get_key_value("tributary_saas").await?;
        Ok(
            if kv.get("shopify.web.orders").await?.is_some()
                && kv.get("shopify.web.inventory_levels").await?.is_some()
            {
                Check::Done(())
            } else {
                Check::Pending("the reconciliation cursor was never stored".into())
            },
        )
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

/// Against a store that charges Shopify's real query cost and refuses a document over 1000
/// points, the reconciliation's orders page (a few line items per order) is accepted, and an
/// order with more line items than that nested page is recovered with every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_with_more_lines_than_the_nested_page_is_recovered_whole() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let source = start_in_process(&nats, Some((shop.base_url(), 1))).await?;
    wait_for_reconcile_cursors(&client).await?;
    let skus: Vec<String> = (0..23).map(|i| format!("PART-{i:02}")).collect();
    let lines: Vec<(&str, i64, &str)> = skus.iter().map(|s| (s.as_str(), 1, "2.00")).collect();
    let long = shop.add_order("long@example.com", &lines, None);
    let short = shop.add_order("short@example.com", &[("MUG-1", 2, "9.50")], None);
    let key_of = |gid: &str| -> Result<String> {
        Ok(format!(
            "WEB-{}",
            shopify::parse_gid(gid, "Order").context("gid")?
        ))
    };
    let (long_key, short_key) = (key_of(&long.order_id)?, key_of(&short.order_id)?);
    let events = retail_until(&client, |e| {
        e.iter().any(|e| key(e).2 == long_key) && e.iter().any(|e| key(e).2 == short_key)
    })
    .await?;
    let lines_of = |k: &str| -> Result<Vec<String>> {
        match &events
            .iter()
            .find(|e| key(e).2 == k)
            .context("order")?
            .entity
        {
            Some(Entity::Order(o)) => Ok(o.lines.iter().map(|l| l.sku.clone()).collect()),
            other => bail!("unexpected entity {other:?}"),
        }
    };
    assert_eq!(
        lines_of(&long_key)?,
        skus,
        "every line, in order, none twice"
    );
    assert_eq!(lines_of(&short_key)?, vec!["MUG-1".to_string()]);
    source.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_never_delivered_is_recovered_by_reconciliation() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let shop = shopify::start(ShopifyOptions {
        throttling: false,
        ..ShopifyOptions::default()
    })
    .await?;
    let source = start_in_process(&nats, Some((shop.base_url(), 1))).await?;
    wait_for_reconcile_cursors(&client).await?;
    // Changes whose webhooks Shopify never delivers.
    let customer = shop.add_customer("lost@example.com", "Lost", "Webhook");
    let order = shop.add_order("lost@example.com", &[("MUG-1", 2, "9.50")], Some(&customer));
    let order_id =
        tributary_sandbox::shopify::parse_gid(&order.order_id, "Order").context("gid")?;
    let customer_id =
        tributary_sandbox::shopify::parse_gid(&customer, "Customer").context("gid")?;
    let order_key = format!("WEB-{order_id}");
    let customer_key = format!("WEB-{customer_id}");
    // A refund and a stock change whose webhooks are lost too. The refund comes a few
    // milliseconds later, so the order the poll reads was updated after it was created: it
    // must still be recovered as placed (the feed never saw it).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let refund = shop.add_refund(&order.order_id, "4.75").context("refund")?;
    let refund_key = format!(
        "WEB-{}",
        tributary_sandbox::shopify::parse_gid(&refund, "Refund").context("gid")?
    );
    let location = shop.add_location("Backroom");
    let mug = shop.add_product(
        "Mug",
        &[VariantSeed {
            sku: "MUG-9".into(),
            price: "9.50".into(),
        }],
    );
    let item = mug.variants[0].1.clone();
    shop.set_inventory(&item, &location, 17)?;
    let level_key = format!(
        "WEB-ITEM-{}:WEB-LOC-{}",
        tributary_sandbox::shopify::parse_gid(&item, "InventoryItem").context("gid")?,
        tributary_sandbox::shopify::parse_gid(&location, "Location").context("gid")?
    );
    let events = retail_until(&client, |e| {
        e.iter()
            .any(|e| key(e) == ("order".into(), "placed".into(), order_key.clone()))
            && e.iter().any(|e| key(e).2 == customer_key)
            && e.iter().any(|e| key(e).2 == refund_key)
            && e.iter().any(|e| key(e).2 == level_key)
    })
    .await?;
    let refunded = events
        .iter()
        .find(|e| key(e).2 == refund_key)
        .context("refund")?;
    match &refunded.entity {
        Some(Entity::Refund(r)) => {
            assert_eq!(r.amount.as_ref().map(|m| m.amount.as_str()), Some("4.75"));
            assert_eq!(r.order_id, order_key);
        }
        other => bail!("unexpected entity {other:?}"),
    }
    let level = events
        .iter()
        .find(|e| key(e).2 == level_key)
        .context("level")?;
    match &level.entity {
        Some(Entity::Inventory(l)) => assert_eq!(l.available, 17),
        other => bail!("unexpected entity {other:?}"),
    }
    let placed = events
        .iter()
        .find(|e| key(e).2 == order_key)
        .context("order")?;
    match &placed.entity {
        Some(Entity::Order(o)) => {
            assert_eq!(o.lines.len(), 1);
            assert_eq!(o.lines[0].sku, "MUG-1");
            assert_eq!(o.customer_id, customer_key);
        }
        other => bail!("unexpected entity {other:?}"),
    }
    let raw = read_all(&client, "SAAS_SHOPIFY").await?;
    assert!(raw
        .iter()
        .any(|(id, _, _)| id.starts_with("web:reconcile:")));

    // The webhook arrives after all (a day late): stored raw, a repeat for the domain.
    let late = shop
        .webhook_for("orders/create", &order.order_id)
        .context("webhook")?;
    let sender = sender(&source.url(), RetryPolicy::once())?;
    assert!(sender.send(&late).await.delivered);
    let mut sentinel = ShopifyWebhook::new(
        "customers/update",
        json!({"id": 999_999, "email": "s@example.com", "updated_at": "2026-01-01T00:00:00.000Z"}),
    );
    sentinel.triggered_at = "2026-01-01T00:00:00.000Z".into();
    assert!(sender.send(&sentinel).await.delivered);
    let events = retail_until(&client, |e| e.iter().any(|e| key(e).2 == "WEB-999999")).await?;
    let placed: Vec<_> = events.iter().filter(|e| key(e).2 == order_key).collect();
    assert_eq!(
        placed.len(),
        1,
        "the late webhook did not publish the order again"
    );
    // The feed's raw stream, the domain streams and the state buckets are marked as the bridge's.
    let streams = marked_streams(&client).await?;
    for name in [
        "RETAIL",
        "DLQ_DOMAIN",
        "KV_tributary_saas",
        "KV_tributary_domain",
    ] {
        assert!(streams.iter().any(|s| s == name), "{name} in {streams:?}");
    }
    source.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_never_loses_a_webhook_answered_200() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("shopdb").await?;
    let db = pg.connect("shopdb").await?;
    db.batch_execute(ORDERS_DDL).await?;
    db.batch_execute("CREATE PUBLICATION pub_shopdb FOR TABLE orders")
        .await?;
    let dir = tempfile::tempdir()?;
    let listen: SocketAddr = ([127, 0, 0, 1], tributary_testkit::free_port()).into();
    let mut text = config_text(&pg, &nats.url(), &[SourceSpec::new("shopdb", "shopdb")]);
    text.push_str(&shopify_block(listen, None));
    let config = write_config(dir.path(), &text)?;
    let client = nats.connect().await?;
    let url = format!("http://{listen}/webhooks/shopify/web");

    let bridge = Bridge::spawn(&config)?;
    wait_listening(listen, &bridge).await?;
    // Shopify's retries (compressed): the deliveries refused during the outage come back.
    let policy = RetryPolicy {
        max_attempts: 30,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..RetryPolicy::default()
    };
    let sender = sender(&url, policy)?;
    let hooks = synthetic_hooks(3000);
    let burst = {
        let sender = sender.clone();
        let hooks = hooks.clone();
        tokio::spawn(async move {
            sender
                .send_batch(
                    hooks,
                    &BatchOptions {
                        duplicate_rate: 0.10,
                        shuffle: true,
                        concurrency: 16,
                        seed: 9,
                        ..BatchOptions::default()
                    },
                )
                .await
        })
    };
    // Kill mid-burst, twice.
    let mut bridge = bridge;
    for round in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let target = 700 * (round + 1);
        while stream_count(&client, "SAAS_SHOPIFY").await < target {
            if Instant::now() > deadline {
                bail!("webhooks did not arrive\n{}", bridge.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bridge.kill9().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        bridge = Bridge::spawn(&config)?;
        wait_listening(listen, &bridge).await?;
    }
    let report = burst.await?;
    let answered_200: BTreeSet<String> = sender
        .client()
        .attempts()
        .iter()
        .filter(|a| a.status == Some(200))
        .filter_map(|a| {
            a.headers
                .iter()
                .find(|(k, _)| k == "X-Shopify-Event-Id")
                .map(|(_, v)| format!("web:{v}"))
        })
        .collect();
    assert!(
        report.sent.iter().all(|s| s.outcome.delivered),
        "every event was delivered in the end"
    );
    let raw = read_all(&client, "SAAS_SHOPIFY").await?;
    let ids: Vec<String> = raw.iter().map(|(id, _, _)| id.clone()).collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "a webhook was stored twice");
    let lost: Vec<&String> = answered_200.difference(&unique).collect();
    assert!(lost.is_empty(), "answered 200 but not stored: {lost:?}");
    assert_eq!(unique.len(), hooks.len(), "every event stored once");

    // And the domain events: one per event, after the restarts.
    let events = retail_until(&client, |e| e.len() >= hooks.len()).await?;
    let ids: BTreeMap<String, usize> = events.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.meta.clone().unwrap_or_default().event_id)
            .or_default() += 1;
        m
    });
    assert_eq!(ids.len(), hooks.len());
    assert!(ids.values().all(|n| *n == 1), "a domain event twice");
    bridge.stop().await?;
    Ok(())
}

async fn wait_listening(addr: SocketAddr, bridge: &Bridge) -> Result<()> {
    wait_until(Duration::from_secs(60), async || {
        Ok(match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => Check::Done(()),
            Err(_) => Check::Pending(format!(
                "the webhook server never listened\n{}",
                bridge.log()
            )),
        })
    })
    .await?;
    Ok(())
}

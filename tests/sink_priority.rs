//! Degrade, don't stall: with the Shopify emulator throttling hard (a small cost bucket that
//! refills slowly), a backlog of customer updates queued *before* stock levels and
//! fulfilments does not hold them up. The sink's high class (orders, fulfilments, stock) has
//! its own consumer and the refill of the bucket; the low class (customers) waits while the
//! bucket is below the high class's reserve and catches up afterwards. Every event is applied
//! exactly once and each entity's versions in order.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use support::*;
use tributary_proto::retail::v1::{
    domain_event::Entity, Customer, DomainEvent, EventMeta, ExternalId, Fulfillment,
    InventoryLevel, Order,
};
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{self, ShopifyOptions};

const CUSTOMERS: usize = 40;
const SKUS: usize = 12;
const ORDERS: usize = 12;
/// Versions of each customer and each stock level.
const VERSIONS: u64 = 3;

fn event(entity: &str, name: &str, key: &str, version: u64, body: Entity) -> DomainEvent {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    DomainEvent {
        meta: Some(EventMeta {
            event_id: format!("test/{entity}/{key}/{version}"),
            entity: entity.into(),
            event: name.into(),
            entity_key: key.into(),
            entity_version: version,
            system_of_record: "erp".into(),
            event_time_micros: now,
            ..Default::default()
        }),
        entity: Some(body),
    }
}

fn customer(i: usize, version: u64) -> DomainEvent {
    let key = format!("C-{i}");
    event(
        "customer",
        "updated",
        &key,
        version,
        Entity::Customer(Customer {
            customer_id: key.clone(),
            email: format!("c{i}@example.com"),
            first_name: "Ada".into(),
            last_name: format!("V{version}"),
            ..Default::default()
        }),
    )
}

fn level(sku: &str, version: u64) -> DomainEvent {
    let available = 10 * version as i64;
    event(
        "inventory",
        "level_changed",
        &format!("{sku}@DC1"),
        version,
        Entity::Inventory(InventoryLevel {
            sku: sku.into(),
            location: "DC1".into(),
            on_hand: available,
            available,
            reporting_system: "erp".into(),
            ..Default::default()
        }),
    )
}

fn placed(order: &str, shop_id: &str) -> DomainEvent {
    event(
        "order",
        "placed",
        order,
        1,
        Entity::Order(Order {
            order_id: order.into(),
            status: "placed".into(),
            external_ids: vec![ExternalId {
                system: "shopify".into(),
                id: shop_id.into(),
            }],
            ..Default::default()
        }),
    )
}

fn shipped(order: &str) -> DomainEvent {
    event(
        "fulfillment",
        "updated",
        order,
        1,
        Entity::Fulfillment(Fulfillment {
            fulfillment_id: format!("F-{order}"),
            order_id: order.into(),
            status: "shipped".into(),
            tracking_number: format!("TRK-{order}"),
            carrier: "DHL".into(),
            ..Default::default()
        }),
    )
}

/// The value of a gauge series in a /metrics text (None: no such series).
fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_and_fulfilments_overtake_queued_customer_updates_under_throttling() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    // Hard throttling: 200 points, 60 a second (a mutation costs 10), against a backlog of
    // about 2,000 points.
    let shop = shopify::start(ShopifyOptions {
        throttling: true,
        bucket_size: 200.0,
        restore_rate: 60.0,
        ..Default::default()
    })
    .await?;
    let dc1 = shop.add_location("DC1");
    let skus: Vec<String> = (1..=SKUS).map(|i| format!("SKU-{i}")).collect();
    let items = shop_catalog(&shop, skus.clone(), "5.00");
    let customers: Vec<String> = (1..=CUSTOMERS)
        .map(|i| shop.add_customer(&format!("c{i}@example.com"), "Ada", "V0"))
        .collect();
    let orders: Vec<(String, String)> = (1..=ORDERS)
        .map(|i| {
            let o = shop.add_order("a@example.com", &[("SKU-1", 1, "5.00")], None);
            (format!("SO-{i}"), o.order_id)
        })
        .collect();

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         apply = [\"inventory\", \"fulfillments\", \"customers\"]\n\
         [sinks.shopify.delivery]\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nwait_retry_ms = 300\n\
         [sinks.shopify.priority]\nhigh = [\"order\", \"fulfillment\", \"inventory_level\"]\n",
        shop.base_url()
    ));
    let http = text
        .split("http_listen = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_default()
        .to_string();
    let config = write_config(dir.path(), &text)?;
    // A first run provisions the streams; the backlog builds up while the bridge is down.
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    bridge.stop().await?;

    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    let publish = async |ev: DomainEvent| -> Result<()> {
        let meta = ev.meta.clone().unwrap_or_default();
        js.publish(
            format!("retail.v1.{}.{}", meta.entity, meta.event),
            ev.encode_to_vec().into(),
        )
        .await?
        .await?;
        Ok(())
    };
    // The customer updates first: without classes the sink would apply them all before
    // any stock level or fulfilment.
    for v in 1..=VERSIONS {
        for i in 1..=CUSTOMERS {
            publish(customer(i, v)).await?;
        }
    }
    for (order, shop_id) in &orders {
        publish(placed(order, shop_id)).await?;
        publish(shipped(order)).await?;
    }
    for v in 1..=VERSIONS {
        for sku in &skus {
            publish(level(sku, v)).await?;
        }
    }

    let bridge = Bridge::spawn(&config)?;
    let started = Instant::now();
    let customer_writes = || -> u64 { customers.iter().map(|c| shop.entity_writes(c)).sum() };
    let high_done = || {
        skus.iter().all(|sku| {
            shop.inventory(&items[sku], &dc1)
                .is_some_and(|l| l.available == 10 * VERSIONS as i64)
        }) && orders
            .iter()
            .all(|(_, shop_id)| !shop.fulfillments(shop_id).is_empty())
    };
    // Polled closely: the moment the high class is through is what the test is about.
    let (high_secs, customers_then, low_lag) = loop {
        if high_done() {
            let metrics = http_get(&http, "/metrics").await.map(|(_, b)| b)?;
            let lag = gauge(
                &metrics,
                "tributary_sink_lag_seconds{sink=\"shopify\",class=\"low\",partition=\"\"}",
            );
            break (started.elapsed().as_secs_f64(), customer_writes(), lag);
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!(
                "stock and fulfilments not applied within 120 s\nbridge log:\n{}",
                bridge.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all_customer_writes = (CUSTOMERS as u64) * VERSIONS;
    println!(
        "high class through after {high_secs:.1} s with {customers_then} of {all_customer_writes} \
         customer updates applied; low-class lag then {low_lag:?} s"
    );
    assert!(
        customers_then < all_customer_writes / 2,
        "the high class was through after {high_secs:.1} s, but {customers_then} of the \
         {all_customer_writes} customer updates queued before it were already applied"
    );
    assert!(
        low_lag.is_some_and(|l| l > 0.0),
        "the low class's lag while its updates wait: {low_lag:?}"
    );

    // Then the low class catches up.
    wait_until(Duration::from_secs(180), async || {
        let done = customers
            .iter()
            .filter(|c| {
                shop.customer(c)
                    .is_some_and(|c| c.last_name.as_deref() == Some("V3"))
            })
            .count();
        Ok(if done == CUSTOMERS {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "{done} of {CUSTOMERS} customers at their last version\nbridge log:\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    wait_quiescent(&client, Duration::from_secs(60)).await?;

    // Exactly once, in order: one write per version, the last version last.
    for (i, c) in customers.iter().enumerate() {
        assert_eq!(
            shop.entity_writes(c),
            VERSIONS,
            "writes of customer {}",
            i + 1
        );
    }
    let history = shop.with_state(|s| s.inventory_history.clone());
    for sku in &skus {
        let item = items[sku]
            .rsplit('/')
            .next()
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("inventory item id of {sku}"))?;
        let seen: Vec<i64> = history
            .iter()
            .filter(|h| h.item == item && h.name == "available")
            .map(|h| h.quantity_after)
            .collect();
        let wanted: Vec<i64> = (1..=VERSIONS).map(|v| 10 * v as i64).collect();
        assert_eq!(seen, wanted, "stock levels of {sku}, in the order applied");
    }
    for (order, shop_id) in &orders {
        assert_eq!(
            shop.fulfillments(shop_id).len(),
            1,
            "fulfilments of {order}"
        );
    }
    assert!(dead_letters(&client).await?.is_empty(), "nothing is parked");
    bridge.stop().await?;
    Ok(())
}

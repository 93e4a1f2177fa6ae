//! Sink workers: order and stock changes in the sample ERP database (config/retail/) become
//! domain events, and the sinks apply them to the WMS and Shopify emulators exactly once —
//! across a `kill -9` of the bridge, injected 5xx / 429 / THROTTLED / lost answers — in
//! per-entity order; an event the target refuses goes to `DLQ_SINKS` and later events apply.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt;
use support::*;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{self, ShopifyOptions};
use tributary_sandbox::wms::{self, WmsOptions, WmsStatus};
use tributary_sandbox::Fault;

const SKUS: usize = 5;

/// Reads every domain event of RETAIL in order (msg id, event).
async fn retail_events(nats: &async_nats::Client) -> Result<Vec<DomainEvent>> {
    let js = jetstream::new(nats.clone());
    let mut stream = js.get_stream("RETAIL").await?;
    let n = stream.info().await?.state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading RETAIL timed out")?
            .context("stream ended")??;
        out.push(DomainEvent::decode(msg.payload.clone())?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_reach_the_wms_and_stock_reaches_shopify_exactly_once() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;

    // Targets: the WMS (rate limited at 20/s by default) and Shopify (cost bucket on).
    let wms = wms::start(WmsOptions::default()).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let items = shop_catalog(&shop, (1..=SKUS).map(|i| format!("SKU-{i}")), "9.50");

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n\
         [sinks.wms.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nrequest_timeout_ms = 1500\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         [sinks.shopify.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nrequest_timeout_ms = 1500\n",
        wms.base_url(),
        shop.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;

    // Faults from the start: 5xx, throttling, and an answer lost after the write applied.
    wms.faults().fail_next(2, Fault::ServerError(503));
    wms.faults().fail_next(1, Fault::RateLimited);
    wms.faults()
        .fail_next(1, Fault::TimeoutAfterApply(Duration::from_secs(3)));
    wms.faults().fail_randomly(Fault::ServerError(502), 0.1);
    shop.faults().fail_next(2, Fault::ServerError(500));
    shop.faults().fail_next(2, Fault::RateLimited);
    shop.faults().fail_randomly(Fault::ServerError(503), 0.1);

    erp.batch_execute("INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee')")
        .await?;
    let mut last_stock = BTreeMap::new();
    let orders: Vec<String> = (1..=12).map(|i| format!("SO-{i}")).collect();
    let write_round = |round: usize| {
        let mut sql = String::new();
        for (n, o) in orders.iter().enumerate() {
            if n % 2 != round {
                continue;
            }
            sql.push_str(&format!(
                "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('{o}', 1, 'placed', 10);\
                 INSERT INTO order_lines VALUES ('{o}', 1, 'SKU-1', 2, 5), ('{o}', 2, 'SKU-{}', 1, 5); COMMIT;\
                 UPDATE sales_orders SET status = 'confirmed' WHERE order_no = '{o}';",
                n % SKUS + 1
            ));
        }
        sql
    };
    erp.batch_execute(&write_round(0)).await?;
    for step in 0..10i64 {
        for i in 1..=SKUS {
            let q = 100 + step * 10 + i as i64;
            erp.execute(
                "INSERT INTO stock (sku, location, on_hand) VALUES ($1, 'DC1', $2) \
                 ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now()",
                &[&format!("SKU-{i}"), &(q as i32)],
            )
            .await?;
            last_stock.insert(format!("SKU-{i}"), q);
        }
    }
    // kill -9 while events are being applied, then start again.
    let bridge = {
        tokio::time::sleep(Duration::from_millis(300)).await;
        bridge.kill9().await?;
        let b = Bridge::spawn(&config)?;
        wait_streaming(&pg, &["slot_erp", "slot_pos"], &b).await?;
        b
    };
    // A definite error: a line the WMS refuses (quantity 0) parks the release event.
    erp.batch_execute(
        "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-BAD', 1, 'placed', 1);\
         INSERT INTO order_lines VALUES ('SO-BAD', 1, 'SKU-1', 0, 1); COMMIT;\
         UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-BAD';",
    )
    .await?;
    erp.batch_execute(&write_round(1)).await?;
    erp.batch_execute("UPDATE sales_orders SET status = 'cancelled' WHERE order_no = 'SO-3'")
        .await?;
    for i in 1..=SKUS {
        let q = 7 * i as i64;
        erp.execute(
            "UPDATE stock SET on_hand = $2, updated_at = now() WHERE sku = $1 AND location = 'DC1'",
            &[&format!("SKU-{i}"), &(q as i32)],
        )
        .await?;
        last_stock.insert(format!("SKU-{i}"), q);
    }

    // Wait for the final state.
    let client = nats.connect().await?;
    wait_until(Duration::from_secs(120), async || {
        let wms_done = orders.iter().all(|o| {
            wms.order_by_reference(o).is_some_and(|w| {
                w.products.len() == 2 && (o != "SO-3" || w.status == WmsStatus::Cancelled)
            })
        });
        let shop_done = last_stock.iter().all(|(sku, q)| {
            shop.inventory(&items[sku], &dc1)
                .is_some_and(|l| l.available == *q)
        });
        let dlq = dead_letters(&client).await?;
        Ok(if wms_done && shop_done && !dlq.is_empty() {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "targets did not reach the final state (wms {wms_done}, shopify {shop_done}, dlq {})\nbridge log:\n{}",
                dlq.len(),
                bridge.log()
            ))
        })
    })
    .await?;
    // Every consumer idle: no straggling redelivery can happen after this.
    wait_quiescent(&client, Duration::from_secs(60)).await?;

    // Exactly once: one order per reference, one side effect per idempotency key.
    let events = retail_events(&client).await?;
    let mut releases = 0;
    let mut stock_events = 0;
    for ev in &events {
        let meta = ev.meta.clone().unwrap_or_default();
        match &ev.entity {
            Some(Entity::Order(o)) if meta.event == "status_changed" && o.order_id != "SO-BAD" => {
                let key = tributary_sinks::idempotency_key("wms", &meta.event_id);
                assert_eq!(
                    wms.key_applies(&key),
                    1,
                    "WMS writes for {} ({})",
                    o.order_id,
                    o.status
                );
                releases += 1;
            }
            Some(Entity::Inventory(_)) => {
                let key = tributary_sinks::idempotency_key("shopify", &meta.event_id);
                assert_eq!(
                    shop.idempotent_applies(&key),
                    1,
                    "Shopify writes for {}",
                    meta.event_id
                );
                stock_events += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        releases,
        orders.len() + 1,
        "12 releases and one cancellation"
    );
    assert_eq!(stock_events, SKUS * 11);
    for o in &orders {
        assert_eq!(wms.reference_creates(o), 1, "orders created for {o}");
    }
    assert!(wms.order_by_reference("SO-BAD").is_none());
    assert!(wms.faults().injected() > 0 && shop.faults().injected() > 0);

    // The refused event is parked with its reason; later events applied (checked above).
    let dlq = dead_letters(&client).await?;
    assert_eq!(dlq.len(), 1, "one dead letter");
    let d = &dlq[0];
    assert_eq!(d.subject.as_str(), "dlq.sink.wms");
    assert!(
        header(d, "Tributary-Reason").contains("422"),
        "{}",
        header(d, "Tributary-Reason")
    );
    assert!(header(d, "Tributary-Target-Response").contains("quantity"));
    let parked = DomainEvent::decode(d.payload.clone())?;
    assert!(matches!(&parked.entity, Some(Entity::Order(o)) if o.order_id == "SO-BAD"));

    // `tributary status` shows each sink's consumer position, pending events and dead letters.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["status", "--format", "json", "--config"])
        .arg(&config)
        .output()
        .await?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let sinks = status["sinks"].as_array().cloned().unwrap_or_default();
    let wms_status = sinks
        .iter()
        .find(|s| s["sink"] == "wms")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(wms_status["dead_letters"], 1, "{status}");
    assert!(
        wms_status["ack_floor"].as_u64().is_some_and(|f| f > 0),
        "{status}"
    );
    assert!(sinks.iter().any(|s| s["sink"] == "shopify"), "{status}");

    let code = bridge.stop().await?;
    assert_eq!(code, 0);
    Ok(())
}

//! Orders held back in the sample ERP (config/retail/) on purpose: placed hours ago and never
//! confirmed. Through the whole chain — ERP rows → CDC → domain stage → RETAIL → tracker —
//! `tributary orders stuck --older-than 30m` lists exactly those, their `order.stuck` is
//! published once each, a return never refunded raises `refund.delayed` once, confirmed,
//! shipped, fresh and cancelled orders are not listed, and the latency histograms sum to the
//! ground truth computed from the domain events' own timestamps.

#[path = "support/o2c.rs"]
mod o2c;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use o2c::{assert_histogram, consumed, orders_show, orders_stuck, value};
use support::*;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;

/// Milestone times per order as the domain events on RETAIL show them:
/// order → (placed, confirmed, shipped), business microseconds.
async fn ground_truth(
    nats: &async_nats::Client,
) -> Result<(usize, BTreeMap<String, [Option<i64>; 3]>)> {
    let mut out: BTreeMap<String, [Option<i64>; 3]> = BTreeMap::new();
    let mut followed = 0;
    for msg in read_all(nats, "RETAIL").await? {
        let event = DomainEvent::decode(msg.payload.clone())?;
        let meta = event.meta.clone().unwrap_or_default();
        match event.entity {
            Some(Entity::Order(o)) => {
                followed += 1;
                let times = out.entry(o.order_id.clone()).or_default();
                if meta.event == "placed" {
                    times[0] = Some(o.placed_at_micros);
                }
                if o.status == "confirmed" && times[1].is_none() {
                    times[1] = Some(meta.event_time_micros);
                }
            }
            Some(Entity::Fulfillment(f)) => {
                followed += 1;
                if f.status == "shipped" {
                    out.entry(f.order_id.clone()).or_default()[2] = Some(f.shipped_at_micros);
                }
            }
            Some(Entity::ProductReturn(_)) | Some(Entity::Refund(_)) => followed += 1,
            _ => {}
        }
    }
    Ok((followed, out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_held_back_in_the_erp_are_listed_and_flagged_once() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(
        "\n[tracker]\nsweep_interval_secs = 1\nunallocated_after_secs = 1800\n\
         unshipped_after_secs = 3600\nrefund_delayed_after_secs = 86400\n",
    );
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("http_listen = "))
        .map(|s| s.trim_matches('"').to_string())
        .expect("http_listen");
    let config = write_config(dir.path(), &text)?;
    let config_arg = config.to_string_lossy().to_string();
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;

    let erp = pg.connect("erp").await?;
    erp.batch_execute(
        "INSERT INTO customers VALUES (1, 'a@example.com', 'Ann', 'Lee', NULL, false, now());",
    )
    .await?;
    // E-0…E-7 placed 3 hours ago, a minute apart; E-8 just now; E-9 placed and cancelled.
    for i in 0..10 {
        let placed = if i == 8 {
            "now()".to_string()
        } else {
            format!("now() - interval '3 hours' + interval '{i} minutes'")
        };
        erp.execute(
            &format!(
                "INSERT INTO sales_orders (order_no, customer_id, status, total, placed_at) \
                 VALUES ($1, 1, 'placed', 10.00, {placed})"
            ),
            &[&format!("E-{i}")],
        )
        .await?;
    }
    // E-0…E-5 confirmed; E-0…E-3 shipped; E-6, E-7 held back; E-9 cancelled.
    for i in 0..6 {
        erp.execute(
            "UPDATE sales_orders SET status = 'confirmed' WHERE order_no = $1",
            &[&format!("E-{i}")],
        )
        .await?;
    }
    for i in 0..4 {
        erp.execute(
            "INSERT INTO shipments VALUES ($1, $2, 'DHL', $3, 'shipped', now())",
            &[&format!("S-{i}"), &format!("E-{i}"), &format!("T-{i}")],
        )
        .await?;
    }
    erp.batch_execute(
        "UPDATE sales_orders SET status = 'cancelled' WHERE order_no = 'E-9';
         INSERT INTO returns (return_no, order_no, sku, quantity, reason, refund_amount, created_at)
         VALUES ('RET-0', 'E-0', 'SKU-1', 1, 'damaged', 10.00, now() - interval '2 days');",
    )
    .await?;

    // Every followed event on RETAIL consumed by the tracker, then swept.
    let client = nats.connect().await?;
    let metrics = wait_until(Duration::from_secs(120), async || {
        let (followed, _) = ground_truth(&client).await?;
        let m = http_get(&addr, "/metrics")
            .await
            .map(|r| r.1)
            .unwrap_or_default();
        let consumed = consumed(&m);
        // 10 placed, 6 confirmed, 4 shipped, 1 cancelled, 1 return.
        Ok(
            if followed >= 22
                && consumed >= followed as f64
                && value(&m, "tributary_o2c_exception_queue_depth") >= 3.0
            {
                Check::Done(m)
            } else {
                Check::Pending(format!(
                    "RETAIL {followed}, consumed {consumed}\n{}",
                    bridge.log()
                ))
            },
        )
    })
    .await?;

    let listed = orders_stuck(&config_arg, "30m").await?;
    let listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|(o, w, _)| (o.as_str(), w.as_str()))
        .collect();
    assert_eq!(listed, vec![("E-6", "unallocated"), ("E-7", "unallocated")]);

    let shown = orders_show(&config_arg, "E-0").await?;
    for m in ["placed", "confirmed", "shipped"] {
        assert!(
            shown["order"]["milestones"][m].is_object(),
            "E-0 has no {m}: {shown}"
        );
    }
    assert_eq!(shown["returns"][0]["key"], "RET-0");

    // Exceptions once each: a few more sweeps publish nothing new.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut stuck = Vec::new();
    let mut delayed = Vec::new();
    for msg in read_all(&client, "O2C").await? {
        let body: serde_json::Value = serde_json::from_slice(&msg.payload)?;
        let key = body["key"].as_str().unwrap_or("").to_string();
        match msg.subject.as_str() {
            "o2c.v1.order.stuck" => stuck.push(key),
            "o2c.v1.refund.delayed" => delayed.push(key),
            _ => {}
        }
    }
    stuck.sort();
    assert_eq!(stuck, vec!["E-6", "E-7"]);
    assert_eq!(delayed, vec!["RET-0"]);

    // The KPIs against the domain events' own timestamps.
    let (_, truth) = ground_truth(&client).await?;
    let (mut confirm, mut ship) = ((0u64, 0f64), (0u64, 0f64));
    for [placed, confirmed, shipped] in truth.values() {
        if let (Some(p), Some(c)) = (placed, confirmed) {
            confirm.0 += 1;
            confirm.1 += (c - p).max(0) as f64 / 1e6;
        }
        if let (Some(p), Some(s)) = (placed, shipped) {
            ship.0 += 1;
            ship.1 += (s - p).max(0) as f64 / 1e6;
        }
    }
    assert_eq!((confirm.0, ship.0), (6, 4));
    for (stage, (count, sum)) in [
        ("placed_to_confirmed", confirm),
        ("placed_to_shipped", ship),
    ] {
        let labels = format!("{{stage=\"{stage}\"}}");
        assert_histogram(&metrics, "tributary_o2c_stage_seconds", &labels, count, sum);
    }
    assert_eq!(value(&metrics, "tributary_o2c_orders_unallocated"), 2.0);
    assert_eq!(value(&metrics, "tributary_o2c_orders_unshipped"), 0.0);
    assert_eq!(value(&metrics, "tributary_o2c_refunds_delayed"), 1.0);
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

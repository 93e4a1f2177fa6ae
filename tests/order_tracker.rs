//! The order-to-cash tracker alone (issue #14, items 2 and 3): domain events published
//! straight onto RETAIL — every one twice, the second under another `Nats-Msg-Id` as a
//! redelivery beyond the duplicate window would be — with business times days in the past.
//! The tracker's KV records hold the right milestones; `orders stuck --older-than 30m` lists
//! exactly the orders held back on purpose, and `order.stuck` / `refund.delayed` are
//! published once each, also after a restart; the stage latency and refund cycle histograms
//! sum to the ground truth computed here from the events' timestamps; and a replay of the
//! whole stream (the tracker's consumer deleted and created again from sequence 1) changes
//! no record, publishes nothing and counts nothing.

#[path = "support/o2c.rs"]
mod o2c;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use o2c::*;
use support::*;
use tributary_proto::retail::v1::{
    domain_event::Entity, DomainEvent, ExternalId, Order, Refund, Return,
};
use tributary_testkit::NatsServer;

/// What the test publishes and what it expects from it.
#[derive(Default)]
struct Plan {
    events: Vec<DomainEvent>,
    /// stage → (count, sum of seconds), from the events' own times.
    stages: BTreeMap<&'static str, (u64, f64)>,
    refund_cycles: (u64, f64),
    /// Orders held back: (order, waiting step).
    stuck: Vec<(String, &'static str)>,
    delayed_returns: Vec<String>,
    /// order → milestones it must reach.
    milestones: BTreeMap<String, Vec<&'static str>>,
}

impl Plan {
    fn stage(&mut self, name: &'static str, from: i64, to: i64) {
        let e = self.stages.entry(name).or_default();
        e.0 += 1;
        e.1 += (to - from) as f64 / 1e6;
    }
}

fn plan(now: i64) -> Plan {
    let mut p = Plan::default();
    let base = now - 2 * 86_400 * S;
    for i in 0..20usize {
        let id = format!("SO-{i}");
        let placed = base + (i as i64) * 10 * S;
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        p.events.push(event(
            "order",
            "placed",
            &id,
            next(),
            placed + S,
            order(&id, "placed", placed),
        ));
        let mut reached = vec!["placed"];
        if (15..18).contains(&i) {
            p.stuck.push((id.clone(), "unallocated"));
            p.milestones.insert(id, reached);
            continue;
        }
        let confirmed = placed + (30 + i as i64) * S;
        p.events.push(event(
            "order",
            "status_changed",
            &id,
            next(),
            confirmed,
            order(&id, "confirmed", 0),
        ));
        p.stage("placed_to_confirmed", placed, confirmed);
        reached.push("confirmed");
        if i >= 18 {
            p.stuck.push((id.clone(), "unshipped"));
            p.milestones.insert(id, reached);
            continue;
        }
        let released = confirmed + (60 + i as i64) * S;
        p.events.push(event(
            "fulfillment",
            "updated",
            &id,
            next(),
            released,
            fulfillment(&id, "pending", 0),
        ));
        p.stage("confirmed_to_released", confirmed, released);
        // A WMS step that shows no new milestone.
        p.events.push(event(
            "fulfillment",
            "updated",
            &id,
            next(),
            released + S,
            fulfillment(&id, "picked", 0),
        ));
        let shipped = released + (120 + 2 * i as i64) * S;
        // The commit comes a little after the WMS's shipped_at: the latter is the milestone.
        p.events.push(event(
            "fulfillment",
            "updated",
            &id,
            next(),
            shipped + 7 * S,
            fulfillment(&id, "shipped", shipped),
        ));
        p.stage("released_to_shipped", released, shipped);
        p.stage("placed_to_shipped", placed, shipped);
        reached.extend(["released", "shipped"]);
        if i < 10 {
            let delivered = shipped + 3600 * S;
            p.events.push(event(
                "fulfillment",
                "updated",
                &id,
                next(),
                delivered,
                fulfillment(&id, "delivered", shipped),
            ));
            p.stage("shipped_to_delivered", shipped, delivered);
            reached.push("delivered");
        }
        if i < 5 {
            let rid = format!("R-{i}");
            let requested = shipped + 7200 * S;
            p.events.push(event(
                "return",
                "created",
                &rid,
                1,
                requested + S,
                Entity::ProductReturn(Return {
                    return_id: rid.clone(),
                    order_id: id.clone(),
                    state: "requested".into(),
                    requested_at_micros: requested,
                    ..Default::default()
                }),
            ));
            if i < 3 {
                let refunded = requested + (3600 + 60 * i as i64) * S;
                p.events.push(event(
                    "refund",
                    "created",
                    &format!("RF-{i}"),
                    1,
                    refunded + S,
                    Entity::Refund(Refund {
                        refund_id: format!("RF-{i}"),
                        order_id: id.clone(),
                        return_id: rid.clone(),
                        state: "refunded".into(),
                        refunded_at_micros: refunded,
                        ..Default::default()
                    }),
                ));
                p.refund_cycles.0 += 1;
                p.refund_cycles.1 += (refunded - requested) as f64 / 1e6;
            } else {
                p.delayed_returns.push(rid);
            }
        }
        p.milestones.insert(id, reached);
    }
    // Placed a minute ago: waiting, but not for 30 minutes.
    p.events.push(event(
        "order",
        "placed",
        "SO-fresh",
        1,
        now - 60 * S,
        order("SO-fresh", "placed", now - 60 * S),
    ));
    p.milestones.insert("SO-fresh".into(), vec!["placed"]);
    // Not followed by the tracker.
    p.events.push(event(
        "customer",
        "updated",
        "C-1",
        1,
        now,
        Entity::Customer(Default::default()),
    ));
    p
}

async fn scrape(addr: &str) -> Result<String> {
    match http_get(addr, "/metrics").await? {
        (200, body) => Ok(body),
        (code, body) => anyhow::bail!("/metrics answered {code}: {body}"),
    }
}

/// Waits until the bridge consumed `total` events and swept at least once after that.
async fn settled(addr: &str, bridge: &Bridge, total: f64) -> Result<String> {
    let sweeps = wait_until(Duration::from_secs(90), async || {
        let m = scrape(addr).await.unwrap_or_default();
        Ok(if consumed(&m) >= total {
            Check::Done(value(&m, "tributary_o2c_sweeps_total"))
        } else {
            let o2c: Vec<&str> = m.lines().filter(|l| l.contains("o2c_events")).collect();
            Check::Pending(format!(
                "consumed {} of {total}: {o2c:?}\n{}",
                consumed(&m),
                bridge.log()
            ))
        })
    })
    .await?;
    wait_until(Duration::from_secs(30), async || {
        let m = scrape(addr).await.unwrap_or_default();
        Ok(if value(&m, "tributary_o2c_sweeps_total") >= sweeps + 2.0 {
            Check::Done(m)
        } else {
            Check::Pending("no sweep since".into())
        })
    })
    .await
}

/// Every tracker record: KV key → (revision, value).
async fn records(js: &jetstream::Context) -> Result<BTreeMap<String, (u64, Vec<u8>)>> {
    use futures::TryStreamExt as _;
    let kv = js.get_key_value("tributary_tracker").await?;
    let keys: Vec<String> = kv.keys().await?.try_collect().await?;
    let mut out = BTreeMap::new();
    for k in keys {
        if let Some(e) = kv.entry(&k).await? {
            out.insert(k, (e.revision, e.value.to_vec()));
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_follows_orders_flags_stuck_ones_once_and_replays_without_counting_twice(
) -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    create_retail(&js).await?;
    let now = now_micros();
    let plan = plan(now);
    for e in &plan.events {
        let id = e
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        publish(&js, e, &[id.clone(), format!("{id}#again")]).await?;
    }
    // The tracker's consumer is not given the customer event (its filter).
    let followed = plan
        .events
        .iter()
        .filter(|e| e.meta.as_ref().is_some_and(|m| m.entity != "customer"))
        .count();
    let total = (followed * 2) as f64;

    let dir = tempfile::tempdir()?;
    let port = tributary_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let text = format!(
        "http_listen = \"{addr}\"\n[nats]\nservers = [\"{}\"]\n\
         [tracker]\nsweep_interval_secs = 1\nunallocated_after_secs = 1800\n\
         unshipped_after_secs = 3600\nrefund_delayed_after_secs = 86400\n",
        nats.url()
    );
    let config = write_config(dir.path(), &text)?;
    let config_arg = config.to_string_lossy().to_string();
    let bridge = Bridge::spawn(&config)?;
    let metrics = settled(&addr, &bridge, total).await?;

    // Milestones per order, from the records.
    let shown = orders_show(&config_arg, "SO-3").await?;
    assert_eq!(shown["returns"][0]["key"], "R-3");
    for (id, expected) in &plan.milestones {
        let shown = orders_show(&config_arg, id).await?;
        let mut got: Vec<String> = shown["order"]["milestones"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "milestones of {id}");
    }
    let (code, table, _) = tributary(&["orders", "show", "SO-1", "-c", &config_arg]).await?;
    assert!(
        code == 0 && table.contains("fulfillment.updated") && table.contains("picked"),
        "{table}"
    );

    // The held-back orders, exactly, each with its order.stuck published.
    let mut listed = orders_stuck(&config_arg, "30m").await?;
    listed.sort();
    let mut want: Vec<(String, String, bool)> = plan
        .stuck
        .iter()
        .map(|(o, w)| (o.clone(), w.to_string(), true))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    let (_, table, _) =
        tributary(&["orders", "stuck", "--older-than", "30m", "-c", &config_arg]).await?;
    assert!(
        want.iter().all(|(o, _, _)| table.contains(o.as_str())) && !table.contains("SO-fresh"),
        "{table}"
    );

    // KPIs: the histograms against the ground truth, the gauges against the plan.
    for (stage, (count, sum)) in &plan.stages {
        let labels = format!("{{stage=\"{stage}\"}}");
        assert_histogram(
            &metrics,
            "tributary_o2c_stage_seconds",
            &labels,
            *count,
            *sum,
        );
    }
    let (count, sum) = plan.refund_cycles;
    assert_histogram(
        &metrics,
        "tributary_o2c_refund_cycle_seconds",
        "",
        count,
        sum,
    );
    let gauges = |m: &str| {
        [
            "tributary_o2c_orders_unallocated",
            "tributary_o2c_orders_unshipped",
            "tributary_o2c_refunds_delayed",
            "tributary_o2c_exception_queue_depth",
        ]
        .map(|g| value(m, g))
    };
    assert_eq!(gauges(&metrics), [3.0, 2.0, 2.0, 7.0]);
    let replayed_twice = value(&metrics, "tributary_o2c_events_total{outcome=\"repeated\"}");
    assert_eq!(replayed_twice, followed as f64, "every event came twice");

    // Exceptions: once each.
    let check_exceptions = async || -> Result<()> {
        let subjects = o2c_subjects(&client).await?;
        let mut stuck = subjects
            .get("o2c.v1.order.stuck")
            .cloned()
            .unwrap_or_default();
        stuck.sort();
        let mut want: Vec<String> = plan.stuck.iter().map(|(o, _)| o.clone()).collect();
        want.sort();
        assert_eq!(stuck, want, "order.stuck once per held order");
        let mut delayed = subjects
            .get("o2c.v1.refund.delayed")
            .cloned()
            .unwrap_or_default();
        delayed.sort();
        assert_eq!(
            delayed, plan.delayed_returns,
            "refund.delayed once per return"
        );
        let shipped = subjects
            .get("o2c.v1.order.shipped")
            .map(Vec::len)
            .unwrap_or(0);
        assert_eq!(shipped, 15, "one shipped milestone per shipped order");
        Ok(())
    };
    check_exceptions().await?;
    let o2c_before = read_all(&client, "O2C").await?.len();
    let records_before = records(&js).await?;

    // A restart: nothing is published again.
    assert_eq!(bridge.stop().await?, 0);
    let bridge = Bridge::spawn(&config)?;
    let metrics = settled(&addr, &bridge, 0.0).await?;
    check_exceptions().await?;
    assert_eq!(gauges(&metrics), [3.0, 2.0, 2.0, 7.0]);
    assert_eq!(
        value(
            &metrics,
            "tributary_o2c_exceptions_total{kind=\"order_stuck\"}"
        ),
        0.0
    );

    // A replay of the whole stream: the consumer deleted, the tracker starts from sequence 1.
    assert_eq!(bridge.stop().await?, 0);
    js.get_stream("RETAIL")
        .await?
        .delete_consumer("tributary_tracker")
        .await?;
    let bridge = Bridge::spawn(&config)?;
    let metrics = settled(&addr, &bridge, total).await?;
    assert_eq!(
        value(&metrics, "tributary_o2c_events_total{outcome=\"applied\"}"),
        0.0,
        "a replayed event applied again"
    );
    for stage in plan.stages.keys() {
        assert_eq!(
            value(
                &metrics,
                &format!("tributary_o2c_stage_seconds_count{{stage=\"{stage}\"}}")
            ),
            0.0
        );
    }
    assert_eq!(
        value(&metrics, "tributary_o2c_refund_cycle_seconds_count"),
        0.0
    );
    assert_eq!(gauges(&metrics), [3.0, 2.0, 2.0, 7.0]);
    assert_eq!(
        records(&js).await?,
        records_before,
        "the replay changed a record"
    );
    assert_eq!(read_all(&client, "O2C").await?.len(), o2c_before);
    check_exceptions().await?;
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

/// A storefront order and the ERP's order taken from it (same Shopify id) are one process:
/// the storefront's record is closed as continued by the ERP's, whichever comes first, so
/// that only the ERP's order can be "unallocated" or "unshipped". A storefront order the ERP
/// never took stays open and is listed as stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_order_is_continued_by_the_erp_order_taken_from_it() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    create_retail(&js).await?;
    let hours_ago = now_micros() - 3 * 3_600_000_000;
    let linked = |key: &str, gid: &str, system: &str, n: usize| {
        let mut e = event(
            "order",
            "placed",
            key,
            n,
            hours_ago,
            Entity::Order(Order {
                order_id: key.into(),
                status: "placed".into(),
                placed_at_micros: hours_ago,
                external_ids: vec![ExternalId {
                    system: "shopify".into(),
                    id: gid.into(),
                }],
                ..Default::default()
            }),
        );
        if let Some(m) = e.meta.as_mut() {
            m.system_of_record = system.into();
        }
        e
    };
    // WEB-1 first, then the ERP's SO-W1; SO-W2 before its storefront order WEB-2; WEB-3 never
    // reaches the ERP. The ERP's orders are confirmed hours ago and not shipped.
    let events = [
        linked("WEB-1", "gid://shopify/Order/1", "shopify", 1),
        linked("SO-W1", "gid://shopify/Order/1", "erp", 1),
        linked("SO-W2", "gid://shopify/Order/2", "erp", 1),
        linked("WEB-2", "gid://shopify/Order/2", "shopify", 1),
        linked("WEB-3", "gid://shopify/Order/3", "shopify", 1),
        event(
            "order",
            "status_changed",
            "SO-W1",
            2,
            hours_ago,
            order("SO-W1", "confirmed", 0),
        ),
        event(
            "order",
            "status_changed",
            "SO-W2",
            2,
            hours_ago,
            order("SO-W2", "confirmed", 0),
        ),
    ];
    for e in &events {
        let id = e
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        publish(&js, e, &[id]).await?;
    }
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", tributary_testkit::free_port());
    let text = format!(
        "http_listen = \"{addr}\"\n[nats]\nservers = [\"{}\"]\n\
         [tracker]\nsweep_interval_secs = 1\nunallocated_after_secs = 1800\nunshipped_after_secs = 3600\n",
        nats.url()
    );
    let config = write_config(dir.path(), &text)?;
    let config_arg = config.to_string_lossy().to_string();
    let bridge = Bridge::spawn(&config)?;
    settled(&addr, &bridge, events.len() as f64).await?;
    wait_until(Duration::from_secs(60), async || {
        let stuck = orders_stuck(&config_arg, "1h").await?;
        let mut keys: Vec<String> = stuck.iter().map(|(k, _, _)| k.clone()).collect();
        keys.sort();
        Ok(if keys == ["SO-W1", "SO-W2", "WEB-3"] {
            Check::Done(())
        } else {
            Check::Pending(format!("stuck: {stuck:?}\n{}", bridge.log()))
        })
    })
    .await?;
    let stuck = orders_stuck(&config_arg, "1h").await?;
    for (key, waiting, _) in &stuck {
        let want = if key == "WEB-3" {
            "unallocated"
        } else {
            "unshipped"
        };
        assert_eq!(waiting, want, "{key}");
    }
    for (web, erp) in [("WEB-1", "SO-W1"), ("WEB-2", "SO-W2")] {
        let shown = orders_show(&config_arg, web).await?;
        assert_eq!(shown["order"]["continued_as"], erp, "{web}: {shown}");
    }
    bridge.stop().await?;
    Ok(())
}

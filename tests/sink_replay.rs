//! Replay and dead-letter redrive (`tributary replay`, `tributary dlq`): re-applying a sink
//! from a stream sequence or a time against a running bridge leaves the WMS and Shopify
//! emulators exactly as one clean application did (one side effect per idempotency key, the
//! repeats answered as idempotent replays); a dead letter redriven after fixing the
//! target's data applies and leaves the dead-letter stream; one redriven while the target
//! still refuses it is attempted again and parked again; `dlq drop` removes it.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use support::*;
use time::format_description::well_known::Rfc3339;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed};
use tributary_sandbox::wms::{self, WmsOptions};

/// Runs the CLI; fails with its output unless it exits 0. Returns stdout.
async fn cli(config: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("$ tributary {}\n{stdout}", args.join(" "));
    if !out.status.success() {
        bail!(
            "tributary {} failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// `tributary dlq list --format json` for a sink.
async fn dlq_list(config: &Path, sink: &str) -> Result<Vec<serde_json::Value>> {
    let out = cli(config, &["dlq", "list", "--sink", sink, "--format", "json"]).await?;
    let v: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("dlq list output: {out}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Every event of RETAIL with its stream sequence.
async fn retail_events(nats: &async_nats::Client) -> Result<Vec<(u64, DomainEvent)>> {
    let js = jetstream::new(nats.clone());
    let mut stream = js.get_stream("RETAIL").await?;
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(msg) = stream.get_raw_message(seq).await {
            out.push((seq, DomainEvent::decode(msg.payload)?));
        }
    }
    Ok(out)
}

/// Waits until `cond` holds, with the bridge log in the error.
async fn wait_for(
    what: &str,
    within: Duration,
    bridge: &Bridge,
    mut cond: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    wait_until(within, async || {
        Ok(if cond().await? {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "timed out waiting for {what}\nbridge log:\n{}",
                bridge.log()
            ))
        })
    })
    .await
}

/// The WMS orders, comparable across replays.
fn wms_state(mut orders: Vec<wms::WmsOrder>) -> Result<String> {
    orders.sort_by(|a, b| a.reference_id.cmp(&b.reference_id));
    let v: Vec<_> = orders
        .iter()
        .map(|o| {
            serde_json::json!({
                "reference_id": o.reference_id,
                "status": format!("{:?}", o.status),
                "products": serde_json::to_value(&o.products).unwrap_or_default(),
            })
        })
        .collect();
    Ok(serde_json::to_string(&v)?)
}

/// The sink's consumers have nothing pending or in flight.
async fn consumer_idle(js: &jetstream::Context, sink: &str) -> Result<bool> {
    Ok(sink_unacked(js, sink).await? == Some(0))
}

/// A nats-server with only a `RETAIL` stream, for sink tests that publish domain events
/// themselves (no PostgreSQL, no domain stage).
async fn retail_only() -> Result<(tributary_testkit::NatsServer, jetstream::Context)> {
    let nats = tributary_testkit::NatsServer::start().await?;
    let js = jetstream::new(nats.connect().await?);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "RETAIL".into(),
        subjects: vec!["retail.v1.>".into()],
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await?;
    Ok((nats, js))
}

/// Publishes a domain event as the domain stage does (`Nats-Msg-Id` = its event id).
async fn publish_domain(js: &jetstream::Context, e: &DomainEvent) -> Result<()> {
    let m = e.meta.as_ref().context("meta")?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", m.event_id.as_str());
    js.publish_with_headers(
        format!("retail.v1.{}.{}", m.entity, m.event),
        headers,
        e.encode_to_vec().into(),
    )
    .await?
    .await?;
    Ok(())
}

/// The metadata of a test domain event from the ERP.
fn erp_meta(
    id: &str,
    entity: &str,
    event: &str,
    key: &str,
    version: u64,
) -> tributary_proto::retail::v1::EventMeta {
    tributary_proto::retail::v1::EventMeta {
        event_id: id.into(),
        entity: entity.into(),
        event: event.into(),
        entity_key: key.into(),
        entity_version: version,
        system_of_record: "erp".into(),
        event_time_micros: 1,
        source_ref: None,
        mapping: "test".into(),
    }
}

/// Replays the Shopify sink's whole stream and waits until it has sent `at_least` queries
/// containing `needle` since (every replayed event reads its target again) and is idle.
async fn replay_shopify_until_read(
    config: &Path,
    bridge: &Bridge,
    shop: &shopify::Shopify,
    js: &jetstream::Context,
    needle: &str,
    at_least: usize,
) -> Result<()> {
    let mark = shop.requests().len();
    let out = cli(config, &["replay", "--sink", "shopify", "--from-seq", "1"]).await?;
    assert!(out.contains("replay window"), "{out}");
    wait_for(
        "the replay read the target again",
        Duration::from_secs(60),
        bridge,
        async || {
            let reads = shop.requests().all()[mark..]
                .iter()
                .filter_map(|r| r.json())
                .filter(|b| b["query"].as_str().is_some_and(|q| q.contains(needle)))
                .count();
            Ok(reads >= at_least && consumer_idle(js, "shopify").await?)
        },
    )
    .await
}

/// A bridge running only the Shopify sink (`sink` = the lines of `[sinks.shopify]` after the
/// connection); an idle webhook source satisfies "at least one source".
fn shopify_only_config(nats_url: &str, shop_url: &str, sink: &str) -> Result<String> {
    Ok(format!(
        "http_listen = \"127.0.0.1:{}\"\n[nats]\nservers = [\"{nats_url}\"]\n\
         [[shopify]]\nname = \"idle\"\nlisten = \"127.0.0.1:{}\"\nwebhook_secret = \"3f9c2a7e41b8d605c1e7a9f24b6d8e03\"\ndomain_events = false\n\
         [sinks]\n[sinks.shopify]\nbase_url = \"{shop_url}\"\naccess_token = \"shpat_sandbox\"\n{sink}\n\
         [sinks.shopify.delivery]\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        tributary_testkit::try_free_port()?,
        tributary_testkit::try_free_port()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_is_idempotent_and_dead_letters_redrive() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let wms = wms::start(WmsOptions::default()).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let items = shop_catalog(&shop, (1..=3).map(|i| format!("SKU-{i}")), "9.50");
    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n\
         [sinks.wms.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         [sinks.shopify.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        wms.base_url(),
        shop.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());

    // Three orders and SO-BAD (a line of quantity 0: the WMS answers 422); stock for three
    // known SKUs and SKU-9, which Shopify does not know yet (parked: unknown SKU).
    erp.batch_execute("INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee')")
        .await?;
    for (o, qty) in [("SO-1", 2), ("SO-2", 3), ("SO-3", 1), ("SO-BAD", 0)] {
        erp.batch_execute(&format!(
            "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('{o}', 1, 'placed', 10);\
             INSERT INTO order_lines VALUES ('{o}', 1, 'SKU-1', {qty}, 5), ('{o}', 2, 'SKU-2', 1, 5); COMMIT;\
             UPDATE sales_orders SET status = 'confirmed' WHERE order_no = '{o}';"
        ))
        .await?;
    }
    let set_stock = |sku: &str, q: i32| {
        format!(
            "INSERT INTO stock (sku, location, on_hand) VALUES ('{sku}', 'DC1', {q}) \
         ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now();"
        )
    };
    let mut batch1 = String::new();
    for i in 1..=3 {
        batch1.push_str(&set_stock(&format!("SKU-{i}"), 10 * i));
    }
    batch1.push_str(&set_stock("SKU-9", 5));
    erp.batch_execute(&batch1).await?;

    let levels = |want: &[(&str, i64)]| {
        want.iter().all(|(sku, q)| {
            shop.inventory(&items[*sku], &dc1)
                .is_some_and(|l| l.available == *q)
        })
    };
    wait_for(
        "first application",
        Duration::from_secs(90),
        &bridge,
        async || {
            let orders = ["SO-1", "SO-2", "SO-3"].iter().all(|o| {
                wms.order_by_reference(o)
                    .is_some_and(|w| w.products.len() == 2)
            });
            Ok(orders
                && levels(&[("SKU-1", 10), ("SKU-2", 20), ("SKU-3", 30)])
                && dlq_list(&config, "wms").await?.len() == 1
                && dlq_list(&config, "shopify").await?.len() == 1)
        },
    )
    .await?;

    // A second stock batch, after a point in time the --from-time replay starts at.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t_mid = time::OffsetDateTime::now_utc().format(&Rfc3339)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut batch2 = String::new();
    for i in 1..=3 {
        batch2.push_str(&set_stock(&format!("SKU-{i}"), 10 * i + 1));
    }
    erp.batch_execute(&batch2).await?;
    let final_levels = [("SKU-1", 11), ("SKU-2", 21), ("SKU-3", 31)];
    wait_for(
        "second stock batch",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(levels(&final_levels)
                && consumer_idle(&js, "wms").await?
                && consumer_idle(&js, "shopify").await?)
        },
    )
    .await?;

    // The idempotency keys of the writes, and the state after one clean application.
    let events = retail_events(&client).await?;
    let t_mid_time = time::OffsetDateTime::parse(&t_mid, &Rfc3339)?;
    let mut release_keys = Vec::new();
    let mut bad_key = String::new();
    let mut stock_keys = Vec::new(); // (key, after t_mid)
    let mut order_events = 0u64;
    for (_, ev) in &events {
        let meta = ev.meta.clone().unwrap_or_default();
        match &ev.entity {
            Some(Entity::Order(o)) if meta.event == "status_changed" => {
                let key = tributary_sinks::idempotency_key("wms", &meta.event_id);
                if o.order_id == "SO-BAD" {
                    bad_key = key;
                } else {
                    release_keys.push(key);
                }
            }
            Some(Entity::Inventory(inv)) if inv.sku != "SKU-9" => {
                let at = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(meta.event_time_micros) * 1000,
                )?;
                stock_keys.push((
                    tributary_sinks::idempotency_key("shopify", &meta.event_id),
                    at > t_mid_time,
                ));
            }
            _ => {}
        }
        if matches!(
            &ev.entity,
            Some(Entity::Order(_)) | Some(Entity::OrderLine(_))
        ) {
            order_events += 1;
        }
    }
    assert_eq!(release_keys.len(), 3);
    assert!(!bad_key.is_empty());
    assert_eq!(stock_keys.len(), 6);
    assert_eq!(stock_keys.iter().filter(|(_, late)| *late).count(), 3);
    let wms_before = wms_state(wms.orders())?;
    let replays_before: Vec<u64> = stock_keys
        .iter()
        .map(|(k, _)| shop.idempotent_replays(k))
        .collect();

    // Replay Shopify from the time between the batches: only the second batch again.
    let out = cli(
        &config,
        &["replay", "--sink", "shopify", "--from-time", &t_mid],
    )
    .await?;
    assert!(out.contains("replay from"), "{out}");
    wait_for(
        "replay from a time",
        Duration::from_secs(60),
        &bridge,
        async || {
            let replayed = stock_keys
                .iter()
                .zip(&replays_before)
                .filter(|((_, late), _)| *late)
                .all(|((k, _), before)| shop.idempotent_replays(k) > *before);
            Ok(replayed && consumer_idle(&js, "shopify").await?)
        },
    )
    .await?;
    for ((k, late), before) in stock_keys.iter().zip(&replays_before) {
        if !late {
            assert_eq!(
                shop.idempotent_replays(k),
                *before,
                "first batch not replayed"
            );
        }
    }

    // Replay both sinks from sequence 1 while the bridge runs.
    let replays_mid: Vec<u64> = stock_keys
        .iter()
        .map(|(k, _)| shop.idempotent_replays(k))
        .collect();
    for sink in ["wms", "shopify"] {
        let out = cli(&config, &["replay", "--sink", sink, "--from-seq", "1"]).await?;
        assert!(out.contains("replay window"), "{out}");
    }
    wait_for(
        "replay from sequence 1",
        Duration::from_secs(60),
        &bridge,
        async || {
            let replayed = stock_keys
                .iter()
                .zip(&replays_mid)
                .all(|((k, _), before)| shop.idempotent_replays(k) > *before);
            let stream = js.get_stream("RETAIL").await?;
            let wms_redelivered = stream
                .consumer_info(tributary_sinks::consumer_name("wms"))
                .await
                .is_ok_and(|i| i.delivered.consumer_sequence >= order_events);
            Ok(replayed
                && wms_redelivered
                && consumer_idle(&js, "wms").await?
                && consumer_idle(&js, "shopify").await?)
        },
    )
    .await?;
    // One side effect per key; the targets' state is that of one clean application.
    for k in &release_keys {
        assert_eq!(wms.key_applies(k), 1, "WMS writes for {k}");
    }
    for o in ["SO-1", "SO-2", "SO-3"] {
        assert_eq!(wms.reference_creates(o), 1, "orders created for {o}");
    }
    for (k, _) in &stock_keys {
        assert_eq!(shop.idempotent_applies(k), 1, "Shopify writes for {k}");
    }
    assert_eq!(wms_state(wms.orders())?, wms_before);
    assert!(levels(&final_levels));
    // Replaying re-offered the parked events too; they are parked once.
    assert_eq!(dlq_list(&config, "wms").await?.len(), 1);
    let shop_dlq = dlq_list(&config, "shopify").await?;
    assert_eq!(shop_dlq.len(), 1, "{shop_dlq:?}");

    // The Shopify dead letter: unknown SKU. Show it, fix the cause, redrive it.
    let parked = &shop_dlq[0];
    assert!(
        parked["reason"]
            .as_str()
            .unwrap_or("")
            .contains("unknown SKU"),
        "{parked}"
    );
    let seq = parked["seq"].as_u64().context("seq")?.to_string();
    let shown = cli(
        &config,
        &["dlq", "show", "--sink", "shopify", "--seq", &seq],
    )
    .await?;
    assert!(
        shown.contains("SKU-9") && shown.contains("Tributary-Reason"),
        "{shown}"
    );
    let p9 = shop.add_product(
        "Item 9",
        &[VariantSeed {
            sku: "SKU-9".into(),
            price: "1.00".into(),
        }],
    );
    let item9 = p9.variants[0].1.clone();
    // The sink refreshes its SKU cache on a miss at most every 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let out = cli(
        &config,
        &["dlq", "redrive", "--sink", "shopify", "--seq", &seq],
    )
    .await?;
    assert!(out.contains("redriven"), "{out}");
    wait_for(
        "the redriven event applied",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(shop
                .inventory(&item9, &dc1)
                .is_some_and(|l| l.available == 5))
        },
    )
    .await?;
    assert!(dlq_list(&config, "shopify").await?.is_empty());

    // The WMS dead letter: the data itself is wrong (quantity 0), so a redrive is attempted
    // again (the WMS answers its stored 422 for the key) and parked again.
    let wms_dlq = dlq_list(&config, "wms").await?;
    let old_seq = wms_dlq[0]["seq"].as_u64().context("seq")?;
    let bad_replays = wms.key_replays(&bad_key);
    let out = cli(&config, &["dlq", "redrive", "--sink", "wms", "--all"]).await?;
    assert!(out.contains("1 event(s) redriven"), "{out}");
    wait_for(
        "the redriven WMS event parked again",
        Duration::from_secs(60),
        &bridge,
        async || {
            let l = dlq_list(&config, "wms").await?;
            Ok(l.len() == 1
                && l[0]["seq"].as_u64() != Some(old_seq)
                && wms.key_replays(&bad_key) > bad_replays)
        },
    )
    .await?;
    assert!(wms.order_by_reference("SO-BAD").is_none());
    let out = cli(&config, &["dlq", "drop", "--sink", "wms", "--all", "--yes"]).await?;
    assert!(out.contains("dropped"), "{out}");
    assert!(dlq_list(&config, "wms").await?.is_empty());

    // Still one side effect per key after all of it.
    for k in &release_keys {
        assert_eq!(wms.key_applies(k), 1);
    }
    for (k, _) in &stock_keys {
        assert_eq!(shop.idempotent_applies(k), 1);
    }
    assert_eq!(wms_state(wms.orders())?, wms_before);
    assert!(levels(&final_levels));

    let code = bridge.stop().await?;
    assert_eq!(code, 0);
    Ok(())
}

/// `on_dead_letter = "hold"`: once an entity's event is parked, its later events are parked
/// behind it in order (the entity never shows a newer state over a missing older one); a
/// redrive after fixing the cause applies them all in order; dropping the holder releases
/// the entity. Other entities flow meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_parks_an_entitys_later_events_until_the_first_is_redriven() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    pg.create_database("erp").await?;
    let sql = std::fs::read_to_string(retail_dir().join("erp.sql"))?;
    pg.connect("erp").await?.batch_execute(&sql).await?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.publication = "tributary_erp".into();
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let known = shop.add_product(
        "Item 1",
        &[VariantSeed {
            sku: "SKU-1".into(),
            price: "9.50".into(),
        }],
    );
    let item1 = known.variants[0].1.clone();
    let mut text = config_text(&pg, &nats.url(), &[spec]);
    let http = text
        .lines()
        .next()
        .and_then(|l| l.split('"').nth(1))
        .context("http_listen")?
        .to_string();
    text.push('\n');
    // The ERP part of the sample mappings (the POS ones need the POS source).
    let domain = std::fs::read_to_string(retail_dir().join("domain.toml"))?;
    let erp_only = domain
        .split("# ---- POS")
        .next()
        .context("domain.toml has a POS part")?;
    text.push_str(erp_only);
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         [sinks.shopify.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\non_dead_letter = \"hold\"\n",
        shop.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let erp = pg.connect("erp").await?;
    let set_stock = |sku: &str, q: i32| {
        format!(
            "INSERT INTO stock (sku, location, on_hand) VALUES ('{sku}', 'DC1', {q}) \
             ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now();"
        )
    };
    // SKU-9 and SKU-8 are unknown to Shopify: their first levels are refused, the later
    // ones held; SKU-1 flows.
    for (sku, q) in [
        ("SKU-9", 5),
        ("SKU-1", 1),
        ("SKU-8", 50),
        ("SKU-9", 6),
        ("SKU-1", 2),
        ("SKU-8", 51),
        ("SKU-9", 7),
    ] {
        erp.batch_execute(&set_stock(sku, q)).await?;
    }
    wait_for(
        "3 + 2 parked",
        Duration::from_secs(60),
        &bridge,
        async || Ok(dlq_list(&config, "shopify").await?.len() == 5),
    )
    .await?;
    wait_for(
        "SKU-1 applied",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(shop
                .inventory(&item1, &dc1)
                .is_some_and(|l| l.available == 2))
        },
    )
    .await?;
    let parked = dlq_list(&config, "shopify").await?;
    let reasons: Vec<&str> = parked
        .iter()
        .map(|p| p["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| r.contains("unknown SKU")).count(),
        2,
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| r.contains("held behind")).count(),
        3,
        "{reasons:?}"
    );

    // The depth gauge shows what is parked (sampled every 5 s).
    wait_for(
        "dead-letter depth 5",
        Duration::from_secs(30),
        &bridge,
        async || {
            let (_, metrics) = http_get(&http, "/metrics").await?;
            Ok(metrics
                .lines()
                .any(|l| l.starts_with("tributary_sink_dead_letter_depth{sink=\"shopify\"} 5")))
        },
    )
    .await?;

    // Drop SKU-8's refused event: the entity is released and its held event stays parked.
    let sku8_holder = parked
        .iter()
        .find(|p| {
            p["reason"]
                .as_str()
                .unwrap_or("")
                .contains("unknown SKU \"SKU-8\"")
        })
        .context("SKU-8's dead letter")?;
    let seq8 = sku8_holder["seq"].as_u64().context("seq")?.to_string();
    let out = cli(
        &config,
        &["dlq", "drop", "--sink", "shopify", "--seq", &seq8, "--yes"],
    )
    .await?;
    assert!(out.contains("no longer held"), "{out}");
    let sku8_held = dlq_list(&config, "shopify")
        .await?
        .into_iter()
        .find(|p| {
            p["reason"].as_str().unwrap_or("").contains("held behind")
                && p["event_id"].as_str() != sku8_holder["event_id"].as_str()
        })
        .is_some();
    assert!(sku8_held);

    // Shopify learns SKU-9 and SKU-8; a redrive of everything applies SKU-9's three levels
    // in order and SKU-8's held one.
    let p9 = shop.add_product(
        "Item 9",
        &[VariantSeed {
            sku: "SKU-9".into(),
            price: "1.00".into(),
        }],
    );
    let p8 = shop.add_product(
        "Item 8",
        &[VariantSeed {
            sku: "SKU-8".into(),
            price: "1.00".into(),
        }],
    );
    let (item9, item8) = (p9.variants[0].1.clone(), p8.variants[0].1.clone());
    // The sink refreshes its SKU cache on a miss at most every 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let out = cli(&config, &["dlq", "redrive", "--sink", "shopify", "--all"]).await?;
    assert!(out.contains("4 event(s) redriven"), "{out}");
    wait_for(
        "redriven levels applied",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(shop
                .inventory(&item9, &dc1)
                .is_some_and(|l| l.available == 7)
                && shop
                    .inventory(&item8, &dc1)
                    .is_some_and(|l| l.available == 51)
                && dlq_list(&config, "shopify").await?.is_empty())
        },
    )
    .await?;
    // In order: SKU-9's level was written three times (5, 6, 7), never rolled back.
    let item9_id = item9.rsplit('/').next().unwrap_or_default().to_string();
    let writes9: u64 = shop.with_state(|s| {
        s.entity_writes
            .iter()
            .filter(|(k, _)| k.ends_with(&format!("inventory_item_id={item9_id}")))
            .map(|(_, n)| *n)
            .sum()
    });
    assert_eq!(writes9, 3);
    // A new level of SKU-8 applies directly: nothing holds it any more.
    erp.batch_execute(&set_stock("SKU-8", 52)).await?;
    wait_for(
        "SKU-8 applies",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(shop
                .inventory(&item8, &dc1)
                .is_some_and(|l| l.available == 52))
        },
    )
    .await?;
    assert!(dlq_list(&config, "shopify").await?.is_empty());
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

/// Inventory events batched into documents of aliased `inventorySetQuantities` fields: each
/// event is applied once under its own idempotency key; one refused field (a location the
/// shop does not have) parks that event only; a replay of the whole stream, batched again
/// (grouped differently), is answered from Shopify's idempotency store event by event,
/// without a second side effect. No PostgreSQL: the events are published to RETAIL directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_inventory_documents_replay_under_each_events_own_key() -> Result<()> {
    use tributary_proto::retail::v1::InventoryLevel;

    const SKUS: usize = 40;
    const ROUNDS: u64 = 6;
    let (nats, js) = retail_only().await?;
    // A bucket the documents fit in, refilled fast enough not to slow the test down.
    let shop = shopify::start(ShopifyOptions {
        bucket_size: 2000.0,
        restore_rate: 5000.0,
        ..ShopifyOptions::default()
    })
    .await?;
    let dc1 = shop.add_location("DC1");
    let seeds: Vec<VariantSeed> = (0..SKUS)
        .map(|i| VariantSeed {
            sku: format!("SKU-{i:03}"),
            price: "9.50".into(),
        })
        .collect();
    let items: Vec<String> = shop
        .add_product("Items", &seeds)
        .variants
        .into_iter()
        .map(|(_, item, _)| item)
        .collect();
    let quantity = |sku: usize, version: u64| (100 * version + sku as u64) as i64;

    // ROUNDS levels per SKU at DC1, round robin (versions 1..=ROUNDS), and one level at DC9,
    // which the sink maps to a location the shop does not have.
    let mut published = Vec::new();
    let mut add = |sku: usize, location: &str, version: u64| {
        let id = format!("inv-{sku}-{location}-{version}");
        let event = DomainEvent {
            meta: Some(erp_meta(
                &id,
                "inventory",
                "level_changed",
                &format!("SKU-{sku:03}|{location}"),
                version,
            )),
            entity: Some(Entity::Inventory(InventoryLevel {
                sku: format!("SKU-{sku:03}"),
                location: location.into(),
                on_hand: quantity(sku, version),
                available: quantity(sku, version),
                reporting_system: "erp".into(),
                ..Default::default()
            })),
        };
        published.push((id, event));
    };
    for version in 1..=ROUNDS {
        for sku in 0..SKUS {
            add(sku, "DC1", version);
            if sku == 7 && version == 3 {
                add(sku, "DC9", 1);
            }
        }
    }
    for (_, event) in &published {
        publish_domain(&js, event).await?;
    }
    let keys: Vec<String> = published
        .iter()
        .filter(|(id, _)| !id.contains("DC9"))
        .map(|(id, _)| tributary_sinks::idempotency_key("shopify", id))
        .collect();

    // Only the Shopify sink; an idle webhook source satisfies "at least one source". Small
    // documents with a long linger, so that every document carries several events.
    let dir = tempfile::tempdir()?;
    let text = shopify_only_config(
        &nats.url(),
        shop.base_url(),
        &format!(
            "apply = [\"inventory\"]\nlocations = {{ DC1 = \"{dc1}\", DC9 = \"gid://shopify/Location/999999\" }}\nbatch_size = 8\nbatch_linger_ms = 50"
        ),
    )?;
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    let levels_final = || {
        items.iter().enumerate().all(|(sku, item)| {
            shop.inventory(item, &dc1)
                .is_some_and(|l| l.available == quantity(sku, ROUNDS))
        })
    };
    wait_for(
        "every level applied",
        Duration::from_secs(90),
        &bridge,
        async || Ok(levels_final() && consumer_idle(&js, "shopify").await?),
    )
    .await?;

    // The documents: several fields each, every field with its own event's key.
    let documents = |from: usize| -> Vec<Vec<String>> {
        shop.requests().all()[from..]
            .iter()
            .filter_map(|r| r.json())
            .filter_map(|b| b["query"].as_str().map(str::to_string))
            .filter(|q| q.contains("inventorySetQuantities"))
            .map(|q| {
                q.split("@idempotent(key: \"")
                    .skip(1)
                    .filter_map(|rest| rest.split('"').next().map(str::to_string))
                    .collect()
            })
            .collect()
    };
    let first = documents(0);
    let sent: usize = first.iter().map(Vec::len).sum();
    eprintln!(
        "first application: {} events in {} documents, sizes {:?}",
        sent,
        first.len(),
        first.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        first.iter().any(|d| d.len() > 1),
        "no document carried several events"
    );
    assert!(
        first.iter().all(|d| d.len() <= 8),
        "a document over batch_size"
    );
    for d in &first {
        let distinct: BTreeMap<&String, ()> = d.iter().map(|k| (k, ())).collect();
        assert_eq!(distinct.len(), d.len(), "a key twice in one document");
    }
    let applied = |k: &String| shop.idempotent_applies(k);
    assert!(
        keys.iter().all(|k| applied(k) == 1),
        "a key not applied once"
    );
    let history = shop.with_state(|s| s.inventory_history.len());
    assert_eq!(history, keys.len(), "one inventory change per event");
    let writes_before: BTreeMap<String, u64> =
        shop.with_state(|s| s.entity_writes.clone().into_iter().collect());
    assert!(writes_before.values().all(|n| *n == ROUNDS));
    // The refused field parked its event only.
    let parked = dlq_list(&config, "shopify").await?;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("location could not be found"),
        "{}",
        parked[0]
    );

    // Replay the whole stream while the bridge runs: batched again, every event answered
    // from the store under its own key.
    let replays_before: Vec<u64> = keys.iter().map(|k| shop.idempotent_replays(k)).collect();
    let log_mark = shop.requests().len();
    let out = cli(&config, &["replay", "--sink", "shopify", "--from-seq", "1"]).await?;
    assert!(out.contains("replay window"), "{out}");
    wait_for(
        "the replay answered from the idempotency store",
        Duration::from_secs(90),
        &bridge,
        async || {
            let replayed = keys
                .iter()
                .zip(&replays_before)
                .all(|(k, before)| shop.idempotent_replays(k) > *before);
            Ok(replayed && consumer_idle(&js, "shopify").await?)
        },
    )
    .await?;
    let again = documents(log_mark);
    eprintln!(
        "replay: {} documents, sizes {:?}",
        again.len(),
        again.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        again.iter().any(|d| d.len() > 1),
        "the replay was not batched"
    );
    assert!(keys.iter().all(|k| applied(k) == 1), "a key applied twice");
    assert_eq!(shop.with_state(|s| s.inventory_history.len()), history);
    assert_eq!(
        shop.with_state(|s| s
            .entity_writes
            .clone()
            .into_iter()
            .collect::<BTreeMap<_, _>>()),
        writes_before,
        "a side effect repeated"
    );
    assert!(levels_final());
    assert_eq!(dlq_list(&config, "shopify").await?.len(), 1);
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

/// `cancel_orders`: the ERP cancelling a storefront order cancels it in Shopify once — a
/// redelivery and a replay of the whole stream find it cancelled and do not cancel again —
/// while the status still reaches the order's `erp-status` tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erp_cancellation_cancels_the_storefront_order_once() -> Result<()> {
    use tributary_proto::retail::v1::{ExternalId, Order};

    let (nats, js) = retail_only().await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let web = shop.add_order("a@example.com", &[("SKU-1", 1, "9.50")], None);
    let kept = shop.add_order("b@example.com", &[("SKU-1", 1, "9.50")], None);
    let event = |order: &str, gid: &str, status: &str, version: u64| DomainEvent {
        meta: Some(erp_meta(
            &format!("{order}-v{version}"),
            "order",
            if version == 1 {
                "placed"
            } else {
                "status_changed"
            },
            order,
            version,
        )),
        entity: Some(Entity::Order(Order {
            order_id: order.into(),
            status: status.into(),
            external_ids: vec![ExternalId {
                system: "shopify".into(),
                id: gid.into(),
            }],
            ..Default::default()
        })),
    };
    let events = [
        event("SO-1", &web.order_id, "placed", 1),
        event("SO-2", &kept.order_id, "placed", 1),
        event("SO-1", &web.order_id, "cancelled", 2),
        event("SO-2", &kept.order_id, "confirmed", 2),
    ];
    for e in &events {
        publish_domain(&js, e).await?;
    }
    let dir = tempfile::tempdir()?;
    let text = shopify_only_config(
        &nats.url(),
        shop.base_url(),
        "apply = [\"orders\"]\ncancel_orders = true",
    )?;
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    let cancels = || {
        shop.requests()
            .all()
            .iter()
            .filter_map(|r| r.json())
            .filter(|b| {
                b["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("orderCancel"))
            })
            .count()
    };
    let order = |gid: &str| shop.order(gid).context("the order");
    wait_for(
        "the cancellation applied",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(order(&web.order_id)?.cancelled
                && order(&kept.order_id)?
                    .tags
                    .contains(&"erp-status:confirmed".to_string())
                && consumer_idle(&js, "shopify").await?)
        },
    )
    .await?;
    assert_eq!(cancels(), 1, "one orderCancel");
    assert!(order(&web.order_id)?
        .tags
        .contains(&"erp-status:cancelled".to_string()));
    assert!(
        !order(&kept.order_id)?.cancelled,
        "a confirmed order was cancelled"
    );

    // Replaying everything: the order is already cancelled, so no second orderCancel.
    replay_shopify_until_read(&config, &bridge, &shop, &js, "cancelledAt", events.len()).await?;
    assert_eq!(cancels(), 1, "the replay cancelled again");
    assert!(dlq_list(&config, "shopify").await?.is_empty());
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

/// Shipments of some lines become Shopify fulfilments of those lines: two parcels, two
/// fulfilments with their own tracking numbers, the order partially then fully fulfilled;
/// a replay creates nothing more, and a parcel of more units than are left is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_shipments_become_partial_fulfilments() -> Result<()> {
    use tributary_proto::retail::v1::{ExternalId, Fulfillment, FulfillmentLine, Order};

    let (nats, js) = retail_only().await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let web = shop.add_order(
        "a@example.com",
        &[("SKU-1", 2, "9.50"), ("SKU-2", 1, "4.00")],
        None,
    );
    let parcel = |id: &str, tracking: &str, lines: &[(&str, i64)]| DomainEvent {
        meta: Some(erp_meta(id, "fulfillment", "shipped", id, 1)),
        entity: Some(Entity::Fulfillment(Fulfillment {
            fulfillment_id: id.into(),
            order_id: "SO-7".into(),
            lines: lines
                .iter()
                .map(|(sku, q)| FulfillmentLine {
                    line_id: String::new(),
                    sku: (*sku).into(),
                    quantity: *q,
                })
                .collect(),
            carrier: "DHL".into(),
            tracking_number: tracking.into(),
            status: "shipped".into(),
            ..Default::default()
        })),
    };
    let events = [
        DomainEvent {
            meta: Some(erp_meta("SO-7-v1", "order", "placed", "SO-7", 1)),
            entity: Some(Entity::Order(Order {
                order_id: "SO-7".into(),
                status: "placed".into(),
                external_ids: vec![ExternalId {
                    system: "shopify".into(),
                    id: web.order_id.clone(),
                }],
                ..Default::default()
            })),
        },
        parcel("F-1", "T-1", &[("SKU-1", 2)]),
        parcel("F-2", "T-2", &[("SKU-2", 1)]),
        // More units than the order ever had: refused, parked with its reason.
        parcel("F-3", "T-3", &[("SKU-1", 5)]),
    ];
    // The order (which records the link to Shopify) long before its parcels, as in life:
    // different entities apply in parallel.
    publish_domain(&js, &events[0]).await?;
    let dir = tempfile::tempdir()?;
    let text = shopify_only_config(&nats.url(), shop.base_url(), "apply = [\"fulfillments\"]")?;
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_for(
        "the order's link recorded",
        Duration::from_secs(60),
        &bridge,
        async || consumer_idle(&js, "shopify").await,
    )
    .await?;
    for e in &events[1..] {
        publish_domain(&js, e).await?;
    }
    let order_id = shopify::parse_gid(&web.order_id, "Order").context("gid")?;
    let fulfilments = || {
        shop.with_state(|s| {
            let mut f: Vec<(String, Vec<(u64, i64)>)> = s
                .fulfillments
                .values()
                .filter(|f| f.order_id == order_id)
                .map(|f| {
                    (
                        f.tracking
                            .first()
                            .and_then(|t| t.number.clone())
                            .unwrap_or_default(),
                        f.lines.clone(),
                    )
                })
                .collect();
            f.sort();
            f
        })
    };
    wait_for(
        "both parcels applied, the third parked",
        Duration::from_secs(60),
        &bridge,
        async || {
            Ok(fulfilments().len() == 2
                && dlq_list(&config, "shopify").await?.len() == 1
                && consumer_idle(&js, "shopify").await?)
        },
    )
    .await?;
    let order = shop.order(&web.order_id).context("the order")?;
    assert_eq!(order.fulfillment_status, "FULFILLED");
    let line = |sku: &str| {
        order
            .line_items
            .iter()
            .find(|l| l.sku == sku)
            .map(|l| l.id)
            .unwrap_or_default()
    };
    assert_eq!(
        fulfilments(),
        vec![
            ("T-1".to_string(), vec![(line("SKU-1"), 2)]),
            ("T-2".to_string(), vec![(line("SKU-2"), 1)]),
        ]
    );
    let parked = dlq_list(&config, "shopify").await?;
    assert!(
        parked[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("than the order has left"),
        "{}",
        parked[0]
    );

    // A replay of everything: the parcels are recognised by their tracking numbers.
    replay_shopify_until_read(&config, &bridge, &shop, &js, "remainingQuantity", 2).await?;
    assert_eq!(fulfilments().len(), 2, "the replay fulfilled again");
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

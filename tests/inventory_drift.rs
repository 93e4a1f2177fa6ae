//! Inventory drift, detected and repaired (docs/order-to-cash.md, "Inventory drift"): the
//! ERP's stock of 20 SKUs at DC1 reaches the WMS and the storefront through the sinks; then
//! 10 levels are changed directly in the Shopify emulator and 5 in the WMS emulator. One
//! sweep (`tributary inventory drift --sweep`) reports exactly those 15, no other, with their
//! drift events; a SKU whose new ERP level the sinks have not applied yet (the bridge runs
//! without its sinks while the ERP changes it) is in flight and not reported, though both
//! targets still show the old level. With `repair = true` a sweep sends repairs, the sinks
//! apply them with their reason, and the next sweep finds every SKU-location in agreement.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::*;
use tributary_reconcile::Report;
use tributary_sandbox::shopify::{self, ShopifyOptions};
use tributary_sandbox::wms::{self, WmsOptions};

const SKUS: usize = 20;

fn sku(i: usize) -> String {
    format!("SKU-{i:02}")
}

/// The ERP's initial level of SKU `i`.
fn level(i: usize) -> i64 {
    10 + i as i64
}

async fn sweep(config: &Path) -> anyhow::Result<Report> {
    let path = config.to_string_lossy();
    let args = [
        "inventory",
        "drift",
        "--sweep",
        "--format",
        "json",
        "--config",
        &path,
    ];
    let (code, out, err) = tributary(&args).await?;
    anyhow::ensure!(code == 0, "inventory drift --sweep exited {code}: {err}");
    Ok(serde_json::from_str(&out)?)
}

fn drifting(report: &Report) -> BTreeSet<(String, String)> {
    report
        .drifts
        .iter()
        .map(|d| (d.target.clone(), d.sku.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_levels_are_reported_once_in_flight_ones_never_and_repairs_align_them(
) -> anyhow::Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let wms = wms::start(WmsOptions::default()).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let items = shop_catalog(&shop, (1..=SKUS).map(sku), "5.00");

    let domain_only = retail_config(&pg, &nats.url(), &sources)?;
    let sinks = format!(
        "\n[sinks]\n\
         [sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\ninventory_location = \"DC1\"\n\
         [sinks.wms.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\napply = [\"inventory\"]\n\
         [sinks.shopify.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        wms.base_url(),
        shop.base_url()
    );
    // The bridge sweeps once at start (detect only); the sweeps the test looks at are the
    // command's, run when the test says.
    let reconcile = |repair: bool| {
        format!("\n[reconcile.inventory]\ninterval_secs = 3600\nrequests_per_second = 5\npage_size = 7\nrepair = {repair}\n")
    };
    let full = format!("{domain_only}{sinks}{}", reconcile(false));
    let config = write_config(dir.path(), &full)?;
    let repairing = dir.path().join("repair.toml");
    std::fs::write(
        &repairing,
        format!("{domain_only}{sinks}{}", reconcile(true)),
    )?;
    let domain_config = dir.path().join("domain-only.toml");
    std::fs::write(&domain_config, &domain_only)?;

    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;
    let rows: Vec<String> = (1..=SKUS)
        .map(|i| format!("('{}', 'DC1', {})", sku(i), level(i)))
        .collect();
    erp.batch_execute(&format!(
        "INSERT INTO stock (sku, location, on_hand) VALUES {};",
        rows.join(", ")
    ))
    .await?;
    let synced = |i: usize| {
        let in_shop = shop.inventory(&items[&sku(i)], &dc1).map(|l| l.available);
        wms.stock(&sku(i)) == Some(level(i)) && in_shop == Some(level(i))
    };
    wait_until(Duration::from_secs(90), async || {
        Ok(if (1..=SKUS).all(synced) {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "stock never reached both targets\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    // Every sink record is stored once its target confirmed: then all 20 agree.
    let clean = wait_until(Duration::from_secs(60), async || {
        let r = sweep(&config).await?;
        Ok(if r.compared == SKUS as u64 {
            Check::Done(r)
        } else {
            Check::Pending(format!("sinks not settled: {r:?}"))
        })
    })
    .await?;
    assert!(clean.drifts.is_empty(), "{clean:?}");
    assert_eq!(clean.accuracy_ratio, 1.0);

    // Tampering: 10 storefront levels, 5 WMS counts, directly in the emulators.
    for i in 1..=10 {
        shop.set_inventory(&items[&sku(i)], &dc1, level(i) + 100)?;
    }
    for i in 11..=15 {
        wms.set_stock(&sku(i), level(i) - 3);
    }
    let mut expected = BTreeSet::new();
    expected.extend((1..=10).map(|i| ("shopify".to_string(), sku(i))));
    expected.extend((11..=15).map(|i| ("wms".to_string(), sku(i))));
    let found = sweep(&config).await?;
    assert_eq!(drifting(&found), expected, "{found:?}");
    for d in &found.drifts {
        let i: usize = d.sku[4..].parse()?;
        let want = if d.target == "shopify" {
            level(i) + 100
        } else {
            level(i) - 3
        };
        assert_eq!(
            (d.erp, d.found, d.repair_sent),
            (level(i), want, false),
            "{d:?}"
        );
    }
    assert_eq!((found.compared, found.agreeing), (20, 5));
    assert_eq!(found.accuracy_ratio, 0.25);
    let events: Vec<serde_json::Value> = read_all(&nats.connect().await?, "O2C")
        .await?
        .iter()
        .filter(|m| m.subject.as_str() == "o2c.v1.inventory.drift")
        .map(|m| serde_json::from_slice(&m.payload))
        .collect::<std::result::Result<_, _>>()?;
    let of_sweep: BTreeSet<(String, String)> = events
        .iter()
        .filter(|e| e["sweep_micros"] == found.started_micros)
        .map(|e| {
            (
                e["target"].as_str().unwrap_or("").into(),
                e["sku"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(of_sweep, expected, "one drift event per drifting pair");
    // Without --sweep the command shows the stored last sweep, here as a table.
    let path = config.to_string_lossy();
    let (code, table, err) = tributary(&["inventory", "drift", "--config", &path]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("20 compared, 5 agree (accuracy 0.2500)"),
        "{table}"
    );
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("SKU-")).collect();
    assert_eq!(rows.len(), 15, "{table}");
    assert!(
        rows.iter().any(|r| r.split_whitespace().collect::<Vec<_>>()
            == ["SKU-11", "DC1", "wms", "21", "18", "-3", "1", "-"]),
        "{table}"
    );

    // In flight: the ERP changes SKU-16 while the bridge runs without its sinks, so the
    // domain state is a version ahead of both sinks' records and both targets show the old
    // level. The sweep must not call that drift.
    bridge.stop().await?;
    let domain = Bridge::spawn(&domain_config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &domain).await?;
    erp.batch_execute(
        "UPDATE stock SET on_hand = on_hand + 7, updated_at = now() WHERE sku = 'SKU-16';",
    )
    .await?;
    let nats_client = nats.connect().await?;
    wait_until(Duration::from_secs(60), async || {
        let published = read_all(&nats_client, "RETAIL").await?.iter().any(|m| {
            m.subject.as_str() == "retail.v1.inventory.level_changed"
                && stock_of(&m.payload) == Some(("SKU-16:DC1".into(), level(16) + 7))
        });
        Ok(if published {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "SKU-16's new level not published\n{}",
                domain.log()
            ))
        })
    })
    .await?;
    domain.stop().await?;
    assert_eq!(wms.stock("SKU-16"), Some(level(16)), "no sink ran");
    let during = sweep(&config).await?;
    assert_eq!(
        drifting(&during),
        expected,
        "SKU-16 is in flight: {during:?}"
    );
    for target in ["wms", "shopify"] {
        assert_eq!(during.targets[target].in_flight, 1, "{during:?}");
    }
    assert_eq!(during.compared, 19);

    // Repair: the bridge with its sinks again; a sweep with repair = true sends 15 repairs.
    let bridge = Bridge::spawn(&config)?;
    wait_until(Duration::from_secs(60), async || {
        let settled = sweep(&config).await?;
        Ok(if settled.compared == SKUS as u64 {
            Check::Done(())
        } else {
            Check::Pending(format!("SKU-16 never applied: {settled:?}"))
        })
    })
    .await?;
    assert_eq!(wms.stock("SKU-16"), Some(level(16) + 7));
    let repaired = sweep(&repairing).await?;
    assert_eq!(drifting(&repaired), expected, "{repaired:?}");
    assert!(repaired.drifts.iter().all(|d| d.repair_sent));
    let after = wait_until(Duration::from_secs(60), async || {
        let r = sweep(&config).await?;
        Ok(if r.drifts.is_empty() && r.compared == SKUS as u64 {
            Check::Done(r)
        } else {
            Check::Pending(format!("not repaired yet: {r:?}\n{}", bridge.log()))
        })
    })
    .await?;
    assert_eq!((after.agreeing, after.accuracy_ratio), (20, 1.0));
    for i in 11..=15 {
        assert_eq!(wms.stock(&sku(i)), Some(level(i)));
    }
    // The WMS's adjustment log carries the repair's reason; the sinks counted the repairs.
    let reasons = wms.with_state(|s| {
        s.adjustments
            .iter()
            .filter_map(|a| a.reason.clone())
            .filter(|r| r.starts_with("tributary repair: inventory drift"))
            .count()
    });
    assert_eq!(reasons, 5);
    let addr = http_addr(&full)?;
    let (_, metrics) = http_get(&addr, "/metrics").await?;
    assert!(
        metrics.contains("tributary_sink_repairs_total{sink=\"wms\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tributary_sink_repairs_total{sink=\"shopify\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tributary_o2c_inventory_accuracy_ratio"),
        "{metrics}"
    );
    bridge.stop().await?;
    Ok(())
}

/// The entity key and on-hand level of an inventory event.
fn stock_of(payload: &[u8]) -> Option<(String, i64)> {
    use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
    use tributary_proto::Message as _;
    let event = DomainEvent::decode(payload).ok()?;
    match (event.meta, event.entity) {
        (Some(meta), Some(Entity::Inventory(level))) => Some((meta.entity_key, level.on_hand)),
        _ => None,
    }
}

/// The `http_listen` address of a configuration text.
fn http_addr(text: &str) -> anyhow::Result<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("http_listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no http_listen"))
}

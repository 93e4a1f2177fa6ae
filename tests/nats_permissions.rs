//! deploy/nats/permissions.conf at run time: a nats-server that includes it (passwords filled
//! in), the bridge connected as its `tributary` user with the sample retail sources (the ERP's
//! with schema references), the domain stage, the order-to-cash tracker, the WMS and
//! Shopify sinks and the inventory reconciliation (a tampered WMS count repaired). Orders and stock reach both targets, a kill -9
//! in the middle of a backlog is recovered (the consumers are rewound at the restart, which
//! needs the reset API), and neither the server nor the bridge reports one refused subject.
//! `tributary status` runs as `tributary-ops`. A second run covers the SaaS feeds (`[[wms]]`
//! webhooks, `[[salesforce_cdc]]`) and the Salesforce and ERP inbox sinks: the return leg of
//! tests/returns_loop.rs under the same user.

#[path = "support/catalogue.rs"]
mod catalogue;
#[path = "support/returns.rs"]
mod returns;
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use catalogue::repo;
use support::*;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{self, ShopifyOptions};
use tributary_sandbox::wms::{self, WmsOptions};
use tributary_testkit::{NatsOptions, NatsServer, PgCluster};

const SKUS: usize = 4;
const ROUNDS: i64 = 30;

/// The shipped permissions with the passwords set, plus an unrestricted `admin` for the
/// test's own reads.
fn permissions(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(repo().join("deploy/nats/permissions.conf"))?
        .replace("\"CHANGE-ME-bridge\"", "\"bridge-pw\"")
        .replace("\"CHANGE-ME-ops\"", "\"ops-pw\"")
        .replacen(
            "users = [",
            "users = [\n    { user: admin, password: \"admin-pw\" }",
            1,
        );
    let path = dir.join("permissions.conf");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The bridge's configuration as `user`.
fn as_user(config: &str, user: &str, password: &str) -> String {
    config.replacen(
        "[nats]\n",
        &format!("[nats]\nuser = \"{user}\"\npassword = \"{password}\"\n"),
        1,
    )
}

/// No "Permissions Violation" in the server's log nor in the bridge's.
fn assert_nothing_refused(nats: &NatsServer, bridge_log: &str) -> Result<()> {
    let server_log = std::fs::read_to_string(nats.log_path())?;
    let refused: Vec<&str> = server_log
        .lines()
        .filter(|l| l.contains("Permissions Violation"))
        .collect();
    assert!(
        refused.is_empty(),
        "nats-server refused subjects:\n{}",
        refused.join("\n")
    );
    assert!(
        !bridge_log.to_lowercase().contains("permissions violation"),
        "the bridge was refused a subject:\n{bridge_log}"
    );
    Ok(())
}

async fn restricted_nats(dir: &std::path::Path) -> Result<NatsServer> {
    NatsServer::start_with(NatsOptions {
        include: Some(permissions(dir)?),
        user: Some(("admin".into(), "admin-pw".into())),
        ..NatsOptions::default()
    })
    .await
    .map_err(Into::into)
}

async fn stock_rounds(
    erp: &tokio_postgres::Client,
    rounds: std::ops::RangeInclusive<i64>,
) -> Result<()> {
    for round in rounds {
        let mut sql = String::from("BEGIN;");
        for sku in 0..SKUS {
            for dc in ["DC1", "DC2"] {
                sql.push_str(&format!(
                    "INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-{sku}', '{dc}', {}) \
                     ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now();",
                    1000 + round * 10 + sku as i64
                ));
            }
        }
        sql.push_str("COMMIT;");
        erp.batch_execute(&sql).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_runs_as_its_least_privilege_nats_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = restricted_nats(dir.path()).await?;
    let pg = PgCluster::start().await?;
    let mut sources = retail_sources(&pg).await?;
    sources[0].extra.push_str("schema = \"reference\"\n");
    // Slow enough that a backlog is in flight when the bridge is killed.
    let wms = wms::start(WmsOptions {
        processing_delay: Duration::from_millis(150),
        ..WmsOptions::default()
    })
    .await?;
    wms.set_rate_limits(false);
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc2 = shop.add_location("DC2");
    let items = shop_catalog(&shop, (0..SKUS).map(|i| format!("SKU-{i}")), "9.50");
    let sinks = format!(
        "[sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\ninventory_location = \"DC1\"\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC2 = \"{dc2}\" }}\n\
         apply = [\"inventory\"]\n",
        wms.base_url(),
        shop.base_url()
    );
    let text = format!(
        "{}\n{sinks}\n[tracker]\n[reconcile.inventory]\ninterval_secs = 1\nrequests_per_second = 20\nrepair = true\n",
        retail_config(&pg, &nats.url(), &sources)?
    );
    let config = write_config(dir.path(), &as_user(&text, "tributary", "bridge-pw"))?;

    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;
    erp.batch_execute(
        "INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee');
         BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-1', 1, 'placed', 10);
         INSERT INTO order_lines VALUES ('SO-1', 1, 'SKU-1', 2, 5); COMMIT;
         UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-1';",
    )
    .await?;
    stock_rounds(&erp, 1..=ROUNDS).await?;
    // Killed in the middle of the WMS's backlog: its consumer has events delivered, unacked.
    wait_until(Duration::from_secs(120), async || {
        let n = wms.with_state(|s| s.adjustments.len());
        Ok(if n >= 3 {
            Check::Done(())
        } else {
            Check::Pending(format!("{n} WMS adjustments\n{}", bridge.log()))
        })
    })
    .await?;
    let first_log = bridge.log();
    bridge.kill9().await?;
    let bridge = Bridge::spawn(&config)?;
    stock_rounds(&erp, ROUNDS + 1..=ROUNDS + 5).await?;

    let last = |sku: usize| 1000 + (ROUNDS + 5) * 10 + sku as i64;
    wait_until(Duration::from_secs(180), async || {
        let order = wms.order_by_reference("SO-1").is_some();
        let stocked = (0..SKUS).all(|s| {
            let sku = format!("SKU-{s}");
            wms.stock(&sku) == Some(last(s))
                && shop
                    .inventory(&items[&sku], &dc2)
                    .is_some_and(|l| l.available == last(s))
        });
        Ok(if order && stocked {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "WMS order {order}, stock {stocked}\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    // The inventory reconciliation under the restricted user: a WMS count changed behind the
    // bridge's back is found (drift event, report) and repaired (repair event, sink).
    wms.set_stock("SKU-0", -5);
    wait_until(Duration::from_secs(60), async || {
        Ok(if wms.stock("SKU-0") == Some(last(0)) {
            Check::Done(())
        } else {
            Check::Pending(format!("SKU-0 not repaired\n{}", bridge.log()))
        })
    })
    .await?;
    let log = format!("{first_log}\n{}", bridge.log());
    assert!(
        log.contains("consumer reset to its ack floor"),
        "the restart rewound no consumer (nothing was in flight?):\n{log}"
    );

    // The ERP's events named their stored schema; the tracker kept the order's record.
    let admin = nats.connect().await?;
    let erp_events = read_all(&admin, &stream_name("erp")).await?;
    let referenced = erp_events
        .iter()
        .filter_map(|m| ChangeEvent::decode(m.payload.clone()).ok())
        .filter(|c| !c.schema_id.is_empty() && c.columns.is_empty())
        .count();
    assert!(
        referenced > 0 && referenced == erp_events.len(),
        "{referenced} of {} ERP events carry a schema reference",
        erp_events.len()
    );
    assert!(!read_all(&admin, "KV_tributary_cdc_schemas")
        .await?
        .is_empty());
    wait_until(Duration::from_secs(60), async || {
        let n = read_all(&admin, "KV_tributary_tracker").await?.len();
        Ok(if n > 0 {
            Check::Done(())
        } else {
            Check::Pending(format!("no tracker record\n{}", bridge.log()))
        })
    })
    .await?;

    // The operator's user reads the status.
    let ops = dir.path().join("ops");
    std::fs::create_dir_all(&ops)?;
    let ops_config = write_config(&ops, &as_user(&text, "tributary-ops", "ops-pw"))?;
    let ops_config = ops_config.to_string_lossy().to_string();
    let (code, stdout, stderr) =
        tributary(&["status", "--format", "json", "--config", &ops_config]).await?;
    assert_eq!(code, 0, "status as tributary-ops: {stdout}{stderr}");

    assert_nothing_refused(&nats, &log)?;
    let code = bridge.stop().await?;
    assert_eq!(code, 0, "the bridge exited {code}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saas_feeds_and_the_crm_and_erp_sinks_run_as_the_same_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let nats = restricted_nats(dir.path()).await?;
    let pg = PgCluster::start().await?;
    let sources = retail_sources(&pg).await?;
    let erp = pg.connect("erp").await?;
    let world = returns::ReturnsWorld::start(&erp).await?;
    let text = format!(
        "{}{}",
        retail_config(&pg, &nats.url(), &sources)?,
        world.config(&pg)
    );
    let config = write_config(dir.path(), &as_user(&text, "tributary", "bridge-pw"))?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let case_id = world.open_case(&[
        ("Subject", "Chipped"),
        ("Type", "Return"),
        ("Order_External_Id__c", "SO-1"),
        ("SKU__c", "SKU-1"),
        ("Quantity__c", "1"),
    ]);
    let case_key = format!("SF-{case_id}");
    wait_until(Duration::from_secs(120), async || {
        let state = returns::return_state(&erp, &case_key).await?;
        let on_case = world.case_state(Some(&case_id), None);
        Ok(
            if state == "refunded" && on_case == Some(serde_json::json!("refunded")) {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "ERP return {state:?}, Case {on_case:?}\n{}",
                    bridge.log()
                ))
            },
        )
    })
    .await?;
    assert_nothing_refused(&nats, &bridge.log())?;
    let code = bridge.stop().await?;
    assert_eq!(code, 0, "the bridge exited {code}");
    Ok(())
}

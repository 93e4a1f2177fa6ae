//! The ERP inbox sink: storefront orders placed in the Shopify emulator reach the bridge as
//! signed webhooks, become `order.placed` events, and are written into the sample ERP's inbox
//! (config/retail/erp.sql), whose trigger creates exactly one sales order per storefront
//! order, allocates stock and confirms it — which the ERP source publishes, and the WMS sink
//! releases to the WMS emulator. Refunds become credit memos. A connection the ERP drops is
//! reopened (a batch that meets it is retried). An order with a SKU the ERP
//! does not know is dead-lettered with the ERP's SQLSTATE and message while the others go
//! on; a replay of every event into the inbox writes nothing new; the inbox's own rows never
//! appear on the ERP's CDC stream, and an inbox that is published stops the start.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use tributary_sandbox::shopify::{self, ShopifyOptions, WebhookSubscription};
use tributary_sandbox::webhooks::RetryPolicy;
use tributary_sandbox::wms::{self, WmsOptions};
use tributary_testkit::PgCluster;

const SECRET: &str = "shpss_erp_inbox_secret";
const ORDERS: usize = 24;
const REFUNDS: usize = 4;

fn erp_sink_block(pg: &PgCluster) -> String {
    format!(
        "[sinks.erp]\ntable = \"public.tributary_inbox\"\nbatch_size = 8\nbatch_linger_ms = 20\n\
         [sinks.erp.connection]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"postgres\"\npassword = \"{}\"\ndbname = \"erp\"\n\
         [sinks.erp.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        pg.port(),
        pg.password()
    )
}

/// `tributary_sink_applied_total` of the ERP sink, summed over entities.
async fn erp_applied(http: &str) -> Result<f64> {
    let (_, body) = http_get(http, "/metrics").await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("tributary_sink_applied_total{") && l.contains("sink=\"erp\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn count(erp: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    Ok(erp.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storefront_orders_and_refunds_enter_the_erp_once_through_the_inbox() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let erp = pg.connect("erp").await?;
    erp.batch_execute(
        "INSERT INTO items (sku, title) VALUES ('SKU-1', 'Mug'), ('SKU-2', 'Plate');\
         INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-1', 'DC1', 1000), ('SKU-2', 'DC1', 1000);",
    )
    .await?;

    let hook_port = tributary_testkit::free_port();
    let shop = shopify::start(ShopifyOptions::default()).await?;
    shop.set_webhook_subscription(Some(WebhookSubscription {
        url: format!("http://127.0.0.1:{hook_port}/webhooks/shopify/web"),
        secret: SECRET.into(),
        policy: RetryPolicy::default(),
    }))?;
    let wms = wms::start(WmsOptions::default()).await?;

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[[shopify]]\nname = \"web\"\nlisten = \"127.0.0.1:{hook_port}\"\nwebhook_secret = \"{SECRET}\"\n\
         \n[sinks]\n\
         [sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n\
         [sinks.wms.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n{}",
        wms.base_url(),
        erp_sink_block(&pg)
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;

    // Checkouts on the storefront; one with a SKU the ERP does not sell; refunds of some.
    let mut placed = Vec::new();
    for i in 0..ORDERS {
        let o = shop.place_order(
            &format!("c{i}@example.com"),
            &[("SKU-1", 1 + (i % 3) as i64, "9.50"), ("SKU-2", 1, "4.00")],
            None,
        );
        placed.push(o.order_id);
    }
    // The ERP drops the sink's connection: the sink opens a new one.
    let dropped = count(
        &erp,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tributary-sink-erp'",
    )
    .await?;
    assert_eq!(dropped, 1, "the sink keeps one connection to the ERP");
    let bad = shop.place_order("bad@example.com", &[("SKU-404", 1, "1.00")], None);
    for gid in placed.iter().take(REFUNDS) {
        shop.refund_order(gid, "4.00")
            .ok_or_else(|| anyhow::anyhow!("no refund of {gid}"))?;
    }

    let client = nats.connect().await?;
    let web_orders = "SELECT count(*) FROM sales_orders WHERE storefront_ref IS NOT NULL";
    wait_until(Duration::from_secs(120), async || {
        let orders = count(&erp, web_orders).await?;
        let confirmed = count(&erp, "SELECT count(*) FROM sales_orders WHERE storefront_ref IS NOT NULL AND status = 'confirmed'").await?;
        let memos = count(&erp, "SELECT count(*) FROM credit_memos").await?;
        let refunded = count(&erp, "SELECT count(*) FROM sales_orders WHERE payment_state = 'refunded'").await?;
        let in_wms = wms.orders().len();
        let dlq = dead_letters(&client).await?.len();
        Ok(
            if orders == ORDERS as i64
                && confirmed == orders
                && memos == REFUNDS as i64
                && refunded == REFUNDS as i64
                && in_wms == ORDERS
                && dlq == 1
            {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "ERP orders {orders} (confirmed {confirmed}), credit memos {memos}, refunded {refunded}, WMS orders {in_wms}, dead letters {dlq}\nbridge log:\n{}",
                    bridge.log()
                ))
            },
        )
    })
    .await?;
    wait_quiescent(&client, Duration::from_secs(60)).await?;

    // One sales order per storefront order, carrying its Shopify id, released to the WMS.
    let rows = erp
        .query(
            "SELECT order_no, shop_order_id FROM sales_orders WHERE storefront_ref IS NOT NULL ORDER BY order_no",
            &[],
        )
        .await?;
    let mut linked: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
    linked.sort();
    let mut expected = placed.clone();
    expected.sort();
    assert_eq!(linked, expected, "one ERP sales order per storefront order");
    for r in &rows {
        let order_no: String = r.get(0);
        assert!(
            wms.order_by_reference(&order_no).is_some(),
            "{order_no} not released to the WMS"
        );
    }
    let lines = count(
        &erp,
        "SELECT count(*) FROM order_lines WHERE order_no LIKE 'SO-W%'",
    )
    .await?;
    assert_eq!(lines, 2 * ORDERS as i64);

    // The bad order: parked with the ERP's own error, and nothing of it in the ERP.
    let dlq = dead_letters(&client).await?;
    assert_eq!(dlq.len(), 1);
    assert_eq!(header(&dlq[0], "Tributary-Sink"), "erp");
    let reason = header(&dlq[0], "Tributary-Reason");
    assert!(
        reason.contains("SQLSTATE P0001") && reason.contains("SKU-404"),
        "reason: {reason}"
    );
    assert!(
        header(&dlq[0], "Tributary-Target-Response").contains("create the item in the ERP"),
        "the ERP's hint travels with the dead letter"
    );
    let bad_id = bad
        .order_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        count(
            &erp,
            &format!("SELECT count(*) FROM tributary_inbox WHERE entity_key = 'WEB-{bad_id}'")
        )
        .await?,
        0
    );

    // The inbox's rows never come back as source events (it is not published).
    let cdc = read_all(&client, "CDC_ERP").await?;
    assert!(cdc.iter().any(|m| m.subject.contains(".sales_orders.")));
    assert!(
        !cdc.iter().any(|m| m.subject.contains("tributary_inbox")),
        "an inbox row reached the ERP's CDC stream"
    );

    // A replay of every event into the inbox writes nothing new.
    let inbox_rows = count(&erp, "SELECT count(*) FROM tributary_inbox").await?;
    let stamp = "SELECT coalesce(max(received_at)::text, '') FROM tributary_inbox";
    let last_received: String = erp.query_one(stamp, &[]).await?.get(0);
    let http = text
        .split("http_listen = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_default()
        .to_string();
    let applied_before = erp_applied(&http).await?;
    replay_sink_from_start(&client, &config, "erp", &bridge).await?;
    // Every inbox event went to the ERP again (the replay window bypasses the version
    // guard) and the ERP took none of them as new.
    let reapplied = erp_applied(&http).await? - applied_before;
    assert!(
        reapplied >= inbox_rows as f64,
        "replay applied {reapplied} events, the inbox holds {inbox_rows}"
    );
    assert_eq!(
        count(&erp, "SELECT count(*) FROM tributary_inbox").await?,
        inbox_rows
    );
    let after: String = erp.query_one(stamp, &[]).await?.get(0);
    assert_eq!(after, last_received, "the replay inserted inbox rows");
    assert_eq!(count(&erp, web_orders).await?, ORDERS as i64);
    assert_eq!(
        count(&erp, "SELECT count(*) FROM credit_memos").await?,
        REFUNDS as i64
    );
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inbox_in_the_sources_publication_stops_the_start() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    pg.connect("erp")
        .await?
        .batch_execute("ALTER PUBLICATION tributary_erp ADD TABLE tributary_inbox")
        .await?;
    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!("\n[sinks]\n{}", erp_sink_block(&pg)));
    let config = write_config(dir.path(), &text)?;
    let (code, log) = run_to_exit(&config, Duration::from_secs(60)).await?;
    assert_ne!(code, 0);
    assert!(
        log.contains("sinks.erp.table") && log.contains("publication tributary_erp"),
        "log: {log}"
    );
    Ok(())
}

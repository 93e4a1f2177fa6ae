//! The whole pipeline (two PostgreSQL sources, the domain stage, the WMS, Shopify and
//! Salesforce sinks against their emulators, the Shopify, Salesforce CDC and WMS feeds, the
//! order-to-cash tracker)
//! serves, on its first scrape and before any traffic, a series for every catalogued metric
//! whose labels the configuration names (docs/metrics.md, "Series exist from start"): a
//! sink that never applies anything still has `tributary_sink_applied_total` 0 for alerts
//! to see.

#[path = "support/catalogue.rs"]
mod catalogue;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::*;
use tributary_sandbox::salesforce::{self, pubsub, SalesforceOptions};
use tributary_sandbox::shopify::{self, ShopifyOptions};
use tributary_sandbox::wms::{self, WmsOptions};

/// Labels whose values the configuration (or a fixed set in the code) names at start.
const KNOWN_LABELS: &[&str] = &[
    "source",
    "table",
    "op",
    "kind",
    "stream",
    "mapping",
    "entity",
    "sink",
    "partition",
    "trigger",
    "shop",
    "topic",
    "outcome",
    "resource",
    "feed",
    "listener",
    "component",
];

/// Catalogued metrics with only such labels that still have no series at start, and why
/// (docs/metrics.md says the same).
const LATER: &[(&str, &str)] = &[
    ("tributary_source_confirmed_lsn", "a position: 0 is not one"),
    (
        "tributary_source_server_wal_lsn",
        "a position: 0 is not one",
    ),
    (
        "tributary_shopify_reconcile_cursor_timestamp_seconds",
        "a Unix time: 0 would be 1970",
    ),
    (
        "tributary_salesforce_cdc_position_timestamp_seconds",
        "a Unix time: 0 would be 1970",
    ),
];

/// The series of a Prometheus text exposition: name → label sets (as `k="v"` lists).
fn series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, rest.split('}').next().unwrap_or_default()),
            None => (line.split_whitespace().next().unwrap_or_default(), ""),
        };
        out.entry(name.to_string())
            .or_default()
            .insert(labels.to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configured_series_exists_before_any_traffic() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let mut sources = retail_sources(&pg).await?;
    // erp lists its tables (their series exist at start); pos takes the whole publication.
    let erp_tables = [
        "customers",
        "items",
        "price_lists",
        "item_prices",
        "sales_orders",
    ]
    .iter()
    .chain(&["order_lines", "stock", "shipments", "returns"])
    .map(|t| format!("\"public.{t}\""))
    .collect::<Vec<_>>()
    .join(", ");
    sources[0].extra = format!("tables = [{erp_tables}]\n");

    let wms = wms::start(WmsOptions::default()).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let grpc = pubsub::start(
        sf.handle().clone(),
        ([127, 0, 0, 1], 0).into(),
        Duration::from_millis(300),
    )
    .await?;
    let (client_id, client_secret) = SalesforceOptions::default().clients[0].clone();
    let port = tributary_testkit::free_port;

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("http_listen = "))
        .map(|s| s.trim_matches('"').to_string())
        .expect("http_listen");
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.wms]\nbase_url = \"{wms_url}\"\napi_key = \"wms_sandbox\"\ninventory_location = \"DC1\"\n\
         [sinks.shopify]\nbase_url = \"{shop_url}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         apply = [\"inventory\", \"orders\", \"fulfillments\", \"prices\", \"customers\"]\nprice_list = \"web\"\n\
         [sinks.salesforce]\nbase_url = \"{sf_url}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
         [sinks.erp]\n[sinks.erp.connection]\nhost = \"127.0.0.1\"\nport = {pg_port}\nuser = \"postgres\"\npassword = \"{pg_password}\"\ndbname = \"erp\"\n\
         [[wms]]\nlisten = \"127.0.0.1:{wms_port}\"\npath = \"/webhooks/wms\"\nsecret = \"wms-webhook-secret-0123456789\"\n\
         [[shopify]]\nname = \"web\"\nlisten = \"127.0.0.1:{shop_port}\"\nwebhook_secret = \"shop-webhook-secret-0123456789\"\n\
         [[salesforce_cdc]]\nname = \"org\"\nlogin_url = \"{sf_url}\"\nclient_id = \"{client_id}\"\n\
         client_secret = \"{client_secret}\"\npubsub_url = \"{grpc_url}\"\ntopics = [\"/data/ChangeEvents\"]\n\
         initial_position = \"latest\"\n\
         [tracker]\n[reconcile.inventory]\n",
        wms_url = wms.base_url(),
        shop_url = shop.base_url(),
        sf_url = sf.base_url(),
        grpc_url = grpc.url(),
        pg_port = pg.port(),
        pg_password = pg.password(),
        wms_port = port(),
        shop_port = port(),
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;

    // The first answer of /metrics: the server starts after every component is prepared
    // and before any of them runs.
    let metrics = wait_until(Duration::from_secs(60), async || {
        Ok(match http_get(&addr, "/metrics").await {
            Ok((200, body)) => Check::Done(body),
            other => Check::Pending(format!(
                "no /metrics yet ({other:?})\nbridge log:\n{}",
                bridge.log()
            )),
        })
    })
    .await?;
    let present = series(&metrics);

    let mut missing = Vec::new();
    for row in catalogue::catalogue() {
        let labels: Vec<&str> = row
            .labels
            .split(',')
            .filter_map(|l| l.split_whitespace().next())
            .filter(|l| *l != "—")
            .collect();
        let known = labels.iter().all(|l| KNOWN_LABELS.contains(l));
        let required = known
            && row.kind != "histogram"
            && !row.name.starts_with("tributary_ha_")
            && !LATER.iter().any(|(n, _)| *n == row.name);
        if required && !present.contains_key(&row.name) {
            missing.push(row.name);
        }
    }
    assert!(
        missing.is_empty(),
        "catalogued metrics with configured labels but no series at start: {missing:?}\n/metrics:\n{metrics}"
    );

    // The series alerts depend on, with the configured label values.
    let has = |name: &str, labels: &str| present.get(name).is_some_and(|s| s.contains(labels));
    for sink in ["wms", "shopify", "salesforce", "erp"] {
        let applied = present
            .get("tributary_sink_applied_total")
            .map(|s| {
                s.iter()
                    .filter(|l| l.contains(&format!("sink=\"{sink}\"")))
                    .count()
            })
            .unwrap_or(0);
        assert!(applied > 0, "no applied series for sink {sink}:\n{metrics}");
        // One series per consumer: the sink's priority classes (`class`) after the partition.
        let of_sink = |name: &str| {
            present.get(name).is_some_and(|s| {
                s.iter()
                    .any(|l| l.starts_with(&format!("sink=\"{sink}\",partition=\"\",class=")))
            })
        };
        assert!(
            of_sink("tributary_sink_consumer_pending"),
            "no pending series for sink {sink}"
        );
    }
    // A sink with both classes reports each class's lag; one with one class, `all`.
    for (sink, class) in [("shopify", "low"), ("shopify", "high"), ("wms", "all")] {
        assert!(
            has(
                "tributary_sink_lag_seconds",
                &format!("sink=\"{sink}\",class=\"{class}\",partition=\"\"")
            ),
            "no lag series for sink {sink}, class {class}"
        );
    }
    assert!(has(
        "tributary_sink_applied_total",
        "sink=\"wms\",entity=\"order\""
    ));
    assert!(has(
        "tributary_source_changes_total",
        "source=\"erp\",table=\"public.sales_orders\",op=\"insert\""
    ));
    assert!(has("tributary_domain_consumer_pending", "source=\"pos\""));
    assert!(has(
        "tributary_shopify_webhooks_received_total",
        "shop=\"web\",topic=\"orders/create\""
    ));
    assert!(has(
        "tributary_salesforce_cdc_events_received_total",
        "feed=\"org\""
    ));
    for listener in ["ops", "shopify", "wms"] {
        assert!(has(
            "tributary_http_connections",
            &format!("listener=\"{listener}\"")
        ));
    }
    assert!(metrics.contains("\ntributary_sink_applied_total{sink=\"wms\",entity=\"order\"} 0\n"));
    bridge.stop().await?;
    Ok(())
}

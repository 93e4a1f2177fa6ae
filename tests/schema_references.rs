//! Schema references (`[[sources]] schema = "reference"`, docs/consumers.md): events carry
//! `schema_id` instead of their column list; the schema is in the KV bucket
//! `tributary_cdc_schemas` before any event names it; `ALTER TABLE` gives a new id while old
//! events still resolve; a restarted bridge finds its schemas stored (same ids, no new
//! revision); a backfill's rows name the same schema; `tributary tail`, the Rust and Python example consumers and the domain stage
//! resolve the ids and read the same rows as with inline descriptions.

#[path = "support/consumers.rs"]
mod consumers;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use consumers::{domain_events, python_example, retail_bridge, rust_example};
use support::*;
use tributary_proto::cdc::v1::{ChangeEvent, RelationSchema};
use tributary_proto::Message as _;

const BUCKET: &str = "tributary_cdc_schemas";

/// The `orders` events of the source's stream once there are `n` of them (heartbeats aside).
async fn orders_events(nats: &async_nats::Client, n: usize) -> Result<Vec<ChangeEvent>> {
    wait_until(Duration::from_secs(60), async || {
        let events: Vec<ChangeEvent> = read_stream(nats, "CDC_ERP")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.event)
            .filter(|e| e.table == "orders")
            .collect();
        Ok(if events.len() >= n {
            Check::Done(events)
        } else {
            Check::Pending(format!("{} orders events, expected {n}", events.len()))
        })
    })
    .await
}

/// Every key of the schema bucket with its revision.
async fn stored(nats: &async_nats::Client) -> Result<BTreeMap<String, u64>> {
    use futures::TryStreamExt as _;
    let kv = jetstream::new(nats.clone()).get_key_value(BUCKET).await?;
    let keys: Vec<String> = kv.keys().await?.try_collect().await?;
    let mut out = BTreeMap::new();
    for key in keys {
        let entry = kv.entry(&key).await?.context("entry")?;
        out.insert(key, entry.revision);
    }
    Ok(out)
}

async fn schema(nats: &async_nats::Client, id: &str) -> Result<RelationSchema> {
    let kv = jetstream::new(nats.clone()).get_key_value(BUCKET).await?;
    let bytes = kv.get(id).await?.with_context(|| format!("schema {id}"))?;
    Ok(RelationSchema::decode(bytes)?)
}

fn names(schema: &RelationSchema) -> Vec<&str> {
    schema.columns.iter().map(|c| c.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_a_stored_schema_across_alter_table_and_restart() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL);
         INSERT INTO orders VALUES (1, 10);
         CREATE TABLE tributary_signals (id text PRIMARY KEY, type text NOT NULL, data text);
         CREATE PUBLICATION pub_erp FOR TABLE orders, tributary_signals;",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = "schema = \"reference\"\nsignal_table = \"public.tributary_signals\"\n".into();
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    db.batch_execute(
        "INSERT INTO orders VALUES (2, 20), (3, 30); UPDATE orders SET qty = 21 WHERE id = 2;",
    )
    .await?;
    let client = nats.connect().await?;

    // The snapshot's read and the streamed changes: an id, no inline description.
    let events = orders_events(&client, 4).await?;
    let first = events[0].schema_id.clone();
    for e in &events {
        assert_eq!(e.schema_id, first, "one shape, one id: {e:?}");
        assert!(e.columns.is_empty() && e.key_columns.is_empty(), "{e:?}");
    }
    let v1 = schema(&client, &first).await?;
    assert_eq!(
        (v1.id.as_str(), names(&v1)),
        (first.as_str(), vec!["id", "qty"])
    );
    assert_eq!(v1.key_columns, ["id"]);
    assert_eq!(
        (v1.schema.as_str(), v1.table.as_str()),
        ("public", "orders")
    );

    // A new shape, a new id; the old one stays resolvable.
    db.batch_execute(
        "ALTER TABLE orders ADD COLUMN note text; INSERT INTO orders VALUES (4, 40, 'n');",
    )
    .await?;
    let events = orders_events(&client, 5).await?;
    let second = events[4].schema_id.clone();
    assert!(!second.is_empty() && second != first);
    assert_eq!(
        names(&schema(&client, &second).await?),
        ["id", "qty", "note"]
    );
    assert_eq!(names(&schema(&client, &first).await?), ["id", "qty"]);
    let before_restart = stored(&client).await?;
    // Two versions of orders (and the signal table's one), nothing else.
    let mut tables = Vec::new();
    for id in before_restart.keys() {
        let s = schema(&client, id).await?;
        tables.push((s.table.clone(), names(&s).len()));
    }
    tables.sort();
    assert_eq!(
        tables,
        [
            ("orders".into(), 2),
            ("orders".into(), 3),
            ("tributary_signals".into(), 3)
        ],
        "{before_restart:?}"
    );

    // A restarted bridge describes the table again: same id, nothing stored anew.
    assert_eq!(bridge.stop().await?, 0);
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    db.batch_execute("INSERT INTO orders VALUES (5, 50, 'x');")
        .await?;
    let events = orders_events(&client, 6).await?;
    assert_eq!(events[5].schema_id, second, "{}", bridge.log());
    assert_eq!(
        stored(&client).await?,
        before_restart,
        "same keys, same revisions"
    );

    // Consumers resolve the ids: every message stored so far, old shape and new.
    let js = jetstream::new(client.clone());
    let total = js.get_stream("CDC_ERP").await?.info().await?.state.messages;
    let n = total.to_string();
    let config_arg = config.to_string_lossy().to_string();
    let (code, out, err) = tributary(&[
        "tail",
        "--config",
        &config_arg,
        "--subject",
        "cdc.erp.>",
        "--from-seq",
        "1",
        "--count",
        &n,
        "--format",
        "json",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    let orders: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["event"]["table"] == "orders")
        .collect();
    assert_eq!(orders.len(), 6, "{out}");
    for r in &orders {
        let columns = r["event"]["columns"].as_array().context("columns")?;
        let want = if r["event"]["schemaId"] == first.as_str() {
            2
        } else {
            3
        };
        assert_eq!(columns.len(), want, "{r}");
        assert_eq!(r["event"]["keyColumns"], serde_json::json!(["id"]), "{r}");
    }
    let rust = rust_example(&nats.url(), &n).await?;
    assert!(
        rust.contains(&format!("cdc.erp.public.orders.insert op=OPERATION_INSERT schema={first} key=[id] id=2 qty=20\n")),
        "{rust}"
    );
    assert!(
        rust.contains(&format!("cdc.erp.public.orders.insert op=OPERATION_INSERT schema={second} key=[id] id=4 qty=40 note=n\n")),
        "{rust}"
    );
    if let Some(lines) = python_example(&nats.url(), &n).await? {
        let rows: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| {
                l["subject"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("cdc.erp.public.orders"))
            })
            .collect();
        assert_eq!(rows.len(), 6, "{lines:?}");
        assert_eq!(rows[0]["op"], "OPERATION_READ");
        assert_eq!(
            rows[0]["row"],
            serde_json::json!({"id": {"int": "1"}, "qty": {"int": "10"}})
        );
        assert_eq!(rows[4]["schema_id"], second.as_str());
        assert_eq!(
            rows[4]["row"],
            serde_json::json!({"id": {"int": "4"}, "qty": {"int": "40"}, "note": {"text": "n"}})
        );
        assert_eq!(rows[4]["key_columns"], serde_json::json!(["id"]));
    }

    // A backfill describes the table from the catalog: its rows name the same stored schema.
    let (code, _, err) = tributary(&[
        "backfill",
        "--config",
        &config_arg,
        "--source",
        "erp",
        "--table",
        "public.orders",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let events = orders_events(&client, 11).await?;
    for e in &events[6..] {
        assert_eq!((e.op, e.schema_id.as_str()), (5, second.as_str()), "{e:?}");
        assert!(e.columns.is_empty());
    }
    assert_eq!(stored(&client).await?, before_restart, "{}", bridge.log());
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_stage_maps_references_as_it_maps_inline_columns() -> Result<()> {
    let pg = tributary_testkit::PgCluster::start().await?;
    retail_sources(&pg).await?;
    let dir = tempfile::tempdir()?;
    let (inline_nats, inline) = retail_bridge(&pg, dir.path(), "inline", "").await?;
    let (ref_nats, reference) =
        retail_bridge(&pg, dir.path(), "ref", "schema = \"reference\"\n").await?;
    pg.connect("erp")
        .await?
        .batch_execute(
            "INSERT INTO customers VALUES (7, 'ann@example.com', 'Ann', 'Lee', '+4411', true, '2026-01-02 03:04:05+00');
             INSERT INTO items VALUES ('SKU-1', 'Mug', 'A mug', true);
             INSERT INTO price_lists VALUES ('retail', 'EUR');
             INSERT INTO item_prices VALUES ('retail', 'SKU-1', 12.50, '2026-01-01');
             INSERT INTO stock VALUES ('SKU-1', 'DC1', 100, 5);
             BEGIN;
             INSERT INTO sales_orders (order_no, customer_id, status, channel, currency, total, tax, payment_state, placed_at)
                 VALUES ('SO-1', 7, 'placed', 'web', 'EUR', 25.00, 4.17, 'authorized', '2026-02-03 10:00:00+00');
             INSERT INTO order_lines VALUES ('SO-1', 1, 'SKU-1', 2, 12.50);
             COMMIT;
             UPDATE customers SET last_name = 'Lee-Smith' WHERE id = 7;
             UPDATE sales_orders SET status = 'shipped', payment_state = 'paid' WHERE order_no = 'SO-1';",
        )
        .await?;
    pg.connect("pos")
        .await?
        .batch_execute(
            "INSERT INTO stores VALUES (3, 'Leeds');
             BEGIN;
             INSERT INTO sales VALUES (501, 3, NULL, 25.00, '2026-02-04 12:00:00+00');
             INSERT INTO sale_lines VALUES (501, 1, 'SKU-1', 2, 12.50);
             COMMIT;",
        )
        .await?;
    let expected = domain_events(&inline_nats, 10).await?;
    let got = domain_events(&ref_nats, expected.len()).await?;
    assert_eq!(got, expected, "reference bridge log:\n{}", reference.log());
    // The reference bridge's CDC events really were by reference.
    let cdc = read_stream(&ref_nats.connect().await?, "CDC_ERP").await?;
    let rows: Vec<&ChangeEvent> = cdc
        .iter()
        .map(|r| &r.event)
        .filter(|e| !e.table.is_empty())
        .collect();
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|e| !e.schema_id.is_empty() && e.columns.is_empty()));
    inline.stop().await?;
    reference.stop().await?;
    Ok(())
}

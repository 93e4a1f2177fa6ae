//! Batched snapshot reads (`[[sources]] snapshot_rows_per_message`, docs/consumers.md): the
//! snapshot's rows go out as `ChangeEventBatch` messages on `...read_batch`, and nothing else
//! changes — the stream replays to the tables across a SIGKILL mid-snapshot (at most the
//! chunk in progress is read again), the batches respect their row bound, every read
//! precedes the changes that follow, and every consumer (`tributary tail`, the Rust and
//! Python examples, the domain stage) reads the same rows as from single `read` events,
//! including with schema references across `ALTER TABLE`; the domain stage also maps batched
//! changes (`changes_per_message`) as it maps single ones. (Crash recovery with batched
//! changes: tests/crash_recovery.rs.)

#[path = "support/consumers.rs"]
mod consumers;
#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use consumers::{domain_events, python_example, retail_bridge_edited, rust_example};
use support::*;
use tributary_proto::cdc::v1::Operation;

const ORDERS: u64 = 200_000;
const AUDIT: u64 = 10_000;
const ROWS_PER_MESSAGE: usize = 100;

const SCHEMA: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, note text);
CREATE TABLE audit (seq bigint NOT NULL, what text NOT NULL);
ALTER TABLE audit REPLICA IDENTITY FULL;
INSERT INTO orders SELECT i, i % 50, 'n' || i FROM generate_series(1, 200000) i;
INSERT INTO audit SELECT i, repeat('a', i % 20) FROM generate_series(1, 10000) i;
CREATE PUBLICATION pub_erp FOR TABLE orders, audit;
ANALYZE;
";

fn is_read(r: &Received) -> bool {
    r.event.op == Operation::Read as i32
}

/// `(attempt, oid.chunk, row number)` of a read id `<source>:<lsn>:r<attempt>.<oid>.<chunk>.<n>`.
fn read_position(id: &str) -> (String, String, u64) {
    let tail = id.rsplit(':').next().unwrap_or_default();
    let parts: Vec<&str> = tail.split('.').collect();
    assert_eq!(parts.len(), 4, "unexpected read id {id}");
    (
        parts[0].to_string(),
        format!("{}.{}", parts[1], parts[2]),
        parts[3].parse().expect("row number"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_snapshot_survives_sigkill_and_replays_to_the_tables() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(SCHEMA).await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = format!(
        "snapshot_parallelism = 1\nsnapshot_chunk_rows = 4000\nsnapshot_rows_per_message = {ROWS_PER_MESSAGE}\n"
    );
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let client = nats.connect().await?;
    let first = Bridge::spawn(&config)?;
    // 60 batches: 6,000 of the 210,000 rows.
    wait_for_messages(&client, "CDC_ERP", 60, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", first.log()))?;
    first.kill9().await?;
    let js = jetstream::new(client.clone());
    let before = js.get_stream("CDC_ERP").await?.info().await?.state.messages;
    let all_batches = (ORDERS + AUDIT) / ROWS_PER_MESSAGE as u64;
    assert!(
        before < all_batches,
        "killed mid-snapshot ({before} of ~{all_batches} batches)"
    );
    db.batch_execute("UPDATE orders SET note = 'after the crash' WHERE id % 1000 = 0")
        .await?;

    let second = Bridge::spawn(&config)?;
    let received = wait_until(Duration::from_secs(300), async || {
        let received = read_stream(&client, "CDC_ERP").await?;
        let reads = received.iter().filter(|r| is_read(r)).count() as u64;
        let updates = received
            .iter()
            .filter(|r| r.event.op == Operation::Update as i32)
            .count();
        Ok(if reads >= ORDERS + AUDIT && updates == 200 {
            Check::Done(received)
        } else {
            Check::Pending(format!(
                "reads {reads}, updates {updates}\n{}",
                second.log()
            ))
        })
    })
    .await?;
    check_stream_invariants(&received)?;
    let orders_sql = "SELECT id::text, qty::text, note FROM orders";
    assert!(replay(&received, "orders")? == table_state(&db, orders_sql).await?);
    let audit_sql = "SELECT seq::text, what FROM audit";
    assert!(replay(&received, "audit")? == table_state(&db, audit_sql).await?);

    // Every read is in a batch, and every read precedes the updates made after the crash.
    let last_read = received.iter().rposition(is_read).context("reads")?;
    let first_change = received
        .iter()
        .position(|r| !is_read(r))
        .context("changes")?;
    assert!(last_read < first_change, "reads precede the changes");
    let mut batches: BTreeMap<u64, Vec<(String, String, u64)>> = BTreeMap::new();
    let mut singles = 0;
    for r in received.iter().filter(|r| is_read(r)) {
        // A run of one (the last row of a chunk) goes out as a plain read.
        if r.subject.ends_with(".read") {
            singles += 1;
        } else {
            assert!(r.subject.ends_with(".read_batch"), "{}", r.subject);
        }
        batches
            .entry(r.sequence)
            .or_default()
            .push(read_position(&r.event.event_id));
    }
    // One chunk per batch, consecutive rows, at most the bound; batches really are full.
    for (seq, rows) in &batches {
        assert!(
            rows.len() <= ROWS_PER_MESSAGE,
            "batch at {seq}: {}",
            rows.len()
        );
        let (attempt, chunk, first_row) = &rows[0];
        for (i, (a, c, n)) in rows.iter().enumerate() {
            assert_eq!(
                (a, c, *n),
                (attempt, chunk, first_row + i as u64),
                "batch at {seq}"
            );
        }
    }
    let reads = received.iter().filter(|r| is_read(r)).count();
    let chunks: BTreeSet<(&String, &String)> = batches
        .values()
        .flatten()
        .map(|(attempt, chunk, _)| (attempt, chunk))
        .collect();
    assert!(
        singles <= chunks.len(),
        "{singles} single reads, {} chunks",
        chunks.len()
    );
    assert!(
        batches.len() * ROWS_PER_MESSAGE < reads + reads / 10,
        "{} batches for {reads} reads",
        batches.len()
    );

    // As for single reads: only the chunk in progress may be read again per interruption.
    let mut chunks_by_attempt: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rows in batches.values() {
        for (attempt, chunk, _) in rows {
            chunks_by_attempt
                .entry(attempt.clone())
                .or_default()
                .insert(chunk.clone());
        }
    }
    let attempts = chunks_by_attempt.len();
    assert!(attempts >= 2, "the kill interrupted the snapshot");
    let mut reads_of_chunk: BTreeMap<&String, usize> = BTreeMap::new();
    for chunks in chunks_by_attempt.values() {
        for c in chunks {
            *reads_of_chunk.entry(c).or_default() += 1;
        }
    }
    let repeated: usize = reads_of_chunk.values().map(|n| n - 1).sum();
    assert!(
        repeated < attempts,
        "{repeated} repeated chunk reads over {attempts} attempts"
    );
    assert_eq!(second.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_batches_with_schema_references_across_alter_table() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL);
         INSERT INTO orders SELECT i, i * 10 FROM generate_series(1, 250) i;
         CREATE PUBLICATION pub_erp FOR TABLE orders;",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = "schema = \"reference\"\nsnapshot_rows_per_message = 100\n".into();
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let client = nats.connect().await?;
    // The snapshot first: an ALTER TABLE that lands while it copies changes the rows it reads
    // (PostgreSQL's catalog is not versioned by the snapshot), and so their schema.
    wait_for_messages(&client, "CDC_ERP", 3, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", bridge.log()))?;
    db.batch_execute(
        "ALTER TABLE orders ADD COLUMN note text; INSERT INTO orders VALUES (1001, 7, 'n');",
    )
    .await?;
    // Three batches (100, 100, 50 rows), then the insert on its own.
    wait_for_messages(&client, "CDC_ERP", 4, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", bridge.log()))?;
    let subjects: Vec<String> = read_all(&client, "CDC_ERP")
        .await?
        .iter()
        .map(|m| m.subject.to_string())
        .filter(|s| s.contains(".orders."))
        .collect();
    assert_eq!(
        subjects,
        [
            "cdc.erp.public.orders.read_batch",
            "cdc.erp.public.orders.read_batch",
            "cdc.erp.public.orders.read_batch",
            "cdc.erp.public.orders.insert"
        ],
        "{}",
        bridge.log()
    );
    let received = read_stream(&client, "CDC_ERP").await?;
    let orders: Vec<&Received> = received
        .iter()
        .filter(|r| r.event.table == "orders")
        .collect();
    assert_eq!(orders.len(), 251);
    let first = orders[0].event.schema_id.clone();
    let second = orders[250].event.schema_id.clone();
    assert!(!first.is_empty() && !second.is_empty() && first != second);
    assert!(orders[..250].iter().all(|r| r.event.schema_id == first
        && r.event.columns.is_empty()
        && r.event.after.is_some()));

    // `tributary tail`: one record per event, its place in the batch, the schema resolved.
    let config_arg = config.to_string_lossy().to_string();
    let (code, out, err) = tributary(&[
        "tail",
        "--config",
        &config_arg,
        "--subject",
        "cdc.erp.public.orders.>",
        "--from-seq",
        "1",
        "--count",
        "251",
        "--format",
        "json",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(rows.len(), 251, "{out}");
    let indexes: Vec<u64> = rows[..250]
        .iter()
        .map(|r| r["batch_index"].as_u64().unwrap_or(u64::MAX))
        .collect();
    let expected: Vec<u64> = (0..100).chain(0..100).chain(0..50).collect();
    assert_eq!(indexes, expected);
    for (i, r) in rows[..250].iter().enumerate() {
        assert_eq!(r["event"]["op"], "OPERATION_READ", "{r}");
        assert_eq!(
            r["event"]["columns"].as_array().map(Vec::len),
            Some(2),
            "{r}"
        );
        let id = r["event"]["after"]["values"][0]["int"].as_i64();
        assert_eq!(id, Some(i as i64 + 1), "rows in order: {r}");
    }
    assert!(rows[250].get("batch_index").is_none());
    assert_eq!(
        rows[250]["event"]["columns"].as_array().map(Vec::len),
        Some(3)
    );

    // The example consumers, as a user runs them.
    let rust = rust_example(&nats.url(), "251").await?;
    let reads: Vec<&str> = rust
        .lines()
        .filter(|l| l.contains("op=OPERATION_READ"))
        .collect();
    assert_eq!(reads.len(), 250, "{rust}");
    assert!(
        rust.contains(&format!(
            "cdc.erp.public.orders.read_batch op=OPERATION_READ schema={first} key=[id] id=250 qty=2500\n"
        )),
        "{rust}"
    );
    assert!(
        rust.contains(&format!(
            "cdc.erp.public.orders.insert op=OPERATION_INSERT schema={second} key=[id] id=1001 qty=7 note=n\n"
        )),
        "{rust}"
    );
    if let Some(lines) = python_example(&nats.url(), "251").await? {
        let orders: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| {
                l["subject"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("cdc.erp.public.orders"))
            })
            .collect();
        assert_eq!(orders.len(), 251, "{lines:?}");
        assert_eq!(orders[199]["op"], "OPERATION_READ");
        assert_eq!(
            orders[199]["row"],
            serde_json::json!({"id": {"int": "200"}, "qty": {"int": "2000"}})
        );
        assert_eq!(orders[250]["schema_id"], second.as_str());
        assert_eq!(
            orders[250]["row"],
            serde_json::json!({"id": {"int": "1001"}, "qty": {"int": "7"}, "note": {"text": "n"}})
        );
    }
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_stage_maps_batched_reads_as_it_maps_single_reads() -> Result<()> {
    let pg = tributary_testkit::PgCluster::start().await?;
    retail_sources(&pg).await?;
    // Rows that exist before either bridge starts: both take them from their snapshot.
    pg.connect("erp")
        .await?
        .batch_execute(
            "INSERT INTO customers (id, email, first_name, last_name, updated_at)
                 SELECT i, 'c' || i || '@example.com', 'First' || i, 'Last' || i, '2026-01-02 03:04:05+00'
                 FROM generate_series(1, 40) i;
             INSERT INTO items SELECT 'SKU-' || i, 'Item ' || i, NULL, true FROM generate_series(1, 5) i;
             INSERT INTO price_lists VALUES ('retail', 'EUR');
             INSERT INTO item_prices SELECT 'retail', 'SKU-' || i, 10 + i, '2026-01-01' FROM generate_series(1, 5) i;
             INSERT INTO stock SELECT 'SKU-' || i, 'DC1', 100 + i, 0, '2026-01-02 03:04:05+00' FROM generate_series(1, 5) i;
             INSERT INTO sales_orders (order_no, customer_id, status, channel, currency, total, tax, payment_state, placed_at)
                 SELECT 'SO-' || i, i, 'placed', 'web', 'EUR', 25.00, 4.17, 'authorized', '2026-02-03 10:00:00+00'
                 FROM generate_series(1, 15) i;
             INSERT INTO order_lines SELECT 'SO-' || i, l, 'SKU-' || l, l, 12.50
                 FROM generate_series(1, 15) i, generate_series(1, 2) l;",
        )
        .await?;
    let dir = tempfile::tempdir()?;
    // The sample mappings of inserts also map snapshot reads (customers, orders, lines).
    let reads_too =
        |text: String| text.replace("ops = [\"insert\"]", "ops = [\"insert\", \"read\"]");
    // One snapshot worker each: the same rows in the same order, singly or 7 to a message.
    let (single_nats, single) = retail_bridge_edited(
        &pg,
        dir.path(),
        "single",
        "snapshot_parallelism = 1\n",
        reads_too,
    )
    .await?;
    let (batch_nats, batched) = retail_bridge_edited(
        &pg,
        dir.path(),
        "batched",
        "snapshot_parallelism = 1\nsnapshot_rows_per_message = 7\nchanges_per_message = 100\n",
        reads_too,
    )
    .await?;
    // Changes after the snapshot: one transaction of 20 updates, one of 40 lines of one order
    // (a batch holding more events for one entity than the stage writes at once).
    pg.connect("erp")
        .await?
        .batch_execute(
            "UPDATE customers SET last_name = last_name || '-x' WHERE id BETWEEN 1 AND 20;
             INSERT INTO order_lines SELECT 'SO-1', 100 + l, 'SKU-1', 1, 12.50 FROM generate_series(1, 40) l;",
        )
        .await?;
    for nats in [&single_nats, &batch_nats] {
        let client = nats.connect().await?;
        wait_until(Duration::from_secs(60), async || {
            let received = read_stream(&client, "CDC_ERP").await?;
            let count = |op: Operation| received.iter().filter(|r| r.event.op == op as i32).count();
            let (updates, inserts) = (count(Operation::Update), count(Operation::Insert));
            Ok(if updates >= 20 && inserts >= 40 {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "{updates} of 20 updates, {inserts} of 40 inserts stored"
                ))
            })
        })
        .await?;
    }
    let expected = domain_events(&single_nats, 40).await?;
    let got = domain_events(&batch_nats, expected.len()).await?;
    assert_eq!(got, expected, "batched bridge log:\n{}", batched.log());
    // The batched bridge's snapshot really was in batches, and dead-lettered what the other
    // one did (the mappings' own refusals), nothing more.
    let client = batch_nats.connect().await?;
    let cdc = read_all(&client, "CDC_ERP").await?;
    assert!(cdc
        .iter()
        .any(|m| m.subject.as_str() == "cdc.erp.public.customers.read_batch"));
    assert!(cdc
        .iter()
        .any(|m| m.subject.as_str() == "cdc.erp.public.customers.update_batch"));
    assert!(cdc
        .iter()
        .any(|m| m.subject.as_str() == "cdc.erp.public.order_lines.insert_batch"));
    let single_letters = dead_letters(&single_nats.connect().await?).await?.len();
    assert_eq!(dead_letters(&client).await?.len(), single_letters);
    single.stop().await?;
    batched.stop().await?;
    Ok(())
}

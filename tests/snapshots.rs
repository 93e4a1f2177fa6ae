//! Snapshots: existing rows arrive as `read` events consistent with the slot — with writes
//! going on meanwhile, across a SIGKILL mid-snapshot, for a table without a primary key, and
//! with one table the bridge may not read (reported, the rest completes).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use tributary_proto::cdc::v1::Operation;

const SCHEMA: &str = "
CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, price numeric(14,4) NOT NULL, note text, updated_at timestamptz NOT NULL);
CREATE TABLE customers (email text PRIMARY KEY, name text NOT NULL, score int);
CREATE TABLE audit (seq bigint NOT NULL, what text NOT NULL);
ALTER TABLE audit REPLICA IDENTITY FULL;
INSERT INTO orders SELECT i, i % 50, i * 0.25, 'n' || i, now() - i * interval '1 second' FROM generate_series(1, 150000) i;
INSERT INTO customers SELECT 'c' || i || '@example.com', 'Customer ' || i, i % 1000 FROM generate_series(1, 100000) i;
INSERT INTO audit SELECT i, repeat('a', i % 20) FROM generate_series(1, 50000) i;
CREATE PUBLICATION pub_erp FOR TABLE orders, customers, audit;
";

const CUSTOMERS_SQL: &str = "SELECT email, name, score::text FROM customers";
const AUDIT_SQL: &str = "SELECT seq::text, what FROM audit";

async fn setup(pg: &tributary_testkit::PgCluster) -> Result<tokio_postgres::Client> {
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(SCHEMA).await?;
    db.batch_execute("ANALYZE").await?;
    Ok(db)
}

async fn assert_replay_matches(
    client: &async_nats::Client,
    db: &tokio_postgres::Client,
) -> Result<Vec<Received>> {
    let received = read_stream(client, "CDC_ERP").await?;
    check_stream_invariants(&received)?;
    assert!(
        replay(&received, "orders")? == table_state(db, ORDERS_STATE_SQL).await?,
        "orders replay differs"
    );
    assert!(
        replay(&received, "customers")? == table_state(db, CUSTOMERS_SQL).await?,
        "customers replay differs"
    );
    assert!(
        replay(&received, "audit")? == table_state(db, AUDIT_SQL).await?,
        "audit replay differs"
    );
    Ok(received)
}

async fn wait_count(
    client: &async_nats::Client,
    db: &tokio_postgres::Client,
    extra: u64,
    bridge: &Bridge,
) -> Result<()> {
    let rows: i64 = db
        .query_one("SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM customers) + (SELECT count(*) FROM audit)", &[])
        .await?
        .get(0);
    wait_for_messages(
        client,
        "CDC_ERP",
        rows as u64 + extra,
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", bridge.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_snapshot_with_concurrent_writes_replays_to_the_tables() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let db = setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = "snapshot_parallelism = 2\nsnapshot_chunk_rows = 20000\n".into();
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let bridge = Bridge::spawn(&config)?;
    wait_slot(&pg, "slot_erp").await?;
    // Writes while the snapshot copies: updates and deletes of existing rows, new rows.
    let writes = orders_workload(&db, 5_000, 21, 1_000_000).await?;
    db.batch_execute(
        "UPDATE orders SET qty = qty + 1000, updated_at = now() WHERE id % 97 = 0;
         DELETE FROM orders WHERE id % 101 = 0;
         UPDATE customers SET score = -1 WHERE score = 7;
         INSERT INTO audit SELECT i, 'late' FROM generate_series(50001, 50100) i;",
    )
    .await?;
    let client = nats.connect().await?;
    // Every row is read once; at least the later changes follow.
    wait_until(Duration::from_secs(300), async || {
        let received = read_stream(&client, "CDC_ERP").await?;
        let reads = received
            .iter()
            .filter(|r| r.event.op == Operation::Read as i32)
            .count();
        let changes = received.len() - reads;
        Ok(if reads == 300_000 && changes >= writes {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "reads {reads}, changes {changes}\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    // The last statement's changes are in once the stream holds a heartbeat-free tail; wait for its size.
    let received = wait_until(Duration::from_secs(300), async || {
        Ok(match assert_replay_matches(&client, &db).await {
            Ok(received) => Check::Done(received),
            Err(e) => Check::Pending(format!("{e:#}")),
        })
    })
    .await?;
    let first_change = received
        .iter()
        .position(|r| r.event.op != Operation::Read as i32)
        .unwrap_or(received.len());
    assert_eq!(
        first_change, 300_000,
        "every read comes before the changes that follow the snapshot"
    );
    let log = bridge.log();
    assert!(log.contains("snapshot: done"), "{log}");
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_snapshot_resumes_from_the_last_finished_chunk() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let db = setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = "snapshot_parallelism = 1\nsnapshot_chunk_rows = 5000\n".into();
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let client = nats.connect().await?;
    let first = Bridge::spawn(&config)?;
    wait_for_messages(&client, "CDC_ERP", 40_000, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", first.log()))?;
    first.kill9().await?;
    let js = async_nats::jetstream::new(client.clone());
    let before = js.get_stream("CDC_ERP").await?.info().await?.state.messages;
    assert!(before < 300_000, "killed mid-snapshot ({before} reads)");
    db.batch_execute("UPDATE orders SET note = 'after the crash' WHERE id % 1000 = 0")
        .await?;

    let second = Bridge::spawn(&config)?;
    // Done when every row was read and the 150 updates made after the crash followed.
    wait_until(Duration::from_secs(300), async || {
        let received = read_stream(&client, "CDC_ERP").await?;
        let reads = received
            .iter()
            .filter(|r| r.event.op == Operation::Read as i32)
            .count();
        let updates = received
            .iter()
            .filter(|r| r.event.op == Operation::Update as i32)
            .count();
        Ok(if reads >= 300_000 && updates == 150 {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "reads {reads}, updates {updates}\n{}",
                second.log()
            ))
        })
    })
    .await?;
    let received = assert_replay_matches(&client, &db).await?;
    // Read ids are `<source>:<lsn>:r<attempt>.<oid>.<chunk>.<n>`. A chunk that both attempts
    // read is one the crash interrupted; only the chunk in progress may be read twice. (A
    // page-range chunk can hold more than `snapshot_chunk_rows` rows, so count chunks, not rows.)
    let mut chunks_by_attempt: std::collections::BTreeMap<
        String,
        std::collections::BTreeSet<String>,
    > = Default::default();
    for r in received
        .iter()
        .filter(|r| r.event.op == Operation::Read as i32)
    {
        let read = r.event.event_id.rsplit(':').next().unwrap_or_default();
        let mut parts = read.splitn(4, '.');
        let (Some(attempt), Some(oid), Some(chunk)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("unexpected read id {}", r.event.event_id);
        };
        chunks_by_attempt
            .entry(attempt.to_string())
            .or_default()
            .insert(format!("{oid}.{chunk}"));
    }
    // The kill is one interruption; a loaded machine can add others (a session restarted
    // after a NATS timeout resumes the snapshot as a further attempt). Each interruption
    // leaves at most the chunk in progress (parallelism 1) to be read again.
    let attempts = chunks_by_attempt.len();
    assert!(
        attempts >= 2,
        "the kill interrupted the snapshot: {:?}",
        chunks_by_attempt.keys()
    );
    let mut reads_of_chunk: std::collections::BTreeMap<&String, usize> = Default::default();
    for chunks in chunks_by_attempt.values() {
        for c in chunks {
            *reads_of_chunk.entry(c).or_default() += 1;
        }
    }
    let repeated: usize = reads_of_chunk.values().map(|n| n - 1).sum();
    assert!(
        repeated < attempts,
        "at most the chunk in progress is read again per interruption: {repeated} repeated chunk reads over {attempts} attempts"
    );
    let log = second.log();
    assert!(log.contains("resuming the interrupted snapshot"), "{log}");
    assert_eq!(second.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_table_is_reported_and_the_rest_completes() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let db = setup(&pg).await?;
    db.batch_execute(
        "CREATE TABLE secrets (id int PRIMARY KEY, s text);
         INSERT INTO secrets VALUES (1, 'x');
         ALTER PUBLICATION pub_erp ADD TABLE secrets;
         CREATE ROLE bridge LOGIN REPLICATION PASSWORD 'bridge';
         GRANT SELECT ON orders, customers, audit TO bridge;",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace("user = \"postgres\"", "user = \"bridge\"")
        .replace(
            &format!("password = \"{}\"", pg.password()),
            "password = \"bridge\"",
        );
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    let client = nats.connect().await?;
    wait_count(&client, &db, 0, &bridge).await?;
    db.batch_execute("INSERT INTO orders VALUES (9999999, 1, 1, 'streamed', now())")
        .await?;
    wait_count(&client, &db, 0, &bridge).await?;
    assert_replay_matches(&client, &db).await?;
    let log = bridge.log();
    assert!(
        log.contains("public.secrets") && log.contains("permission denied"),
        "the unreadable table is named:\n{log}"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

async fn wait_slot(pg: &tributary_testkit::PgCluster, slot: &str) -> Result<()> {
    let c = pg.connect("postgres").await?;
    wait_until(Duration::from_secs(60), async || {
        Ok(match slot_confirmed(&c, slot).await? {
            Some(_) => Check::Done(()),
            None => Check::Pending(format!("slot {slot} never created")),
        })
    })
    .await
}

/// Runs `tributary backfill`, which follows the backfill until it is done; returns its output.
async fn request_backfill(
    config: &std::path::Path,
    table: &str,
    filter: Option<&str>,
) -> Result<String> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.args(["backfill", "--config"])
        .arg(config)
        .args(["--source", "erp", "--table", table]);
    if let Some(f) = filter {
        cmd.args(["--where", f]);
    }
    let out = cmd.output().await?;
    anyhow::ensure!(
        out.status.success(),
        "backfill request failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn wait_log(bridge: &Bridge, needle: &str, times: usize) -> Result<()> {
    wait_until(Duration::from_secs(120), async || {
        Ok(if bridge.log().matches(needle).count() >= times {
            Check::Done(())
        } else {
            Check::Pending(format!("waiting for {needle:?}:\n{}", bridge.log()))
        })
    })
    .await
}

/// Online backfill (watermarks): during concurrent updates of the same keys the replayed
/// state equals the table; with --where only matching rows are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backfill_with_concurrent_updates_and_a_where_filter() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, price numeric(14,4) NOT NULL, note text, updated_at timestamptz NOT NULL);
         INSERT INTO orders SELECT i, 0, i, 'before', now() FROM generate_series(1, 30000) i;
         CREATE TABLE tributary_signals (id text PRIMARY KEY, type text NOT NULL, data text);
         CREATE PUBLICATION pub_erp FOR TABLE orders, tributary_signals;",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = "snapshot = \"never\"\nsnapshot_chunk_rows = 4000\nsignal_table = \"public.tributary_signals\"\n".into();
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let client = nats.connect().await?;

    // --where: only the matching rows, nothing else is being written.
    let out = request_backfill(&config, "public.orders", Some("id % 10 = 0")).await?;
    assert!(
        out.contains("done: 3000 rows"),
        "the command follows the backfill to its end: {out}"
    );
    wait_log(&bridge, "backfill: done", 1).await?;
    wait_for_messages(&client, "CDC_ERP", 3_000, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(received.len(), 3_000, "exactly the matching rows");
    check_stream_invariants(&received)?;
    assert!(received.iter().all(|r| r.event.op == Operation::Read as i32
        && matches!(r.event.after.as_ref().and_then(|a| a.values[0].kind.as_ref()), Some(tributary_proto::cdc::v1::value::Kind::Int(i)) if i % 10 == 0)));
    assert_eq!(received[0].subject, "cdc.erp.public.orders.read");

    // The whole table while the same keys keep changing.
    let writer = pg.connect("erp").await?;
    let updates = tokio::spawn(async move {
        for round in 0..60 {
            let sql = format!(
                "UPDATE orders SET qty = qty + 1, note = 'round {round}', updated_at = clock_timestamp() WHERE id % 7 = {};
                 DELETE FROM orders WHERE id = {};
                 INSERT INTO orders VALUES ({}, 1, 1, 'new', now());",
                round % 7,
                1 + round * 13,
                100_000 + round
            );
            writer.batch_execute(&sql).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    });
    let backfill = tokio::spawn({
        let config = config.clone();
        async move { request_backfill(&config, "public.orders", None).await }
    });
    updates.await??;
    backfill.await??;
    wait_log(&bridge, "backfill: done", 2).await?;
    // A sentinel committed now follows, in the stream, everything committed before it
    // (the backfill's last high watermark included): once it is in, nothing earlier is missing.
    db.batch_execute("SELECT pg_logical_emit_message(true, 'test.sentinel', 'settled')")
        .await?;
    let received = wait_until(Duration::from_secs(60), async || {
        let received = read_stream(&client, "CDC_ERP").await?;
        let sentinel = received.iter().any(|r| {
            r.event
                .message
                .as_ref()
                .is_some_and(|m| m.prefix == "test.sentinel")
        });
        Ok(match sentinel {
            true => Check::Done(received),
            false => Check::Pending(format!("no sentinel in {} events", received.len())),
        })
    })
    .await?;
    check_stream_invariants(&received)?;
    let replayed = replay(&received, "orders")?;
    let actual = table_state(&db, ORDERS_STATE_SQL).await?;
    assert_eq!(replayed.len(), actual.len());
    assert!(
        replayed == actual,
        "for every key the last event carries the current value"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

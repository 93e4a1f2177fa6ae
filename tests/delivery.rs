//! Delivery: every committed change reaches a JetStream subscriber once, in commit order,
//! with the values that were written — from two databases at once, through a 200,000-row
//! transaction and a TRUNCATE, and with an idle database whose slot must keep moving.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use tributary_proto::cdc::v1::Operation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_mixed_workload_arrives_exactly_once_in_commit_order() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let mut sources = Vec::new();
    for name in ["erp", "pos"] {
        pg.create_database(name).await?;
        let c = pg.connect(name).await?;
        c.batch_execute(ORDERS_DDL).await?;
        c.batch_execute(&format!("CREATE PUBLICATION pub_{name} FOR TABLE orders"))
            .await?;
        sources.push(SourceSpec::new(name, name));
    }
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &sources))?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;

    let erp = pg.connect("erp").await?;
    let pos = pg.connect("pos").await?;
    let (a, b) = tokio::join!(
        orders_workload(&erp, 25_000, 1, 1),
        orders_workload(&pos, 25_000, 2, 1)
    );
    let (a, b) = (a?, b?);
    assert_eq!(a + b, 50_000);

    let client = nats.connect().await?;
    for (name, db, expected) in [("erp", &erp, a), ("pos", &pos, b)] {
        wait_for_messages(
            &client,
            &stream_name(name),
            expected as u64,
            Duration::from_secs(180),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", bridge.log()))?;
        let received = read_stream(&client, &stream_name(name)).await?;
        assert_eq!(
            received.len(),
            expected,
            "{name}: every change once, nothing else"
        );
        check_stream_invariants(&received)?;
        for r in &received {
            assert_eq!(r.event.source, name);
            let op = Operation::try_from(r.event.op)?;
            let op_name = match op {
                Operation::Insert => "insert",
                Operation::Update => "update",
                Operation::Delete => "delete",
                other => panic!("unexpected op {other:?}"),
            };
            assert_eq!(r.subject, format!("cdc.{name}.public.orders.{op_name}"));
        }
        let replayed = replay(&received, "orders")?;
        let actual = table_state(db, ORDERS_STATE_SQL).await?;
        assert_eq!(
            replayed.len(),
            actual.len(),
            "{name}: row count after replay"
        );
        assert!(
            replayed == actual,
            "{name}: replayed state differs from the table"
        );
    }
    assert_eq!(bridge.stop().await?, 0, "SIGTERM drains and exits 0");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transaction_and_truncate_are_delivered() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(ORDERS_DDL).await?;
    db.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;
    let config = write_config(
        dir.path(),
        &config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]),
    )?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;

    db.batch_execute(
        "INSERT INTO orders SELECT i, i % 97, i * 0.5, repeat('x', 40), now() FROM generate_series(1, 200000) i",
    )
    .await?;
    db.batch_execute("TRUNCATE orders").await?;

    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 200_001, Duration::from_secs(300))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", bridge.log()))?;
    let received = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(received.len(), 200_001);
    check_stream_invariants(&received)?;
    let big_tx = received[0].event.commit_lsn;
    assert!(received[..200_000]
        .iter()
        .all(|r| r.event.commit_lsn == big_tx && r.event.op == Operation::Insert as i32));
    assert_eq!(received[199_999].event.transaction_changes, 200_000);
    let truncate = &received[200_000].event;
    assert_eq!(truncate.op, Operation::Truncate as i32);
    assert_eq!(truncate.table, "orders");
    assert_eq!(received[200_000].subject, "cdc.erp.public.orders.truncate");
    assert!(replay(&received, "orders")?.is_empty());
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_source_slot_advances_next_to_a_busy_one() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    for name in ["busy", "idle"] {
        pg.create_database(name).await?;
        let c = pg.connect(name).await?;
        c.batch_execute(ORDERS_DDL).await?;
        c.batch_execute(&format!("CREATE PUBLICATION pub_{name} FOR TABLE orders"))
            .await?;
    }
    let mut idle_spec = SourceSpec::new("idle", "idle");
    idle_spec.heartbeat_secs = 1;
    let config = write_config(
        dir.path(),
        &config_text(
            &pg,
            &nats.url(),
            &[SourceSpec::new("busy", "busy"), idle_spec],
        ),
    )?;
    let bridge = Bridge::spawn(&config)?;
    let idle = pg.connect("idle").await?;
    let busy = pg.connect("busy").await?;
    // Wait for the slot to exist, then note where it is.
    let start = wait_until(Duration::from_secs(30), async || {
        Ok(match slot_confirmed(&idle, "slot_idle").await? {
            Some(l) => Check::Done(lsn(&l)),
            None => Check::Pending(format!("idle slot never created:\n{}", bridge.log())),
        })
    })
    .await?;
    orders_workload(&busy, 5_000, 3, 1).await?;
    let busy_end: String = busy
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    wait_until(Duration::from_secs(30), async || {
        let now = lsn(&slot_confirmed(&idle, "slot_idle")
            .await?
            .unwrap_or_default());
        Ok(if now >= lsn(&busy_end) && now > start {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "idle slot stuck at {now:X} (busy WAL at {busy_end})\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    let client = nats.connect().await?;
    let received = read_stream(&client, "CDC_IDLE").await?;
    assert!(
        received.is_empty(),
        "heartbeats are not published as changes"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

/// Protocol 2 streams a transaction larger than `logical_decoding_work_mem` while it runs:
/// its changes are held on disk until it commits, a rolled-back savepoint and an aborted
/// transaction publish nothing, and transactions committed meanwhile keep commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_in_progress_transactions_publish_only_what_commits() -> Result<()> {
    let pg = tributary_testkit::PgCluster::start_with(tributary_testkit::PgOptions {
        settings: vec![("logical_decoding_work_mem".into(), "64kB".into())],
        ..Default::default()
    })
    .await?;
    let nats = tributary_testkit::NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(ORDERS_DDL).await?;
    db.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;
    let config = write_config(
        dir.path(),
        &config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]),
    )?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;

    let big = pg.connect("erp").await?;
    let aborted = pg.connect("erp").await?;
    big.batch_execute(
        "BEGIN;
         INSERT INTO orders SELECT i, 1, i, 'big', now() FROM generate_series(1, 20000) i;
         SAVEPOINT s;
         INSERT INTO orders SELECT i, 2, i, 'rolled back', now() FROM generate_series(100001, 105000) i;
         ROLLBACK TO s;
         INSERT INTO orders SELECT i, 3, i, 'after savepoint', now() FROM generate_series(20001, 25000) i;",
    )
    .await?;
    aborted
        .batch_execute("BEGIN; INSERT INTO orders SELECT i, 4, i, 'aborted', now() FROM generate_series(300001, 320000) i;")
        .await?;
    for i in 0..20 {
        db.batch_execute(&format!(
            "INSERT INTO orders VALUES ({}, 5, 1, 'small', now())",
            200_001 + i
        ))
        .await?;
    }
    aborted.batch_execute("ROLLBACK").await?;
    big.batch_execute("COMMIT").await?;

    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 25_020, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", bridge.log()))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(received.len(), 25_020, "committed changes only");
    check_stream_invariants(&received)?;
    // The small transactions committed first, the big one last, whole.
    assert!(received[..20]
        .iter()
        .all(|r| r.event.transaction_changes == 1));
    assert!(received[20..]
        .iter()
        .all(|r| r.event.commit_lsn == received[20].event.commit_lsn));
    assert_eq!(received[25_019].event.transaction_changes, 25_000);
    let replayed = replay(&received, "orders")?;
    assert!(
        replayed == table_state(&db, ORDERS_STATE_SQL).await?,
        "replayed state equals the table"
    );
    let log = bridge.log();
    assert!(
        log.contains("streaming=true"),
        "protocol 2 streaming in use:\n{log}"
    );
    assert!(
        log.contains("spooling an in-progress transaction"),
        "the big transaction was streamed in progress:\n{log}"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

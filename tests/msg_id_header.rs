//! `nats.msg_id_header`: without `Nats-Msg-Id` (the default) the source's stream still holds
//! every change exactly once, in commit order, across SIGKILLs mid-stream — the
//! expected-last-sequence chain and the watermark read from the last message's payload do
//! the work the header's duplicate window used to share. With the option on, every message
//! carries the header, equal to its `event_id`.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use rand::Rng;
use support::*;

async fn setup(pg: &tributary_testkit::PgCluster) -> Result<()> {
    pg.create_database("erp").await?;
    let c = pg.connect("erp").await?;
    c.batch_execute(ORDERS_DDL).await?;
    c.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;
    Ok(())
}

/// Waits for `expected` messages, reads the stream and checks it against the table.
async fn read_checked(
    pg: &tributary_testkit::PgCluster,
    nats: &tributary_testkit::NatsServer,
    expected: usize,
    bridge: &Bridge,
) -> Result<Vec<Received>> {
    let client = nats.connect().await?;
    wait_for_messages(
        &client,
        "CDC_ERP",
        expected as u64,
        Duration::from_secs(240),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", bridge.log()))?;
    // Give a straggling duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(received.len(), expected, "every change exactly once");
    check_stream_invariants(&received)?;
    let db = pg.connect("erp").await?;
    let replayed = replay(&received, "orders")?;
    let actual = table_state(&db, ORDERS_STATE_SQL).await?;
    assert!(replayed == actual, "replayed state differs from the table");
    Ok(received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_header_sigkill_mid_stream_still_gives_each_change_once() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]);
    assert!(!text.contains("msg_id_header"), "the default is under test");
    let config = write_config(dir.path(), &text)?;
    let first = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &first).await?;
    first.kill9().await?;

    let writer = pg.connect("erp").await?;
    let workload = tokio::spawn(async move { orders_workload(&writer, 30_000, 21, 1).await });
    for round in 0..5 {
        let bridge = Bridge::spawn(&config)?;
        let pause = rand::rng().random_range(300..2500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        bridge.kill9().await?;
        eprintln!("round {round}: killed after {pause} ms");
    }
    let written = workload.await??;
    let last = Bridge::spawn(&config)?;
    let received = read_checked(&pg, &nats, written, &last).await?;
    let with_header: Vec<u64> = received
        .iter()
        .filter(|r| !r.msg_id.is_empty())
        .map(|r| r.sequence)
        .collect();
    assert!(
        with_header.is_empty(),
        "messages sent with Nats-Msg-Id although msg_id_header is off: sequences {with_header:?}"
    );
    // The watermark came from the last message's payload: there is no header to read it from.
    wait_until(Duration::from_secs(60), async || {
        Ok(match last.log().contains("watermark=Some") {
            true => Check::Done(()),
            false => Check::Pending(format!("no watermark read:\n{}", last.log())),
        })
    })
    .await?;
    assert_eq!(last.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_header_every_message_carries_its_event_id() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]).replacen(
        "[nats]\n",
        "[nats]\nmsg_id_header = true\n",
        1,
    );
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let writer = pg.connect("erp").await?;
    let written = orders_workload(&writer, 2_000, 22, 1).await?;
    let received = read_checked(&pg, &nats, written, &bridge).await?;
    for r in &received {
        assert_eq!(
            r.msg_id, r.event.event_id,
            "seq {}: Nats-Msg-Id is the event id",
            r.sequence
        );
    }
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

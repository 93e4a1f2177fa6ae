//! Crash recovery: the bridge killed with SIGKILL at random points, NATS restarted and
//! PostgreSQL restarted mid-workload — afterwards every change is in the stream exactly
//! once, in commit order, and replaying the stream reproduces the table — also with changes
//! batched several to a message (`changes_per_message`).

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

async fn verify_exactly_once(
    pg: &tributary_testkit::PgCluster,
    nats: &tributary_testkit::NatsServer,
    expected: usize,
    bridge: &Bridge,
) -> Result<()> {
    let client = nats.connect().await?;
    // Events, not messages: with `changes_per_message` a message may hold several.
    wait_until(Duration::from_secs(240), async || {
        let n = read_stream(&client, "CDC_ERP").await?.len();
        Ok(if n >= expected {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "{n} of {expected} changes stored\nbridge log:\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    // Give a straggling duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(received.len(), expected, "every change exactly once");
    check_stream_invariants(&received)?;
    let db = pg.connect("erp").await?;
    let replayed = replay(&received, "orders")?;
    let actual = table_state(&db, ORDERS_STATE_SQL).await?;
    assert!(replayed == actual, "replayed state differs from the table");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() -> Result<()> {
    sigkill_rounds("").await
}

/// The same with changes batched (`changes_per_message`): a batch is stored whole or not at
/// all, and the restarted bridge takes its position from the last event of the last batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_batched_changes_loses_and_duplicates_nothing() -> Result<()> {
    sigkill_rounds("changes_per_message = 50\n").await
}

async fn sigkill_rounds(extra: &str) -> Result<()> {
    let (pg, nats) = start_servers().await?;
    setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.extra = extra.into();
    let config = write_config(dir.path(), &config_text(&pg, &nats.url(), &[spec]))?;
    let first = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &first).await?;
    first.kill9().await?;

    let writer = pg.connect("erp").await?;
    let workload = tokio::spawn(async move { orders_workload(&writer, 40_000, 11, 1).await });
    for round in 0..6 {
        let bridge = Bridge::spawn(&config)?;
        let pause = rand::rng().random_range(300..2500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        bridge.kill9().await?;
        eprintln!("round {round}: killed after {pause} ms");
    }
    let written = workload.await??;
    let last = Bridge::spawn(&config)?;
    verify_exactly_once(&pg, &nats, written, &last).await?;
    wait_until(Duration::from_secs(60), async || {
        Ok(match last.log().contains("streaming source") {
            true => Check::Done(()),
            false => Check::Pending(format!("last bridge never streamed:\n{}", last.log())),
        })
    })
    .await?;
    assert!(
        last.log().contains("watermark=Some"),
        "the restarted bridge resumes from the stream's watermark:\n{}",
        last.log()
    );
    if !extra.is_empty() {
        let client = nats.connect().await?;
        let received = read_stream(&client, "CDC_ERP").await?;
        let batched = received
            .iter()
            .filter(|r| r.subject.ends_with("_batch"))
            .count();
        assert!(
            batched > received.len() / 2,
            "most changes travelled in batches: {batched} of {}",
            received.len()
        );
    }
    assert_eq!(last.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_workload_recovers_by_itself() -> Result<()> {
    let (pg, mut nats) = start_servers().await?;
    setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]),
    )?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;

    let writer = pg.connect("erp").await?;
    let workload = tokio::spawn(async move { orders_workload(&writer, 30_000, 12, 1).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.stop().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.start_again().await?;
    let written = workload.await??;
    verify_exactly_once(&pg, &nats, written, &bridge).await?;
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_workload_recovers_by_itself() -> Result<()> {
    let (mut pg, nats) = start_servers().await?;
    setup(&pg).await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]),
    )?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;

    let writer = pg.connect("erp").await?;
    let mut written = orders_workload(&writer, 15_000, 13, 1).await?;
    drop(writer);
    pg.restart().await?;
    let writer = pg.connect("erp").await?;
    written += orders_workload(&writer, 15_000, 14, 1_000_000).await?;
    verify_exactly_once(&pg, &nats, written, &bridge).await?;
    // The supervisor restarted the source's session (tributary_core::supervise).
    let log = bridge.log();
    assert!(
        log.lines()
            .any(|l| l.contains("component failed; restarting") && l.contains("source erp")),
        "the bridge noticed the restart:\n{log}"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

//! Start-up follows the supervision rules: a dependency that is down (NATS refusing
//! connections, PostgreSQL stopped or starting up) is waited for, up to
//! `startup_timeout_secs`, and the bridge streams once it is back; a permanent error (wrong
//! password) stops it at once, with its message printed once.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;
use tributary_testkit::{NatsServer, PgAuth, PgCluster, PgOptions};

async fn orders_db(pg: &PgCluster) -> Result<tokio_postgres::Client> {
    pg.create_database("erp").await?;
    let c = pg.connect("erp").await?;
    c.batch_execute(ORDERS_DDL).await?;
    c.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;
    Ok(c)
}

fn with_startup_timeout(text: &str, secs: u64) -> String {
    text.replacen(
        "[log]\n",
        &format!("startup_timeout_secs = {secs}\n[log]\n"),
        1,
    )
}

async fn insert_and_expect(
    pg: &PgCluster,
    nats: &NatsServer,
    bridge: &Bridge,
    n: u64,
) -> Result<()> {
    wait_streaming(pg, &["slot_erp"], bridge).await?;
    let c = pg.connect("erp").await?;
    c.batch_execute("INSERT INTO orders SELECT g, 1, 1.5, 'x', now() FROM generate_series(1, 3) g")
        .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, &stream_name("erp"), n, Duration::from_secs(60)).await
}

enum Down {
    Nats,
    Postgres,
}

/// Starts the bridge while `down` is stopped: it keeps running and logs its attempts; once
/// `down` is back it streams.
async fn waits_for(down: Down, logged: &str) -> Result<()> {
    let (mut pg, mut nats) = start_servers().await?;
    orders_db(&pg).await?;
    match down {
        Down::Nats => nats.stop().await?,
        Down::Postgres => pg.stop().await?,
    }
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]);
    let path = write_config(dir.path(), &with_startup_timeout(&text, 120))?;
    let mut bridge = Bridge::spawn(&path)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = bridge.log();
    assert!(bridge.child.try_wait()?.is_none(), "still running:\n{log}");
    assert!(
        log.contains("not available yet") && log.contains(logged),
        "each attempt is logged, naming {logged:?}:\n{log}"
    );
    match down {
        Down::Nats => nats.start_again().await?,
        Down::Postgres => pg.start_again().await?,
    }
    insert_and_expect(&pg, &nats, &bridge, 3).await?;
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_while_nats_is_down_it_waits_and_then_streams() -> Result<()> {
    waits_for(Down::Nats, "NATS").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_while_postgres_is_down_it_waits_and_then_streams() -> Result<()> {
    waits_for(Down::Postgres, "source erp: PostgreSQL").await
}

/// Past `startup_timeout_secs` the bridge gives up, naming the servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_that_stays_down_fails_at_the_startup_deadline() -> Result<()> {
    let (pg, _nats) = start_servers().await?;
    orders_db(&pg).await?;
    let dead = format!("nats://127.0.0.1:{}", tributary_testkit::free_port());
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &dead, &[SourceSpec::new("erp", "erp")]);
    let path = write_config(dir.path(), &with_startup_timeout(&text, 3))?;
    let begun = Instant::now();
    let (code, stderr) = run_to_exit(&path, Duration::from_secs(60)).await?;
    let took = begun.elapsed();
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains(&dead), "names the servers:\n{stderr}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "gave up at the deadline, not at once nor never: {took:?}\n{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_exits_at_once_with_the_message_once() -> Result<()> {
    let opts = PgOptions {
        auth: PgAuth::ScramSha256,
        superuser_password: "right-password".into(),
        ..Default::default()
    };
    let pg = PgCluster::start_with(opts).await?;
    let nats = NatsServer::start().await?;
    orders_db(&pg).await?;
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace("password = \"right-password\"", "password = \"wrong\"");
    let path = write_config(dir.path(), &with_startup_timeout(&text, 120))?;
    let begun = Instant::now();
    let (code, stderr) = run_to_exit(&path, Duration::from_secs(60)).await?;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "not retried: {:?}\n{stderr}",
        begun.elapsed()
    );
    let error_line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line:\n{stderr}"));
    assert!(error_line.contains("authentication failed"), "{error_line}");
    assert_eq!(
        error_line.matches("password authentication failed").count(),
        1,
        "the server's message once: {error_line}"
    );
    Ok(())
}

//! Slots and start-up consistency: two sources on one slot are refused by check-config,
//! preflight and run; a slot of another database is refused by preflight and run; a table
//! whose updates PostgreSQL rejects fails preflight and stops run alike; `slots` shows no
//! safe WAL for a lost slot; the check-config summary lists only configured sinks.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use support::*;
use tributary_testkit::{NatsServer, PgCluster, PgOptions};

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

async fn slot_count(pg: &PgCluster) -> Result<i64> {
    let c = pg.connect("postgres").await?;
    Ok(
        c.query_one("SELECT count(*) FROM pg_replication_slots", &[])
            .await?
            .get(0),
    )
}

async fn erp(pg: &PgCluster, name: &str) -> Result<()> {
    pg.create_database(name).await?;
    let c = pg.connect(name).await?;
    c.batch_execute(ORDERS_DDL).await?;
    c.batch_execute(&format!("CREATE PUBLICATION pub_{name} FOR TABLE orders"))
        .await?;
    Ok(())
}

/// The preflight row `check` of `source` as (status, detail, fix).
fn row(checks: &serde_json::Value, source: &str, check: &str) -> (String, String, String) {
    let c = checks
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|c| c["source"] == source && c["check"] == check)
        })
        .unwrap_or_else(|| panic!("no {source}/{check} row in {checks:#}"));
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("detail"), s("fix"))
}

async fn preflight(config: &Path) -> Result<(i32, serde_json::Value, String)> {
    let (code, out, err) =
        tributary(&["preflight", "--config", path(config), "--format", "json"]).await?;
    Ok((code, serde_json::from_str(&out)?, err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_on_one_slot_are_refused_everywhere() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    erp(&pg, "erp").await?;
    erp(&pg, "shop").await?;
    let mut shop = SourceSpec::new("shop", "shop");
    shop.slot = "slot_erp".into();
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp"), shop]);
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &text)?;
    for command in ["check-config", "preflight", "run"] {
        let (code, _, err) = tributary(&[command, "--config", path(&config)]).await?;
        assert_ne!(code, 0, "{command} refuses");
        assert!(
            err.contains("sources[1].slot")
                && err.contains("\"shop\"")
                && err.contains("sources[0] (\"erp\")")
                && err.contains("\"slot_erp\""),
            "{command} names the key and both sources:\n{err}"
        );
    }
    assert_eq!(slot_count(&pg).await?, 0, "no slot was created");
    Ok(())
}

/// Host names the configuration cannot tell apart (TCP address and unix socket directory):
/// preflight and run compare the server's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_names_of_one_server_on_one_slot_are_refused() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    erp(&pg, "erp").await?;
    erp(&pg, "shop").await?;
    let mut shop = SourceSpec::new("shop", "shop");
    shop.slot = "slot_erp".into();
    let mut text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp"), shop]);
    let tcp = "host = \"127.0.0.1\"";
    let at = text.rfind(tcp).context("second host")?;
    let socket = format!("host = {:?}", pg.socket_dir().display().to_string());
    text.replace_range(at..at + tcp.len(), &socket);
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &text)?;
    let (_, _, err) = tributary(&["check-config", "--config", path(&config)]).await?;
    assert!(
        !err.contains("sources[1].slot"),
        "not visible in the file: {err}"
    );

    let (code, checks, _) = preflight(&config).await?;
    assert_ne!(code, 0);
    let (status, detail, _) = row(&checks, "shop", "shared_slot");
    assert_eq!(status, "fail");
    assert!(
        detail.contains("slot_erp is also the slot of source erp"),
        "{detail}"
    );
    let (code, stderr) = run_to_exit(&config, Duration::from_secs(60)).await?;
    assert_ne!(code, 0, "run refuses:\n{stderr}");
    assert!(
        stderr.contains(
            "slot \"slot_erp\" (config key `sources.slot`) is also the slot of source \"erp\""
        ),
        "{stderr}"
    );
    assert_eq!(
        slot_count(&pg).await?,
        0,
        "refused before any slot was made"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_of_another_database_is_refused_by_preflight_and_run() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    erp(&pg, "erp").await?;
    pg.create_database("other").await?;
    // What another source (or another tool) left: slot_erp, made for database `other`.
    pg.connect("other")
        .await?
        .execute(
            "SELECT pg_create_logical_replication_slot('slot_erp', 'pgoutput')",
            &[],
        )
        .await?;
    let dir = tempfile::tempdir()?;
    let config = erp_config(dir.path(), &pg, &nats)?;
    let (code, checks, _) = preflight(&config).await?;
    assert_ne!(code, 0);
    let (status, detail, fix) = row(&checks, "erp", "slot");
    assert_eq!(status, "fail");
    assert!(
        detail.contains("slot_erp") && detail.contains("belongs to database other, not erp"),
        "{detail}"
    );
    assert!(fix.contains("slot") && fix.contains("per server"), "{fix}");

    let (code, stderr) = run_to_exit(&config, Duration::from_secs(60)).await?;
    assert_ne!(code, 0, "run refuses:\n{stderr}");
    assert!(
        stderr.contains("replication slot \"slot_erp\" belongs to database \"other\", not \"erp\""),
        "{stderr}"
    );
    assert!(stderr.contains("own slot name"), "the fix: {stderr}");
    // Refused at start-up, before the stream or anything else was made.
    let js = async_nats::jetstream::new(nats.connect().await?);
    assert!(js.get_stream("CDC_ERP").await.is_err(), "no stream");
    assert_eq!(
        slot_count(&pg).await?,
        1,
        "the other database's slot is left alone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_replica_identity_fails_preflight_and_stops_run() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    erp(&pg, "erp").await?;
    let c = pg.connect("erp").await?;
    c.batch_execute(
        "CREATE TABLE notes (id int, body text);
         CREATE TABLE audit (id int PRIMARY KEY, what text);
         ALTER TABLE audit REPLICA IDENTITY NOTHING;
         ALTER PUBLICATION pub_erp ADD TABLE notes, audit;",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let config = erp_config(dir.path(), &pg, &nats)?;
    let (code, out, err) = tributary(&["preflight", "--config", path(&config)]).await?;
    assert_ne!(code, 0);
    assert!(
        out.contains("replica_identity") && out.contains("FAIL"),
        "{out}"
    );
    // The footer says what a failure means, and run keeps to it.
    assert!(
        err.contains("checks failed; fix them before starting the bridge"),
        "{err}"
    );
    let (_, checks, _) = preflight(&config).await?;
    let (status, detail, _) = row(&checks, "erp", "replica_identity");
    assert_eq!(status, "fail");
    assert!(
        detail.contains("`tributary run` refuses to start"),
        "{detail}"
    );

    let (code, stderr) = run_to_exit(&config, Duration::from_secs(60)).await?;
    assert_ne!(code, 0, "run refuses:\n{stderr}");
    assert!(
        stderr.contains("public.notes (no primary key and REPLICA IDENTITY DEFAULT)")
            && stderr.contains("public.audit (REPLICA IDENTITY NOTHING)"),
        "{stderr}"
    );
    assert_eq!(
        slot_count(&pg).await?,
        0,
        "refused before creating its slot"
    );

    // Fixed: preflight passes that check and run starts.
    c.batch_execute(
        "ALTER TABLE notes REPLICA IDENTITY FULL; ALTER TABLE audit REPLICA IDENTITY DEFAULT;",
    )
    .await?;
    let (_, checks, _) = preflight(&config).await?;
    assert_eq!(row(&checks, "erp", "replica_identity").0, "pass");
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_shows_no_safe_wal_for_a_lost_slot() -> Result<()> {
    let pg = PgCluster::start_with(PgOptions {
        settings: vec![("max_slot_wal_keep_size".into(), "1MB".into())],
        ..Default::default()
    })
    .await?;
    let nats = NatsServer::start().await?;
    erp(&pg, "erp").await?;
    let c = pg.connect("erp").await?;
    c.execute(
        "SELECT pg_create_logical_replication_slot('slot_erp', 'pgoutput')",
        &[],
    )
    .await?;
    // Past the 1 MB budget: PostgreSQL invalidates the slot at a checkpoint.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        c.batch_execute(
            "INSERT INTO orders SELECT i, 1, 1, repeat('x', 200), now() FROM generate_series(1, 5000) i
               ON CONFLICT (id) DO UPDATE SET qty = orders.qty + 1;
             SELECT pg_switch_wal(); CHECKPOINT;",
        )
        .await?;
        let status: Option<String> = c
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'slot_erp'",
                &[],
            )
            .await?
            .get(0);
        if status.as_deref() == Some("lost") {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "slot not lost: {status:?}"
        );
    }
    let dir = tempfile::tempdir()?;
    let config = erp_config(dir.path(), &pg, &nats)?;
    let (code, out, err) =
        tributary(&["slots", "--config", path(&config), "--format", "json"]).await?;
    assert_eq!(code, 0, "{err}");
    let slot = &serde_json::from_str::<serde_json::Value>(&out)?[0];
    assert_eq!(slot["wal_status"], "lost", "{slot}");
    assert_eq!(
        slot["safe_wal_size"], 0,
        "nothing is safe for a lost slot: {slot}"
    );
    let (_, table, _) = tributary(&["slots", "--config", path(&config)]).await?;
    let line = table
        .lines()
        .find(|l| l.contains("slot_erp"))
        .context("slot line")?;
    assert!(
        line.contains("lost") && line.trim_end().ends_with("0 B") && !line.contains("unlimited"),
        "{table}"
    );
    Ok(())
}

#[test]
fn check_config_summary_lists_only_configured_sinks() -> Result<()> {
    let text = "[nats]\nservers = [\"nats://127.0.0.1:1\"]\n\
                [[sources]]\nname = \"erp\"\npublication = \"pub_erp\"\nslot = \"slot_erp\"\n\
                [sources.connection]\nhost = \"127.0.0.1\"\nuser = \"u\"\ndbname = \"erp\"\n\
                [sinks]\n[sinks.shopify]\nbase_url = \"http://127.0.0.1:1\"\naccess_token = \"t\"\n";
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), text)?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["check-config", "--config", path(&config)])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("  sink shopify: "), "{stdout}");
    assert!(
        !stdout.contains("sink salesforce") && !stdout.contains("sink wms"),
        "only the configured sink:\n{stdout}"
    );
    Ok(())
}

//! Streams the bridge does not own: `run` refuses another application's stream of the
//! bridge's name and exits (no endless retries) when a stream has work-queue retention or
//! another stream captures its subjects, each time naming the stream in the way; `preflight`
//! fails on all three and never advises deleting a stream that is not the bridge's. An
//! operator's setting on the bridge's stream survives a restart unless the configuration
//! sets that key, and then the change is logged with its old and new value.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use serde_json::Value;
use support::*;
use tokio::process::Command;
use tributary_testkit::{NatsServer, PgCluster};

const DAYS_30: u64 = 30 * 24 * 3600;

async fn prepared() -> Result<(PgCluster, NatsServer, jetstream::Context)> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let c = pg.connect("erp").await?;
    c.batch_execute(ORDERS_DDL).await?;
    c.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;
    let js = jetstream::new(nats.connect().await?);
    Ok((pg, nats, js))
}

/// One source; PostgreSQL connections get 30 s (the shared test machine is loaded, and a
/// connect timeout must not pass for the conflict these tests expect).
fn patient_config(pg: &PgCluster, nats: &NatsServer, source: SourceSpec) -> String {
    config_text(pg, &nats.url(), &[source])
        .replace("connect_timeout_ms = 3000", "connect_timeout_ms = 30000")
}

/// `tributary preflight --format json`: exit code and the `stream` rows.
async fn preflight_streams(config: &Path) -> Result<(i32, Vec<Value>)> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["preflight", "--format", "json", "--config"])
            .arg(config)
            .env_remove("TRIBUTARY_CONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("preflight did not exit")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> = serde_json::from_str(&stdout)
        .with_context(|| format!("preflight prints JSON: {stdout}"))?;
    let streams = rows
        .into_iter()
        .filter(|r| r["check"] == "stream")
        .collect();
    Ok((out.status.code().unwrap_or(-1), streams))
}

/// The failing `stream` row, checked not to advise deleting anything.
fn failed_row(code: i32, rows: &[Value]) -> Value {
    assert_ne!(code, 0, "preflight fails: {rows:#?}");
    let row = rows
        .iter()
        .find(|r| r["status"] == "fail")
        .unwrap_or_else(|| panic!("a failing stream row in {rows:#?}"))
        .clone();
    let fix = row["fix"].as_str().unwrap_or_default();
    assert!(
        !fix.contains("stream rm") && !fix.contains("delete the stream"),
        "never advises deleting a stream that is not the bridge's: {row}"
    );
    row
}

/// Runs the bridge until it exits on its own; it must not retry a permanent conflict.
async fn exits_naming(config: &Path, expected: &[&str]) -> Result<()> {
    let (code, stderr) = run_to_exit(config, Duration::from_secs(90))
        .await
        .context("the bridge exits instead of retrying a permanent conflict")?;
    assert_ne!(code, 0, "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "stderr names {e:?}:\n{stderr}");
    }
    Ok(())
}

/// With `blocker` in place, preflight fails and the bridge exits, both naming `named`.
async fn blocked_by(
    js: &jetstream::Context,
    config: &Path,
    blocker: stream::Config,
    named: &[&str],
) -> Result<()> {
    js.create_stream(blocker).await?;
    let (code, rows) = preflight_streams(config).await?;
    let row = failed_row(code, &rows);
    let detail = row["detail"].as_str().unwrap_or_default();
    for n in named {
        assert!(detail.contains(n), "preflight names {n:?}: {row}");
    }
    exits_naming(config, named).await
}

async fn stream_config(js: &jetstream::Context, name: &str) -> Result<(stream::Config, u64)> {
    let mut s = js.get_stream(name).await?;
    let info = s.info().await?;
    Ok((info.config.clone(), info.state.messages))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_stream_is_refused_left_untouched_and_never_to_be_deleted() -> Result<()> {
    let (pg, nats, js) = prepared().await?;
    js.create_stream(stream::Config {
        name: "CDC_ERP".into(),
        subjects: vec!["billing.>".into()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await?;
    for i in 0..2 {
        js.publish("billing.invoice", format!("{i}").into())
            .await?
            .await?;
    }
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &patient_config(&pg, &nats, SourceSpec::new("erp", "erp")),
    )?;

    let (code, rows) = preflight_streams(&config).await?;
    let row = failed_row(code, &rows);
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("CDC_ERP") && detail.contains("not Tributary's"),
        "{row}"
    );
    assert!(
        row["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("sources.stream.name"),
        "{row}"
    );

    exits_naming(
        &config,
        &["CDC_ERP", "not Tributary's", "sources.stream.name"],
    )
    .await?;

    let (after, messages) = stream_config(&js, "CDC_ERP").await?;
    assert_eq!(after.subjects, vec!["billing.>".to_string()]);
    assert_eq!(after.max_age, Duration::from_secs(3600));
    assert!(
        !after.metadata.keys().any(|k| k.starts_with("tributary.")),
        "not marked: {:?}",
        after.metadata
    );
    assert_eq!(messages, 2, "the other application's messages are kept");

    // `slots drop` of the source's slot never advises deleting that stream either.
    pg.connect("erp")
        .await?
        .batch_execute("SELECT pg_create_logical_replication_slot('slot_erp', 'pgoutput')")
        .await?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["slots", "drop", "--source", "erp", "--yes", "--config"])
        .arg(&config)
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("stream rm") && text.contains("not Tributary's"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_retention_and_an_overlapping_stream_stop_the_bridge() -> Result<()> {
    let (pg, nats, js) = prepared().await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &patient_config(&pg, &nats, SourceSpec::new("erp", "erp")),
    )?;

    let work_queue = stream::Config {
        name: "CDC_ERP".into(),
        subjects: vec!["cdc.erp.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    };
    blocked_by(
        &js,
        &config,
        work_queue,
        &["CDC_ERP", "workqueue retention"],
    )
    .await?;
    js.delete_stream("CDC_ERP").await?;

    let everything = stream::Config {
        name: "ALL_CHANGES".into(),
        subjects: vec!["cdc.>".into()],
        ..Default::default()
    };
    blocked_by(
        &js,
        &config,
        everything,
        &["CDC_ERP", "overlap", "ALL_CHANGES"],
    )
    .await?;
    assert!(js.get_stream("CDC_ERP").await.is_err(), "nothing created");
    Ok(())
}

/// Starts the bridge, waits for `needle` in its log and for the source to stream, stops it;
/// returns the log.
async fn run_until_logged(config: &Path, needle: &str) -> Result<String> {
    let bridge = Bridge::spawn(config)?;
    // The source's "streaming" line carries its stream's last sequence.
    wait_until(Duration::from_secs(90), async || {
        let log = bridge.log();
        Ok(if log.contains(needle) && log.contains("last_sequence=") {
            Check::Done(())
        } else {
            Check::Pending(format!("no {needle:?} in the log:\n{log}"))
        })
    })
    .await?;
    let log = bridge.log();
    let code = bridge.stop().await?;
    assert_eq!(code, 0, "{log}");
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_max_age_is_kept_unless_the_configuration_sets_it() -> Result<()> {
    let (pg, nats, js) = prepared().await?;
    let dir = tempfile::tempdir()?;
    let unset = write_config(
        dir.path(),
        &patient_config(&pg, &nats, SourceSpec::new("erp", "erp")),
    )?;
    run_until_logged(&unset, "created stream").await?;
    let (mut config, _) = stream_config(&js, "CDC_ERP").await?;
    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
    config.max_age = Duration::from_secs(DAYS_30);
    js.update_stream(&config).await?;

    // Restart with a configuration that does not set max_age: 30 days stay, and the log says so.
    let log = run_until_logged(&unset, "keeping the stream's setting").await?;
    assert!(
        log.lines()
            .any(|l| l.contains("keeping the stream's setting")
                && l.contains("max_age_secs")
                && l.contains(&DAYS_30.to_string())),
        "{log}"
    );
    assert!(!log.contains("changing the stream's setting"), "{log}");
    let (config, _) = stream_config(&js, "CDC_ERP").await?;
    assert_eq!(config.max_age, Duration::from_secs(DAYS_30));

    // The configuration sets it: applied, with a WARN naming old → new.
    let mut source = SourceSpec::new("erp", "erp");
    source.extra = "[sources.stream]\nmax_age_secs = 864000\n".into();
    let dir = tempfile::tempdir()?;
    let set = write_config(dir.path(), &patient_config(&pg, &nats, source))?;
    let log = run_until_logged(&set, "changing the stream's setting").await?;
    let line = log
        .lines()
        .find(|l| l.contains("changing the stream's setting"))
        .unwrap_or_default();
    assert!(
        line.contains("WARN")
            && line.contains("max_age_secs")
            && line.contains(&format!("old={DAYS_30}"))
            && line.contains("new=864000"),
        "{line}"
    );
    let (config, _) = stream_config(&js, "CDC_ERP").await?;
    assert_eq!(config.max_age, Duration::from_secs(864_000));
    Ok(())
}

//! Operator commands against real servers: `preflight` passes on a correct set-up and names
//! each failing check with its fix; `slots` shows a slot's position and lag and `slots drop`
//! refuses while a bridge streams; `status` reports the stream and the running bridge.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use support::*;
use tokio::process::Command;
use tributary_testkit::{NatsServer, PgCluster, PgOptions};

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout is not JSON:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `tributary <args…>` to completion with stdin closed.
async fn tributary(args: &[&str]) -> Result<Output> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(args)
            .env_remove("TRIBUTARY_CONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("tributary {args:?} did not exit"))??;
    let output = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // Shown with --nocapture: what an operator sees.
    println!(
        "$ tributary {}\n{}{}(exit {})\n",
        args.join(" "),
        output.stdout,
        output.stderr,
        output.code
    );
    Ok(output)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

async fn preflight_json(config: &Path) -> Result<(Output, Vec<Value>)> {
    let out = tributary(&[
        "preflight",
        "--config",
        path_str(config),
        "--format",
        "json",
    ])
    .await?;
    let checks = out
        .json()?
        .as_array()
        .context("preflight --format json prints an array")?
        .clone();
    for c in &checks {
        for key in ["source", "check", "status", "detail", "fix"] {
            assert!(c.get(key).is_some(), "{key} in {c}");
        }
        let status = c["status"].as_str().unwrap_or_default();
        assert!(["pass", "warn", "fail"].contains(&status), "{c}");
        assert_eq!(
            c["fix"].is_string(),
            status != "pass",
            "a fix for every warning and failure, none for a pass: {c}"
        );
    }
    Ok((out, checks))
}

fn find<'a>(checks: &'a [Value], source: &str, check: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["source"] == source && c["check"] == check)
        .unwrap_or_else(|| panic!("no {source}/{check} row in {checks:#?}"))
}

fn status<'a>(checks: &'a [Value], source: &str, check: &str) -> &'a str {
    find(checks, source, check)["status"]
        .as_str()
        .unwrap_or_default()
}

fn failing(checks: &[Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!(
                "{}/{}",
                c["source"].as_str().unwrap_or(""),
                c["check"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// A database with `orders` and, optionally, its publication.
async fn database(pg: &PgCluster, name: &str, publication: bool) -> Result<tokio_postgres::Client> {
    pg.create_database(name).await?;
    let c = pg.connect(name).await?;
    c.batch_execute(ORDERS_DDL).await?;
    if publication {
        c.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
            .await?;
    }
    Ok(c)
}

fn one_source(pg: &PgCluster, nats: &NatsServer, dbname: &str) -> String {
    config_text(pg, &nats.url(), &[SourceSpec::new("erp", dbname)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_passes_on_a_correct_setup() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    database(&pg, "erp", true).await?;
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &one_source(&pg, &nats, "erp"))?;

    let out = tributary(&["preflight", "--config", path_str(&path)]).await?;
    assert_eq!(out.code, 0, "exit 0\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("SOURCE"), "a table:\n{}", out.stdout);
    assert!(out.stdout.contains(" 0 failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("fix: "),
        "warnings carry a fix:\n{}",
        out.stdout
    );

    let (out, checks) = preflight_json(&path).await?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(failing(&checks).is_empty(), "{:?}", failing(&checks));
    for check in [
        "connect",
        "server_version",
        "wal_level",
        "max_replication_slots",
        "max_wal_senders",
        "replication_privilege",
        "replication_connection",
        "publication",
        "tables",
        "select_privilege",
        "replica_identity",
        "slot",
        "stream",
    ] {
        assert_eq!(
            status(&checks, "erp", check),
            "pass",
            "{:#}",
            find(&checks, "erp", check)
        );
    }
    // orders.note (text) and orders.price (numeric) may be TOASTed: unchanged values
    // arrive as markers.
    let toast = find(&checks, "erp", "toast_columns");
    assert_eq!(toast["status"], "warn");
    let detail = toast["detail"].as_str().unwrap_or("");
    assert!(detail.contains("public.orders (price, note)"), "{toast}");
    // initdb's default: max_slot_wal_keep_size = -1.
    assert_eq!(status(&checks, "erp", "max_slot_wal_keep_size"), "warn");
    assert_eq!(status(&checks, "nats", "reachable"), "pass");
    assert_eq!(status(&checks, "nats", "jetstream"), "pass");

    // Nothing was created by the checks.
    let c = pg.connect("erp").await?;
    let slots: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await?
        .get(0);
    assert_eq!(slots, 0);
    let js = async_nats::jetstream::new(nats.connect().await?);
    assert!(js.get_stream("CDC_ERP").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_fails_on_wal_level_replica() -> Result<()> {
    let opts = PgOptions {
        wal_level: "replica".into(),
        ..Default::default()
    };
    let pg = PgCluster::start_with(opts).await?;
    let nats = NatsServer::start().await?;
    database(&pg, "erp", true).await?;
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &one_source(&pg, &nats, "erp"))?;

    let out = tributary(&["preflight", "--config", path_str(&path)]).await?;
    assert_ne!(out.code, 0, "non-zero exit:\n{}", out.stdout);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("fix: ALTER SYSTEM SET wal_level = logical"),
        "the fix under the failure:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("checks failed"), "{}", out.stderr);

    let (out, checks) = preflight_json(&path).await?;
    assert_ne!(out.code, 0);
    assert_eq!(failing(&checks), vec!["erp/wal_level".to_string()]);
    assert!(find(&checks, "erp", "wal_level")["detail"]
        .as_str()
        .unwrap_or("")
        .contains("replica"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_each_failing_check() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;

    // 1. The publication is missing.
    database(&pg, "nopub", false).await?;
    let path = write_config(dir.path(), &one_source(&pg, &nats, "nopub"))?;
    let (out, checks) = preflight_json(&path).await?;
    assert_ne!(out.code, 0);
    assert_eq!(failing(&checks), vec!["erp/publication".to_string()]);
    let p = find(&checks, "erp", "publication");
    assert!(
        p["detail"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist"),
        "{p}"
    );
    assert!(
        p["fix"]
            .as_str()
            .unwrap_or("")
            .contains("CREATE PUBLICATION pub_erp"),
        "{p}"
    );

    // 2. A published table without a primary key and with REPLICA IDENTITY DEFAULT.
    let c = database(&pg, "nopk", false).await?;
    c.batch_execute(
        "CREATE TABLE notes (id int, body text); INSERT INTO notes VALUES (1, 'a');
         CREATE PUBLICATION pub_erp FOR TABLE orders, notes;",
    )
    .await?;
    let rejected = c.batch_execute("UPDATE notes SET body = 'b'").await;
    assert!(
        rejected.is_err(),
        "PostgreSQL rejects the update, as the check says"
    );
    let path = write_config(dir.path(), &one_source(&pg, &nats, "nopk"))?;
    let (out, checks) = preflight_json(&path).await?;
    assert_ne!(out.code, 0);
    assert_eq!(failing(&checks), vec!["erp/replica_identity".to_string()]);
    let r = find(&checks, "erp", "replica_identity");
    assert!(
        r["detail"].as_str().unwrap_or("").contains("public.notes"),
        "{r}"
    );
    assert!(
        !r["detail"].as_str().unwrap_or("").contains("public.orders"),
        "{r}"
    );
    assert!(
        r["fix"]
            .as_str()
            .unwrap_or("")
            .contains("REPLICA IDENTITY FULL"),
        "{r}"
    );

    // 3. A role without REPLICATION and without SELECT on the published table.
    database(&pg, "erp", true).await?;
    pg.connect("postgres")
        .await?
        .batch_execute("CREATE ROLE reader LOGIN PASSWORD 'reader'")
        .await?;
    let text = one_source(&pg, &nats, "erp").replace("user = \"postgres\"", "user = \"reader\"");
    let path = write_config(dir.path(), &text)?;
    let (out, checks) = preflight_json(&path).await?;
    assert_ne!(out.code, 0);
    let mut failed = failing(&checks);
    failed.sort();
    assert_eq!(
        failed,
        vec![
            "erp/replication_privilege".to_string(),
            "erp/select_privilege".to_string()
        ]
    );
    let r = find(&checks, "erp", "replication_privilege");
    assert_eq!(r["fix"], "ALTER ROLE reader WITH REPLICATION;");
    let s = find(&checks, "erp", "select_privilege");
    assert!(
        s["detail"].as_str().unwrap_or("").contains("public.orders"),
        "{s}"
    );
    assert!(
        s["fix"]
            .as_str()
            .unwrap_or("")
            .contains("GRANT SELECT ON public.orders TO reader"),
        "{s}"
    );
    // The table form names them too.
    let out = tributary(&["preflight", "--config", path_str(&path)]).await?;
    assert_ne!(out.code, 0);
    assert!(
        out.stdout
            .contains("fix: ALTER ROLE reader WITH REPLICATION;"),
        "{}",
        out.stdout
    );

    // 4. An unreachable source and an unreachable NATS are failed checks; the reachable
    //    source is still checked.
    let dead_nats = format!("nats://127.0.0.1:{}", tributary_testkit::free_port());
    let mut text = config_text(
        &pg,
        &dead_nats,
        &[
            SourceSpec::new("erp", "erp"),
            SourceSpec::new("down", "erp"),
        ],
    );
    let dead_port = tributary_testkit::free_port();
    let second = text
        .rfind(&format!("port = {}", pg.port()))
        .context("port line")?;
    let tail = text[second..].replacen(&pg.port().to_string(), &dead_port.to_string(), 1);
    text.replace_range(second.., &tail);
    let path = write_config(dir.path(), &text)?;
    let (out, checks) = preflight_json(&path).await?;
    assert_ne!(out.code, 0);
    let mut failed = failing(&checks);
    failed.sort();
    assert_eq!(
        failed,
        vec!["down/connect".to_string(), "nats/reachable".to_string()]
    );
    assert_eq!(status(&checks, "erp", "wal_level"), "pass");
    assert_eq!(status(&checks, "erp", "publication"), "pass");
    Ok(())
}

async fn wait_slot_inactive(pg: &PgCluster, slot: &str) -> Result<()> {
    let c = pg.connect("postgres").await?;
    wait_until(Duration::from_secs(30), async || {
        let active: Option<bool> = c
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .map(|r| r.get(0));
        Ok(if active != Some(true) {
            Check::Done(())
        } else {
            Check::Pending(format!("slot {slot} still active after the bridge stopped"))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_show_the_lag_and_drop_waits_for_the_bridge() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let c = database(&pg, "erp", true).await?;
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &one_source(&pg, &nats, "erp"))?;
    let config = path_str(&path);

    // Before the first start: the slot does not exist.
    let out = tributary(&["slots", "--config", config, "--format", "json"]).await?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()?[0]["exists"], false);

    let bridge = Bridge::spawn(&path)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    c.batch_execute("INSERT INTO orders VALUES (1, 1, 1, 'x', now())")
        .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 1, Duration::from_secs(30)).await?;

    // While the bridge streams: active, and `drop` refuses, naming the holder.
    let out = tributary(&["slots", "--config", config, "--format", "json"]).await?;
    let slot = &out.json()?[0];
    assert_eq!(slot["active"], true, "{slot}");
    assert!(
        slot["held_by"]
            .as_str()
            .unwrap_or("")
            .contains("tributary-erp"),
        "{slot}"
    );
    let out = tributary(&[
        "slots", "drop", "--config", config, "--source", "erp", "--yes",
    ])
    .await?;
    assert_ne!(out.code, 0, "refused while active");
    assert!(
        out.stderr.contains("is active: held by pid"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("tributary-erp"), "{}", out.stderr);
    assert!(
        slot_confirmed(&c, "slot_erp").await?.is_some(),
        "still there"
    );

    assert_eq!(bridge.stop().await?, 0);
    wait_slot_inactive(&pg, "slot_erp").await?;
    // Writes while no bridge runs: the slot falls behind.
    orders_workload(&c, 300, 7, 100).await?;

    let out = tributary(&["slots", "--config", config, "--format", "json"]).await?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let slot = &out.json()?[0];
    assert_eq!(slot["source"], "erp");
    assert_eq!(slot["slot"], "slot_erp");
    assert_eq!(slot["exists"], true);
    assert_eq!(slot["active"], false);
    assert_eq!(slot["plugin"], "pgoutput");
    assert!(
        slot["confirmed_flush_lsn"].is_string() && slot["restart_lsn"].is_string(),
        "{slot}"
    );
    assert!(
        slot["lag_bytes"].as_u64().unwrap_or(0) > 0,
        "lag after writes: {slot}"
    );
    assert!(
        slot["lag_seconds"].as_f64().is_some(),
        "dated by the stream's last change: {slot}"
    );
    assert!(
        ["reserved", "extended"].contains(&slot["wal_status"].as_str().unwrap_or("")),
        "{slot}"
    );

    let out = tributary(&["slots", "--config", config]).await?;
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("slot_erp") && out.stdout.contains("inactive"),
        "{}",
        out.stdout
    );

    // Without --yes and without a terminal to confirm on: not dropped.
    let out = tributary(&["slots", "drop", "--config", config, "--source", "erp"]).await?;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not dropped"), "{}", out.stderr);
    assert!(slot_confirmed(&c, "slot_erp").await?.is_some());

    let out = tributary(&[
        "slots", "drop", "--config", config, "--source", "erp", "--yes",
    ])
    .await?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("dropped replication slot slot_erp"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("refuses to start"),
        "explains the next start:\n{}",
        out.stderr
    );
    let left: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await?
        .get(0);
    assert_eq!(left, 0);

    let out = tributary(&["slots", "--config", config]).await?;
    assert!(out.stdout.contains("missing"), "{}", out.stdout);
    let out = tributary(&["slots", "--config", config, "--source", "nope"]).await?;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no source named \"nope\""),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_stream_and_the_bridge() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let c = database(&pg, "erp", true).await?;
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &one_source(&pg, &nats, "erp"))?;
    let config = path_str(&path);

    let bridge = Bridge::spawn(&path)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let written = orders_workload(&c, 500, 3, 1).await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", written as u64, Duration::from_secs(60)).await?;

    // With the bridge running: up and ready, its lag per source.
    let report = wait_until(Duration::from_secs(30), async || {
        let out = tributary(&["status", "--config", config, "--format", "json"]).await?;
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let report = out.json()?;
        Ok(if report["bridge"]["ready"] == true {
            Check::Done(report)
        } else {
            Check::Pending(format!("the bridge is not ready: {report:#}"))
        })
    })
    .await?;
    assert_eq!(report["bridge"]["up"], true, "{report:#}");
    assert_eq!(report["bridge"]["ready"], true, "{report:#}");
    let source = &report["sources"][0];
    assert_eq!(source["source"], "erp");
    assert_eq!(source["slot"]["active"], true);
    assert_eq!(source["stream"]["name"], "CDC_ERP");
    assert!(
        source["stream"]["messages"].as_u64().unwrap_or(0) >= written as u64,
        "{source:#}"
    );
    assert_eq!(source["bridge"]["component"], "source erp", "{source:#}");
    assert_eq!(source["bridge"]["ready"], true, "{source:#}");
    assert!(source["slot"]["lag_seconds"].is_number(), "{source:#}");
    // The report is the bridge's own (`GET /status`): the same components as `/readyz`.
    let components = report["bridge"]["components"].as_array().cloned();
    assert_eq!(
        components.unwrap_or_default(),
        vec![serde_json::json!({"component": "source erp", "ready": true, "reason": null})],
        "{report:#}"
    );
    let addr = report["bridge"]["address"].as_str().unwrap_or_default();
    let served: serde_json::Value = reqwest::get(format!("http://{addr}/status"))
        .await?
        .json()
        .await?;
    assert_eq!(
        served["sources"][0]["stream"]["name"], "CDC_ERP",
        "{served:#}"
    );
    assert_eq!(served["bridge"]["up"], true, "{served:#}");

    let out = tributary(&["status", "--config", config]).await?;
    assert!(out.stdout.contains("up on 127.0.0.1"), "{}", out.stdout);
    assert!(out.stdout.contains("CDC_ERP"), "{}", out.stdout);
    assert!(out.stdout.contains("no sinks configured"), "{}", out.stdout);

    // Stopped: the stream's exact count, the slot inactive, no bridge.
    assert_eq!(bridge.stop().await?, 0);
    wait_slot_inactive(&pg, "slot_erp").await?;
    let js = async_nats::jetstream::new(client.clone());
    let state = js.get_stream("CDC_ERP").await?.info().await?.state.clone();
    let out = tributary(&["status", "--config", config, "--format", "json"]).await?;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = out.json()?;
    assert_eq!(report["bridge"]["up"], false);
    let source = &report["sources"][0];
    assert_eq!(source["stream"]["exists"], true);
    assert_eq!(
        source["stream"]["messages"].as_u64(),
        Some(state.messages),
        "{source:#}"
    );
    assert_eq!(
        source["stream"]["last_sequence"].as_u64(),
        Some(state.last_sequence)
    );
    assert!(
        source["stream"]["last_message_time"].is_string(),
        "{source:#}"
    );
    assert_eq!(source["slot"]["active"], false);
    assert!(source["slot"]["confirmed_flush_lsn"].is_string());
    assert!(source["bridge"].is_null());
    assert_eq!(report["sinks"], serde_json::json!([]));
    assert_eq!(report["sinks_note"], "no sinks configured");
    Ok(())
}

/// `preflight` checks the credentials of the SaaS feeds and sinks against the emulators: the
/// Shopify Admin API answers, the Salesforce token is granted and the daily API usage is
/// reported (a nearly spent limit is a warning), a wrong WMS key fails with its fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_checks_saas_credentials() -> Result<()> {
    use tributary_sandbox::{salesforce, shopify, wms};
    let nats = NatsServer::start().await?;
    let shop = shopify::start(shopify::ShopifyOptions::default()).await?;
    let sf = salesforce::start(salesforce::SalesforceOptions::default()).await?;
    let wms = wms::start(wms::WmsOptions::default()).await?;
    let (client_id, secret) = salesforce::SalesforceOptions::default().clients[0].clone();
    let dir = tempfile::tempdir()?;
    let text = format!(
        "[nats]\nservers = [\"{}\"]\n\
         [[shopify]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nwebhook_secret = \"3f9c2a7e41b8d605c1e7a9f24b6d8e03\"\n\
         [shopify.admin]\nurl = \"{}\"\naccess_token = \"shpat_sandbox\"\n\
         [sinks]\n[sinks.wms]\nbase_url = \"{}\"\napi_key = \"not-the-key\"\n\
         [sinks.salesforce]\nbase_url = \"{}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{secret}\"\n",
        nats.url(),
        shop.base_url(),
        wms.base_url(),
        sf.base_url()
    );
    let config = write_config(dir.path(), &text)?;
    let path = config.to_string_lossy().to_string();
    let out = tributary(&["preflight", "--config", &path, "--format", "json"]).await?;
    assert_ne!(out.code, 0, "the wrong WMS key fails preflight");
    let checks = out.json()?;
    let checks = checks.as_array().context("array")?;
    assert_eq!(status(checks, "shopify:web", "admin_api"), "pass");
    assert_eq!(status(checks, "sink:salesforce", "token"), "pass");
    assert_eq!(status(checks, "sink:salesforce", "api_usage"), "pass");
    assert_eq!(status(checks, "sink:wms", "api_key"), "fail");
    assert!(find(checks, "sink:wms", "api_key")["fix"]
        .as_str()
        .is_some_and(|f| f.contains("API key")));

    // Nearly the whole daily limit spent by others: a warning, not a failure.
    sf.set_api_used(99_000);
    let out = tributary(&["preflight", "--config", &path, "--format", "json"]).await?;
    let checks = out.json()?;
    let checks = checks.as_array().context("array")?;
    assert_eq!(status(checks, "sink:salesforce", "api_usage"), "warn");
    Ok(())
}

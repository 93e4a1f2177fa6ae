//! The tools a consumer and an operator reach for: `tail` prints events as JSON that decode
//! back to the very protobuf stored; `dlq --domain` lists, shows and drops the domain stage's
//! dead letters (the drop's resolution recorded and counted by the tracker); `completions`;
//! and the exit codes that tell a configuration error, an unreachable dependency and a
//! failed check apart (docs/operations.md).

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;
use support::*;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::retail::v1::DomainEvent;
use tributary_proto::Message as _;

/// The printed `event` read back with the descriptors into `T`.
fn from_json<T: tributary_proto::Message + Default>(
    pool: &DescriptorPool,
    name: &str,
    json: &Value,
) -> T {
    let desc = pool.get_message_by_name(name).expect("known message");
    let message = DynamicMessage::deserialize(desc, json.clone()).expect("protobuf JSON");
    message.transcode_to::<T>().expect("same message")
}

/// Each printed line (`--format json`) against the message stored at its sequence.
async fn check_lines<T: tributary_proto::Message + Default + PartialEq + std::fmt::Debug>(
    js: &jetstream::Context,
    stdout: &str,
    name: &str,
    expected: usize,
) -> Result<Vec<Value>> {
    let pool = DescriptorPool::decode(tributary_proto::DESCRIPTOR_SET)?;
    let lines: Vec<Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(lines.len(), expected, "{stdout}");
    for line in &lines {
        let stream = line["stream"].as_str().context("stream")?;
        let seq = line["seq"].as_u64().context("seq")?;
        let stored = js.get_stream(stream).await?.get_raw_message(seq).await?;
        assert_eq!(line["subject"], stored.subject.as_str());
        let decoded = T::decode(stored.payload.clone())?;
        let printed: T = from_json(&pool, name, &line["event"]);
        assert_eq!(printed, decoded, "{line:#}");
    }
    Ok(lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_the_protobuf_it_decoded_and_dlq_reads_the_domain_stage() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    // With the tracker, which counts the dead letter's resolution.
    let text = retail_config(&pg, &nats.url(), &sources)? + "\n[tracker]\n";
    let config = write_config(dir.path(), &text)?;
    let path = config.to_string_lossy().to_string();
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;
    // SO-1 maps; SO-2's line has a fractional quantity, which no mapping can map.
    erp.batch_execute(
        "INSERT INTO customers VALUES (1, 'a@example.com', 'A', 'B', NULL, false, now());
         BEGIN;
         INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-1', 1, 'placed', 5);
         INSERT INTO order_lines VALUES ('SO-1', 1, 'SKU-1', 2, 2.50);
         COMMIT;
         BEGIN;
         INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-2', 1, 'placed', 5);
         INSERT INTO order_lines VALUES ('SO-2', 1, 'SKU-W', 2.5, 2.00);
         COMMIT;",
    )
    .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "DLQ_DOMAIN", 1, Duration::from_secs(60)).await?;
    wait_for_messages(&client, "RETAIL", 3, Duration::from_secs(60)).await?;
    let js = jetstream::new(client.clone());

    // Domain events of orders, from the start of the stream.
    let (code, out, err) = tributary(&[
        "tail",
        "--config",
        &path,
        "--subject",
        "retail.v1.order.>",
        "--from-seq",
        "1",
        "--count",
        "2",
        "--format",
        "json",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let lines = check_lines::<DomainEvent>(&js, &out, "tributary.retail.v1.DomainEvent", 2).await?;
    assert!(
        lines.iter().all(|l| l["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("retail.v1.order."))),
        "{out}"
    );
    assert_eq!(lines[0]["event"]["order"]["orderId"], "SO-1", "{out}");

    // Raw CDC changes, from a time.
    let (code, out, err) = tributary(&[
        "tail",
        "--config",
        &path,
        "--subject",
        "cdc.erp.>",
        "--from-time",
        "2000-01-01T00:00:00Z",
        "--count",
        "3",
        "--format",
        "json",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let lines = check_lines::<ChangeEvent>(&js, &out, "tributary.cdc.v1.ChangeEvent", 3).await?;
    assert_eq!(lines[0]["stream"], "CDC_ERP", "{out}");
    // The table form shows the same event indented.
    let (code, out, _) = tributary(&[
        "tail",
        "--config",
        &path,
        "--subject",
        "cdc.erp.>",
        "--from-seq",
        "1",
        "--count",
        "1",
    ])
    .await?;
    assert_eq!(code, 0);
    assert!(out.starts_with("#1 cdc.erp."), "{out}");

    // The domain stage's dead letter: listed, shown decoded, not redriven, dropped.
    let (code, out, err) = tributary(&[
        "dlq", "list", "--config", &path, "--domain", "--format", "json",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let entries: Value = serde_json::from_str(&out)?;
    let entry = &entries[0];
    assert_eq!(entries.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(entry["mapping"], "erp_order_line_added", "{out}");
    assert!(
        entry["event_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{out}"
    );
    let seq = entry["seq"].to_string();
    let (code, out, err) = tributary(&[
        "dlq", "show", "--config", &path, "--domain", "--seq", &seq, "--format", "json",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out)?;
    assert_eq!(
        shown["headers"]["Tributary-Mapping"],
        "erp_order_line_added"
    );
    let stored = js
        .get_stream("DLQ_DOMAIN")
        .await?
        .get_raw_message(entry["seq"].as_u64().unwrap_or(0))
        .await?;
    let pool = DescriptorPool::decode(tributary_proto::DESCRIPTOR_SET)?;
    let change: ChangeEvent = from_json(&pool, "tributary.cdc.v1.ChangeEvent", &shown["event"]);
    assert_eq!(change, ChangeEvent::decode(stored.payload)?);
    let (code, _, err) =
        tributary(&["dlq", "redrive", "--config", &path, "--domain", "--all"]).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("tributary backfill"), "{err}");
    let (code, out, err) = tributary(&[
        "dlq", "drop", "--config", &path, "--domain", "--all", "--yes",
    ])
    .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped dead letter"), "{out}");
    let (_, out, _) = tributary(&["dlq", "list", "--config", &path, "--domain"]).await?;
    assert!(out.contains("the domain stage: no dead letters"), "{out}");
    // Its resolution is recorded (sink `domain`, the mapping) and counted once.
    let resolved: Vec<tributary_tracker::resolution::Resolution> = read_all(&client, "O2C")
        .await?
        .iter()
        .filter(|m| m.subject.as_str() == "o2c.v1.dead_letter.resolved")
        .map(|m| serde_json::from_slice(&m.payload))
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let r = &resolved[0];
    assert_eq!(
        (r.sink.as_str(), r.mapping.as_str(), r.outcome.as_str()),
        ("domain", "erp_order_line_added", "dropped")
    );
    assert_eq!(Some(r.event_id.as_str()), entry["event_id"].as_str());
    let parked = time::OffsetDateTime::parse(
        entry["time"].as_str().unwrap_or_default(),
        &time::format_description::well_known::Rfc3339,
    )?;
    assert_eq!(
        r.parked_at_micros as i128,
        parked.unix_timestamp_nanos() / 1000
    );
    let http = text
        .lines()
        .next()
        .and_then(|l| l.split('"').nth(1))
        .context("http_listen")?
        .to_string();
    let series =
        "tributary_o2c_exception_resolution_seconds_count{sink=\"domain\",outcome=\"dropped\"} 1";
    wait_until(Duration::from_secs(30), async || {
        let (_, metrics) = http_get(&http, "/metrics").await?;
        Ok(match metrics.lines().any(|l| l == series) {
            true => Check::Done(()),
            false => Check::Pending(format!("no {series}\n{}", bridge.log())),
        })
    })
    .await?;

    let log = bridge.log();
    assert_eq!(bridge.stop().await?, 0, "{log}");
    Ok(())
}

#[tokio::test]
async fn completions_for_each_shell() -> Result<()> {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef tributary"),
        ("fish", "complete -c tributary"),
    ] {
        let (code, out, err) = tributary(&["completions", shell]).await?;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("tail") && out.contains("dlq"), "{shell}");
    }
    Ok(())
}

fn unreachable_config(dir: &Path) -> Result<String> {
    let nats = tributary_testkit::free_port();
    let pg = tributary_testkit::free_port();
    let text = format!(
        "http_listen = \"127.0.0.1:{}\"\nstartup_timeout_secs = 1\n\
         [nats]\nservers = [\"nats://127.0.0.1:{nats}\"]\nconnect_timeout_ms = 300\n\
         [[sources]]\nname = \"erp\"\npublication = \"pub_erp\"\nslot = \"slot_erp\"\n\
         [sources.connection]\nhost = \"127.0.0.1\"\nport = {pg}\nuser = \"postgres\"\npassword = \"x\"\ndbname = \"erp\"\n",
        tributary_testkit::free_port()
    );
    Ok(write_config(dir, &text)?.to_string_lossy().to_string())
}

/// 3: the configuration; 4: a dependency not reachable; 5: a check that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_config_unreachable_and_failed_check_apart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = write_config(dir.path(), "[nats]\nservers = \"not a list\"\n")?;
    let bad = bad.to_string_lossy().to_string();
    for args in [
        vec!["check-config", "--config", &bad],
        vec!["run", "--config", &bad],
        vec!["status", "--config", &bad],
    ] {
        let (code, _, err) = tributary(&args).await?;
        assert_eq!(code, 3, "{args:?}: {err}");
    }
    let (code, _, err) =
        tributary(&["check-config", "--config", "/nonexistent/tributary.toml"]).await?;
    assert_eq!(code, 3, "{err}");

    let config = unreachable_config(dir.path())?;
    for args in [
        vec!["run", "--config", &config],
        vec!["status", "--config", &config],
        vec!["tail", "--config", &config, "--subject", "cdc.>"],
    ] {
        let (code, _, err) = tributary(&args).await?;
        assert_eq!(code, 4, "{args:?}: {err}");
    }
    let (code, out, err) = tributary(&["preflight", "--config", &config]).await?;
    assert_eq!(code, 5, "{out}\n{err}");
    // Usage errors keep clap's code.
    let (code, _, _) = tributary(&["tail", "--config", &config]).await?;
    assert_eq!(code, 2);
    Ok(())
}

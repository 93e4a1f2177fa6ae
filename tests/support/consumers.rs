//! Consumers run as a user would, shared by tests/schema_references.rs and
//! tests/snapshot_batches.rs: the Rust and Python example consumers of `CDC_ERP`, and a bridge
//! with the sample retail mappings whose domain events two configurations are compared by.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tributary_proto::retail::v1::DomainEvent;
use tributary_proto::Message as _;
use tributary_testkit::NatsServer;

use crate::support::*;

/// examples/rust/cdc_consumer.rs built like a user would, reading `count` messages.
pub async fn rust_example(url: &str, count: &str) -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = tokio::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "tributary",
            "--example",
            "cdc_consumer",
        ])
        .status()
        .await?;
    assert!(status.success(), "building the Rust example");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tributary"))
        .parent()
        .context("target dir")?
        .join("examples/cdc_consumer");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&exe)
            .args([url, "CDC_ERP", "rust-cdc-example", count])
            .output(),
    )
    .await
    .context("the Rust example did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// examples/python/cdc_consumer.py's JSON lines; `None` when python3 lacks nats-py or
/// protobuf (scripts/test.sh sets TRIBUTARY_REQUIRE_PYTHON so that CI cannot skip it).
pub async fn python_example(url: &str, count: &str) -> Result<Option<Vec<serde_json::Value>>> {
    let has_python = tokio::process::Command::new("python3")
        .args(["-c", "import nats, google.protobuf"])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !has_python {
        assert!(
            std::env::var_os("TRIBUTARY_REQUIRE_PYTHON").is_none(),
            "python3 with nats-py and protobuf is required"
        );
        eprintln!("skipping the Python example: python3 with nats-py and protobuf not found");
        return Ok(None);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(root.join("examples/python/cdc_consumer.py"))
            .args([
                "--server",
                url,
                "--stream",
                "CDC_ERP",
                "--count",
                count,
                "--timeout",
                "20",
            ])
            .arg("--descriptor-file")
            .arg(root.join("proto/descriptors/tributary.binpb"))
            .output(),
    )
    .await
    .context("the Python example did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("JSON lines: {stdout}"))?;
    Ok(Some(lines))
}

/// A bridge with the sample retail mappings on its own NATS server, reading the shared
/// databases through its own slots.
pub async fn retail_bridge(
    pg: &tributary_testkit::PgCluster,
    dir: &Path,
    suffix: &str,
    extra: &str,
) -> Result<(NatsServer, Bridge)> {
    retail_bridge_edited(pg, dir, suffix, extra, |text| text).await
}

/// [`retail_bridge`] with its configuration text edited by `edit` (e.g. mappings of more ops).
pub async fn retail_bridge_edited(
    pg: &tributary_testkit::PgCluster,
    dir: &Path,
    suffix: &str,
    extra: &str,
    edit: impl Fn(String) -> String,
) -> Result<(NatsServer, Bridge)> {
    let nats = NatsServer::start().await?;
    let sources: Vec<SourceSpec> = ["erp", "pos"]
        .iter()
        .map(|name| {
            let mut spec = SourceSpec::new(name, name);
            spec.publication = format!("tributary_{name}");
            spec.slot = format!("slot_{name}_{suffix}");
            spec.extra = extra.into();
            spec
        })
        .collect();
    let text = edit(retail_config(pg, &nats.url(), &sources)?);
    let dir = dir.join(suffix);
    std::fs::create_dir_all(&dir)?;
    let bridge = Bridge::spawn(&write_config(&dir, &text)?)?;
    let slots: Vec<String> = sources.iter().map(|s| s.slot.clone()).collect();
    let slots: Vec<&str> = slots.iter().map(String::as_str).collect();
    wait_streaming(pg, &slots, &bridge).await?;
    Ok((nats, bridge))
}

/// The domain events of `RETAIL` once there are `n`, without what depends on the slot
/// (ids and source positions): subject, key and entity, sorted.
pub async fn domain_events(nats: &NatsServer, n: usize) -> Result<Vec<(String, String, Vec<u8>)>> {
    let client = nats.connect().await?;
    wait_for_messages(&client, "RETAIL", n as u64, Duration::from_secs(90)).await?;
    wait_quiescent(&client, Duration::from_secs(60)).await?;
    let mut out = Vec::new();
    for msg in read_all(&client, "RETAIL").await? {
        let event = DomainEvent::decode(msg.payload.clone())?;
        let key = event
            .meta
            .as_ref()
            .map(|m| m.entity_key.clone())
            .unwrap_or_default();
        let entity = event.entity.as_ref().context("entity")?;
        let mut bytes = Vec::new();
        entity.encode(&mut bytes);
        out.push((msg.subject.to_string(), key, bytes));
    }
    out.sort();
    Ok(out)
}

//! The KPI "exception resolution time" (issue #14, item 3; docs/order-to-cash.md): inventory
//! levels for SKUs the Shopify emulator does not know are parked in `DLQ_SINKS`; after a
//! wait, `tributary dlq redrive` and `drop` (the CLI, one dead letter per command) leave a
//! record each on `o2c.v1.dead_letter.resolved`, and the bridge's tracker exports
//! `tributary_o2c_exception_resolution_seconds{sink,outcome}` whose count and sum equal the
//! ground truth: the dead letters' stored times (`dlq list`) against the commands' run times.
//! A record written by a command that crashed before it deleted its dead letter, the command
//! run again, the same record again beyond the duplicate window, a restart and a replay of
//! the records from sequence 1 count nothing twice. Without the tracker's stream the command
//! changes nothing. The open dead letters' age is sampled.

#[path = "support/o2c.rs"]
mod o2c;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use o2c::{create_retail, now_micros, publish, value};
use support::*;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent, EventMeta, InventoryLevel};
use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed};
use tributary_tracker::resolution::Resolution;

const HISTOGRAM: &str = "tributary_o2c_exception_resolution_seconds";
const RESOLVED: &str = "o2c.v1.dead_letter.resolved";

/// An ERP inventory level of `sku` at DC1.
fn level(sku: &str, on_hand: i64) -> DomainEvent {
    DomainEvent {
        meta: Some(EventMeta {
            event_id: format!("inv-{sku}-{on_hand}"),
            entity: "inventory".into(),
            event: "level_changed".into(),
            entity_key: format!("{sku}|DC1"),
            entity_version: 1,
            system_of_record: "erp".into(),
            event_time_micros: now_micros(),
            ..Default::default()
        }),
        entity: Some(Entity::Inventory(InventoryLevel {
            sku: sku.into(),
            location: "DC1".into(),
            on_hand,
            available: on_hand,
            reporting_system: "erp".into(),
            ..Default::default()
        })),
    }
}

/// `tributary dlq <args> --sink shopify -c <config>`, which must succeed: (stdout, the
/// wall-clock window it ran in, in microseconds).
async fn dlq(config: &Path, args: &[&str]) -> Result<(String, (i64, i64))> {
    let config = config.to_string_lossy().to_string();
    let mut all = vec!["dlq"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--sink", "shopify", "-c", &config]);
    let before = now_micros();
    let (code, out, err) = tributary(&all).await?;
    let after = now_micros();
    anyhow::ensure!(code == 0, "tributary {all:?} exited {code}: {out}{err}");
    Ok((out, (before, after)))
}

/// The parked dead letters: sequence → (stored time in microseconds, event id).
async fn parked(config: &Path) -> Result<BTreeMap<u64, (i64, String)>> {
    let (out, _) = dlq(config, &["list", "--format", "json"]).await?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    rows.iter()
        .map(|r| {
            let time = OffsetDateTime::parse(r["time"].as_str().context("time")?, &Rfc3339)?;
            let id = r["event_id"].as_str().context("event_id")?.to_string();
            Ok((
                r["seq"].as_u64().context("seq")?,
                ((time.unix_timestamp_nanos() / 1000) as i64, id),
            ))
        })
        .collect()
}

/// The records on the tracker's stream, in stream order.
async fn records(nats: &async_nats::Client) -> Result<Vec<Resolution>> {
    read_all(nats, "O2C")
        .await?
        .iter()
        .filter(|m| m.subject.as_str() == RESOLVED)
        .map(|m| Ok(serde_json::from_slice(&m.payload)?))
        .collect()
}

/// Waits until the tracker's consumer of the records has acked everything on the stream.
async fn wait_observed(js: &jetstream::Context, bridge: &Bridge) -> Result<()> {
    wait_until(Duration::from_secs(60), async || {
        Ok(if records_observed(js).await? {
            Check::Done(())
        } else {
            Check::Pending(format!("records not observed\n{}", bridge.log()))
        })
    })
    .await
}

/// The tracker's consumer of the records has acked everything on the stream.
async fn records_observed(js: &jetstream::Context) -> Result<bool> {
    let Ok(mut consumer) = js
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
            "tributary_tracker_dead_letters",
            "O2C",
        )
        .await
    else {
        return Ok(false);
    };
    let info = consumer.info().await?;
    Ok(info.num_pending == 0 && info.num_ack_pending == 0)
}

async fn metrics_text(http: &str) -> Result<String> {
    Ok(http_get(http, "/metrics").await?.1)
}

/// Once the bridge serves metrics and its tracker has seen every record: none counted.
async fn nothing_counted(
    js: &jetstream::Context,
    bridge: &Bridge,
    http: &str,
    when: &str,
) -> Result<()> {
    let metrics = wait_until(Duration::from_secs(60), async || {
        Ok(match metrics_text(http).await {
            Ok(m) if m.contains(HISTOGRAM) && records_observed(js).await? => Check::Done(m),
            _ => Check::Pending(format!("records not observed {when}\n{}", bridge.log())),
        })
    })
    .await?;
    for outcome in ["redriven", "dropped"] {
        assert_eq!(observed(&metrics, outcome), (0.0, 0.0), "{outcome} {when}");
    }
    Ok(())
}

/// The histogram's (count, sum) for `outcome` of the Shopify sink.
fn observed(metrics: &str, outcome: &str) -> (f64, f64) {
    let labels = format!("{{sink=\"shopify\",outcome=\"{outcome}\"}}");
    (
        value(metrics, &format!("{HISTOGRAM}_count{labels}")),
        value(metrics, &format!("{HISTOGRAM}_sum{labels}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resolution_times_are_counted_once_from_the_dead_letters_own_times() -> Result<()> {
    let nats = tributary_testkit::NatsServer::start().await?;
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    create_retail(&js).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let dir = tempfile::tempdir()?;
    let http = format!("127.0.0.1:{}", tributary_testkit::try_free_port()?);
    let text = format!(
        "http_listen = \"{http}\"\n[nats]\nservers = [\"{}\"]\n\
         [tracker]\nsweep_interval_secs = 1\n\
         [sinks]\n[sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\n\
         apply = [\"inventory\"]\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         [sinks.shopify.delivery]\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        nats.url(),
        shop.base_url(),
    );
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;

    // Six levels of SKUs the shop does not know, a second apart: six dead letters.
    let skus: Vec<String> = (1..=6).map(|i| format!("SKU-X{i}")).collect();
    for (i, sku) in skus.iter().enumerate() {
        let e = level(sku, 10 + i as i64);
        let id = e
            .meta
            .as_ref()
            .map(|m| m.event_id.clone())
            .unwrap_or_default();
        publish(&js, &e, &[id]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let letters = wait_until(Duration::from_secs(60), async || {
        let p = parked(&config).await?;
        Ok(match p.len() {
            6 => Check::Done(p),
            n => Check::Pending(format!("{n} of 6 parked\n{}", bridge.log())),
        })
    })
    .await?;
    let seqs: Vec<u64> = letters.keys().copied().collect();

    // Shopify learns the first two SKUs, which are redriven (and apply); the next two are
    // dropped; the last two stay open.
    for sku in &skus[..2] {
        shop.add_product(
            sku,
            &[VariantSeed {
                sku: sku.clone(),
                price: "1.00".into(),
            }],
        );
    }
    // Resolution times of a few seconds; the sink's SKU cache refreshes after 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let mut truth: BTreeMap<u64, (&str, (i64, i64))> = BTreeMap::new();
    for (i, seq) in seqs.iter().take(4).enumerate() {
        let s = seq.to_string();
        let (outcome, args) = match i {
            0 | 1 => ("redriven", vec!["redrive", "--seq", &s]),
            _ => ("dropped", vec!["drop", "--seq", &s, "--yes"]),
        };
        let (_, window) = dlq(&config, &args).await?;
        truth.insert(*seq, (outcome, window));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    // A command that crashed after its record and before its delete: the record is on the
    // stream and the dead letter still parked. Run again, it records the same message id
    // (a duplicate) and deletes; the first record's time is the resolution time.
    let (crashed_seq, (crashed_parked, crashed_event)) = letters
        .iter()
        .nth(4)
        .map(|(s, v)| (*s, v.clone()))
        .context("a fifth dead letter")?;
    let crashed = Resolution {
        dead_letter_stream: "DLQ_SINKS".into(),
        dead_letter_seq: crashed_seq,
        sink: "shopify".into(),
        mapping: String::new(),
        event_id: crashed_event,
        outcome: "dropped".into(),
        reason: String::new(),
        parked_at_micros: crashed_parked,
        resolved_at_micros: now_micros(),
    };
    let publish_record = async |r: &Resolution, id: &str| -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        js.publish_with_headers(RESOLVED, headers, serde_json::to_vec(r)?.into())
            .await?
            .await?;
        Ok(())
    };
    publish_record(&crashed, &crashed.msg_id()).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let crashed_s = crashed_seq.to_string();
    dlq(&config, &["drop", "--seq", &crashed_s, "--yes"]).await?;
    let at = crashed.resolved_at_micros;
    truth.insert(crashed_seq, ("dropped", (at, at)));
    // The same command once more: the dead letter is gone, nothing is recorded.
    let seq0 = seqs[0].to_string();
    let (code, _, err) = tributary(&[
        "dlq",
        "redrive",
        "--seq",
        &seq0,
        "--sink",
        "shopify",
        "-c",
        &config.to_string_lossy(),
    ])
    .await?;
    assert_ne!(code, 0, "a redrive of a resolved dead letter succeeded");
    assert!(err.contains("no dead letter"), "{err}");
    // A record seen again beyond the duplicate window (another message id): not counted.
    publish_record(&crashed, "beyond-the-window").await?;

    // The records: one per resolved dead letter (plus the late copy), with the dead
    // letters' own stored times, resolved within the commands' run times.
    let recs = records(&client).await?;
    assert_eq!(recs.len(), 6, "{recs:?}");
    let mut expected: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
    for r in &recs[..5] {
        let (outcome, (before, after)) = truth[&r.dead_letter_seq];
        assert_eq!(r.outcome, outcome);
        assert_eq!(r.sink, "shopify");
        assert_eq!(r.parked_at_micros, letters[&r.dead_letter_seq].0);
        assert_eq!(r.event_id, letters[&r.dead_letter_seq].1);
        assert!(
            (before..=after).contains(&r.resolved_at_micros),
            "dead letter {}: resolved at {} outside the command's run {before}..{after}",
            r.dead_letter_seq,
            r.resolved_at_micros
        );
        let e = expected.entry(outcome).or_default();
        e.0 += 1.0;
        e.1 += (before - r.parked_at_micros) as f64 / 1e6;
        e.2 += (after - r.parked_at_micros) as f64 / 1e6;
    }
    assert_eq!(recs[5], crashed);

    // The tracker's histogram equals that ground truth (±1 s), once every record is seen.
    wait_observed(&js, &bridge).await?;
    let check = |metrics: &str| {
        for (outcome, (count, low, high)) in &expected {
            let (c, sum) = observed(metrics, outcome);
            eprintln!("{outcome}: count {c}, sum {sum} s, ground truth {low}..{high} s");
            assert_eq!(c, *count, "{outcome} count");
            assert!(
                sum >= low - 1.0 && sum <= high + 1.0,
                "{outcome}: sum {sum} outside {low}..{high} (±1 s)"
            );
        }
    };
    let metrics = metrics_text(&http).await?;
    check(&metrics);
    assert_eq!(expected["redriven"].0, 2.0);
    assert_eq!(expected["dropped"].0, 3.0);
    // The redriven levels apply.
    wait_until(Duration::from_secs(30), async || {
        Ok(match shop.with_state(|s| s.inventory_history.len()) {
            2 => Check::Done(()),
            n => Check::Pending(format!(
                "{n} of 2 redriven levels applied\n{}",
                bridge.log()
            )),
        })
    })
    .await?;

    // One dead letter is still open: its age is sampled (every 5 s).
    let (_, (open_parked, _)) = letters.iter().nth(5).context("a sixth dead letter")?;
    let open_parked = *open_parked;
    wait_until(Duration::from_secs(30), async || {
        let metrics = metrics_text(&http).await?;
        let age = value(
            &metrics,
            "tributary_sink_dead_letter_oldest_age_seconds{sink=\"shopify\"}",
        );
        let truth = (now_micros() - open_parked) as f64 / 1e6;
        // Sampled at most 5 s ago (and a scrape's rounding).
        Ok(if age > 0.0 && age <= truth + 0.5 && age >= truth - 6.5 {
            Check::Done(())
        } else {
            Check::Pending(format!("oldest age {age}, expected about {truth}"))
        })
    })
    .await?;

    // A tracker whose stream does not exist (never started): the command changes nothing.
    let (open_seq, _) = letters.iter().nth(5).context("a sixth dead letter")?;
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    let elsewhere = write_config(
        &elsewhere,
        &text.replace(
            "[tracker]\n",
            "[tracker]\nstream = \"O2C_NEVER_CREATED\"\nsubject_prefix = \"nowhere.v1\"\n",
        ),
    )?;
    let open_s = open_seq.to_string();
    let (code, _, err) = tributary(&[
        "dlq",
        "drop",
        "--seq",
        &open_s,
        "--yes",
        "--sink",
        "shopify",
        "-c",
        &elsewhere.to_string_lossy(),
    ])
    .await?;
    assert_ne!(code, 0, "a drop with no stream to record it in succeeded");
    assert!(err.contains("O2C_NEVER_CREATED"), "{err}");
    assert!(parked(&config).await?.contains_key(open_seq));

    // A restart, and then a replay of every record (the consumer deleted): nothing counted.
    assert_eq!(bridge.stop().await?, 0);
    let bridge = Bridge::spawn(&config)?;
    nothing_counted(&js, &bridge, &http, "after the restart").await?;
    assert_eq!(bridge.stop().await?, 0);
    js.get_stream("O2C")
        .await?
        .delete_consumer("tributary_tracker_dead_letters")
        .await?;
    let bridge = Bridge::spawn(&config)?;
    nothing_counted(&js, &bridge, &http, "after the replay").await?;
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

//! Helpers of the order-to-cash tracker tests: domain events built by hand, published on
//! RETAIL, and the tracker's metrics and events read back.
#![allow(dead_code)]

use std::collections::BTreeMap;

use async_nats::jetstream;
use tributary_proto::retail::v1::{
    domain_event::Entity, DomainEvent, EventMeta, Fulfillment, Order,
};
use tributary_proto::Message as _;

pub const S: i64 = 1_000_000;

/// A domain event as the domain stage or a feed would publish it; `n` numbers the entity's
/// events (version, and part of the event id).
pub fn event(entity: &str, name: &str, key: &str, n: usize, at: i64, body: Entity) -> DomainEvent {
    let system = if entity == "fulfillment" {
        "wms"
    } else {
        "erp"
    };
    DomainEvent {
        meta: Some(EventMeta {
            event_id: format!("{key}/{entity}.{name}/{n}"),
            entity: entity.into(),
            event: name.into(),
            entity_key: key.into(),
            entity_version: n as u64,
            system_of_record: system.into(),
            event_time_micros: at,
            ..Default::default()
        }),
        entity: Some(body),
    }
}

pub fn order(id: &str, status: &str, placed: i64) -> Entity {
    Entity::Order(Order {
        order_id: id.into(),
        status: status.into(),
        placed_at_micros: placed,
        ..Default::default()
    })
}

pub fn fulfillment(id: &str, status: &str, shipped: i64) -> Entity {
    Entity::Fulfillment(Fulfillment {
        order_id: id.into(),
        status: status.into(),
        shipped_at_micros: shipped,
        ..Default::default()
    })
}

/// The stream RETAIL as the domain stage creates it (subjects `retail.v1.>`).
pub async fn create_retail(js: &jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(jetstream::stream::Config {
        name: "RETAIL".into(),
        subjects: vec!["retail.v1.>".into()],
        duplicate_window: std::time::Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Publishes `e` on `retail.v1.<entity>.<event>` under each of `msg_ids`.
pub async fn publish(
    js: &jetstream::Context,
    e: &DomainEvent,
    msg_ids: &[String],
) -> anyhow::Result<()> {
    let meta = e.meta.clone().unwrap_or_default();
    let subject = format!("retail.v1.{}.{}", meta.entity, meta.event);
    for id in msg_ids {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(subject.clone(), headers, e.encode_to_vec().into())
            .await?
            .await?;
    }
    Ok(())
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Events the tracker consumed, whatever their outcome.
pub fn consumed(metrics: &str) -> f64 {
    ["applied", "repeated", "ignored"]
        .iter()
        .map(|o| {
            value(
                metrics,
                &format!("tributary_o2c_events_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum()
}

/// The keys of the tracker's events on stream O2C, per subject, in stream order.
pub async fn o2c_subjects(
    nats: &async_nats::Client,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for msg in crate::support::read_all(nats, "O2C").await? {
        let body: serde_json::Value = serde_json::from_slice(&msg.payload)?;
        out.entry(msg.subject.to_string())
            .or_default()
            .push(body["key"].as_str().unwrap_or("").to_string());
    }
    Ok(out)
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `tributary orders stuck --older-than <age> --format json`: (order, waiting step, whether
/// `order.stuck` was published), in the command's order.
pub async fn orders_stuck(config: &str, age: &str) -> anyhow::Result<Vec<(String, String, bool)>> {
    let args = [
        "orders",
        "stuck",
        "--older-than",
        age,
        "-c",
        config,
        "--format",
        "json",
    ];
    let (code, out, err) = crate::support::tributary(&args).await?;
    anyhow::ensure!(code == 0, "orders stuck exited {code}: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    Ok(rows
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (
                text("order"),
                text("waiting"),
                r["exception_published"] == true,
            )
        })
        .collect())
}

/// `tributary orders show <order> --format json`.
pub async fn orders_show(config: &str, order: &str) -> anyhow::Result<serde_json::Value> {
    let args = ["orders", "show", order, "-c", config, "--format", "json"];
    let (code, out, err) = crate::support::tributary(&args).await?;
    anyhow::ensure!(code == 0, "orders show {order} exited {code}: {err}");
    Ok(serde_json::from_str(&out)?)
}

/// Asserts a histogram series' count and sum (to a microsecond per observation).
pub fn assert_histogram(metrics: &str, name: &str, labels: &str, count: u64, sum: f64) {
    let got_count = value(metrics, &format!("{name}_count{labels}"));
    let got_sum = value(metrics, &format!("{name}_sum{labels}"));
    assert_eq!(got_count, count as f64, "count of {name}{labels}");
    assert!(
        (got_sum - sum).abs() < 1e-6 * (count.max(1) as f64) + 1e-9,
        "{name}{labels}: sum {got_sum} != {sum}"
    );
}

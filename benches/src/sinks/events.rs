//! The domain events the sink benchmark publishes: per target, the entities and versions
//! whose final state the emulator is checked against afterwards.

use std::future::IntoFuture as _;
use std::time::{SystemTime, UNIX_EPOCH};

pub(super) const PREFIX: &str = "retail.v1";
/// Events published per `ack` wait (pitfalls.md: one round trip per message caps at ~11k/s).
pub(super) const PUBLISH_WINDOW: usize = 1000;
/// Lines per WMS order: placed + lines + confirmed events per order.
pub(super) const LINES_PER_ORDER: usize = 3;

use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::HeaderMap;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use prost::Message as _;
use tributary_proto::retail::v1::{
    domain_event::Entity, Customer, DomainEvent, EventMeta, InventoryLevel, Money, Order, OrderLine,
};

pub(super) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// (subject, event)
pub(super) type Published = (String, DomainEvent);

pub(super) fn event(
    id: String,
    entity: &str,
    name: &str,
    key: String,
    version: u64,
    body: Entity,
) -> Published {
    (
        format!("{PREFIX}.{entity}.{name}"),
        DomainEvent {
            meta: Some(EventMeta {
                event_id: id,
                entity: entity.into(),
                event: name.into(),
                entity_key: key,
                entity_version: version,
                system_of_record: "erp".into(),
                event_time_micros: now_micros(),
                source_ref: None,
                mapping: "bench".into(),
            }),
            entity: Some(body),
        },
    )
}

/// WMS: orders of `placed`, three `line_added` and `status_changed` to `confirmed` (five
/// events, one release); blocks of 1,000 orders, each block's events interleaved by step
/// (all placed, then the first lines, …) so that many orders are in flight at once.
pub(super) fn wms_events(n: u64) -> Vec<Published> {
    let per_order = LINES_PER_ORDER as u64 + 2;
    let orders = (n / per_order).max(1);
    let mut out = Vec::with_capacity((orders * per_order) as usize);
    let block = 1000;
    for first in (0..orders).step_by(block) {
        let ids: Vec<u64> = (first..(first + block as u64).min(orders)).collect();
        for step in 0..per_order {
            for &o in &ids {
                let order_id = format!("SO-{o:07}");
                let customer = format!("C-{}", o % 5000);
                let id = format!("bench-wms-{o}-{step}");
                let version = step + 1;
                let ev = if step == 0 {
                    event(
                        id,
                        "order",
                        "placed",
                        order_id.clone(),
                        version,
                        Entity::Order(Order {
                            order_id,
                            customer_id: customer,
                            status: "placed".into(),
                            channel: "web".into(),
                            total: Some(Money {
                                amount: "30.00".into(),
                                currency: "EUR".into(),
                            }),
                            placed_at_micros: now_micros(),
                            ..Default::default()
                        }),
                    )
                } else if step <= LINES_PER_ORDER as u64 {
                    event(
                        id,
                        "order",
                        "line_added",
                        order_id.clone(),
                        version,
                        Entity::OrderLine(OrderLine {
                            order_id,
                            line_id: step.to_string(),
                            sku: format!("SKU-{:04}", (o + step) % 1000),
                            quantity: step as i64,
                            customer_id: customer,
                            ..Default::default()
                        }),
                    )
                } else {
                    event(
                        id,
                        "order",
                        "status_changed",
                        order_id.clone(),
                        version,
                        Entity::Order(Order {
                            order_id,
                            customer_id: customer,
                            status: "confirmed".into(),
                            ..Default::default()
                        }),
                    )
                };
                out.push(ev);
            }
        }
    }
    out
}

/// The quantity the `version`-th level of `sku` sets.
pub(super) fn stock_of(sku: u64, version: u64) -> i64 {
    (1000 + version * 7 + sku % 13) as i64
}

/// Shopify: `inventory.level_changed` of `entities` SKUs at DC1, round robin, so that each
/// SKU's version rises by one per round.
pub(super) fn shopify_events(n: u64, entities: u64) -> Vec<Published> {
    (0..n)
        .map(|i| {
            let (sku, version) = (i % entities, i / entities + 1);
            let name = format!("SKU-{sku:06}");
            event(
                format!("bench-shopify-{i}"),
                "inventory",
                "level_changed",
                format!("{name}|DC1"),
                version,
                Entity::Inventory(InventoryLevel {
                    sku: name,
                    location: "DC1".into(),
                    on_hand: stock_of(sku, version) + 5,
                    reserved: 5,
                    available: stock_of(sku, version),
                    reporting_system: "erp".into(),
                    updated_at_micros: now_micros(),
                    ..Default::default()
                }),
            )
        })
        .collect()
}

pub(super) const ORDER_STATUSES: &[&str] =
    &["placed", "confirmed", "packed", "shipped", "invoiced"];

/// Salesforce: customers and orders alternately (`entities` of each), each entity's version
/// rising by one per round.
pub(super) fn salesforce_events(n: u64, entities: u64) -> Vec<Published> {
    (0..n)
        .map(|i| {
            let j = i / 2;
            let (e, version) = (j % entities, j / entities + 1);
            if i % 2 == 0 {
                event(
                    format!("bench-salesforce-{i}"),
                    "customer",
                    "updated",
                    format!("C-{e}"),
                    version,
                    Entity::Customer(Customer {
                        customer_id: format!("C-{e}"),
                        email: format!("c{e}@example.com"),
                        first_name: format!("First{e}"),
                        last_name: format!("Last{e}-v{version}"),
                        ..Default::default()
                    }),
                )
            } else {
                event(
                    format!("bench-salesforce-{i}"),
                    "order",
                    "status_changed",
                    format!("SO-{e}"),
                    version,
                    Entity::Order(Order {
                        order_id: format!("SO-{e}"),
                        customer_id: format!("C-{e}"),
                        status: ORDER_STATUSES[(version as usize - 1) % ORDER_STATUSES.len()]
                            .into(),
                        total: Some(Money {
                            amount: format!("{}.00", 10 + version),
                            currency: "EUR".into(),
                        }),
                        placed_at_micros: now_micros(),
                        ..Default::default()
                    }),
                )
            }
        })
        .collect()
}

/// Publishes every event with `Nats-Msg-Id` = event id, keeping a window of acks in flight;
/// returns the last stream sequence.
pub(super) async fn publish(js: &jetstream::Context, events: &[Published]) -> anyhow::Result<u64> {
    let mut inflight = FuturesUnordered::new();
    let mut last = 0u64;
    for (subject, ev) in events {
        let mut headers = HeaderMap::new();
        let id = ev.meta.as_ref().map(|m| m.event_id.as_str()).unwrap_or("");
        headers.insert("Nats-Msg-Id", id);
        let ack = js
            .publish_with_headers(subject.clone(), headers, ev.encode_to_vec().into())
            .await
            .context("publishing a domain event")?;
        inflight.push(ack.into_future());
        if inflight.len() >= PUBLISH_WINDOW {
            if let Some(ack) = inflight.next().await {
                last = last.max(ack.context("publish ack")?.sequence);
            }
        }
    }
    while let Some(ack) = inflight.next().await {
        last = last.max(ack.context("publish ack")?.sequence);
    }
    Ok(last)
}

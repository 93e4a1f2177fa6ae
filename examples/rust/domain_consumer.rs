//! Example: a Rust consumer of Tributary's domain events.
//!
//! Subscribes to `retail.v1.>` on the `RETAIL` stream with a durable pull consumer (so a
//! restart resumes where it left off), decodes each `tributary.retail.v1.DomainEvent` with
//! the types generated from `proto/`, prints one line per event and acks it.
//!
//! ```sh
//! cargo run -p tributary --example domain_consumer -- nats://127.0.0.1:4222 my-service 10
//! ```
//! Arguments: server URL, durable consumer name, number of events to read (0 = forever).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use futures::StreamExt;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let durable = args.next().unwrap_or_else(|| "rust-example".into());
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(0);

    let client = async_nats::connect(&server).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream("RETAIL").await.context("stream RETAIL")?;
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                filter_subject: "retail.v1.>".into(),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    let mut seen = 0;
    while count == 0 || seen < count {
        let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("no event within 30 s")?
            .context("subscription ended")??;
        let event = DomainEvent::decode(msg.payload.clone())?;
        let meta = event.meta.clone().unwrap_or_default();
        let summary = match &event.entity {
            Some(Entity::Order(o)) => format!(
                "order {} status={} total={:?}",
                o.order_id,
                o.status,
                o.total.as_ref().map(|m| &m.amount)
            ),
            Some(Entity::OrderLine(l)) => {
                format!("line {} sku={} qty={}", l.line_id, l.sku, l.quantity)
            }
            Some(Entity::Inventory(i)) => {
                format!("stock {}@{} on_hand={}", i.sku, i.location, i.on_hand)
            }
            Some(Entity::Customer(c)) => format!("customer {} email={}", c.customer_id, c.email),
            Some(other) => format!("{other:?}"),
            None => "no entity".into(),
        };
        println!(
            "{} key={} version={} system={} {summary}",
            msg.subject, meta.entity_key, meta.entity_version, meta.system_of_record
        );
        // Ack after handling: a crash before this line redelivers the event (dedupe by
        // meta.event_id if handling is not idempotent).
        msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        seen += 1;
    }
    Ok(())
}

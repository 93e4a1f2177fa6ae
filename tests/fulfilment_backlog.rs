//! A backlog where fulfilments come before the order events that carry their link to the
//! storefront: the Shopify sink hands each such fulfilment back to JetStream (it waits,
//! without holding its lane) until its order's link is recorded, so that every fulfilment
//! reaches the storefront. A fulfilment of an order known not to come from the storefront
//! is ignored; one whose order never comes is dead-lettered after `max_wait_secs`, with the
//! reason — never dropped silently. A shipment of one line of an order with more lines than
//! the sink's first page of fulfilment-order lines finds that line (the lookup pages on,
//! within Shopify's query cost limit, which the emulator enforces).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use async_nats::jetstream;
use support::*;
use tributary_proto::retail::v1::{
    domain_event::Entity, DomainEvent, EventMeta, ExternalId, Fulfillment, FulfillmentLine, Order,
};
use tributary_proto::Message as _;
use tributary_sandbox::shopify::{self, ShopifyOptions};

/// Orders whose fulfilments overtake their link; more than the lanes' queues hold. Each
/// fulfilment is keyed by its order's number, as the WMS feed keys them, so it shares its
/// order's lane and the order event sits behind it there.
const ORDERS: usize = 60;

fn event(entity: &str, event: &str, key: &str, body: Entity) -> DomainEvent {
    DomainEvent {
        meta: Some(EventMeta {
            event_id: format!("test/{entity}/{key}/{event}"),
            entity: entity.into(),
            event: event.into(),
            entity_key: key.into(),
            entity_version: 1,
            system_of_record: "test".into(),
            ..Default::default()
        }),
        entity: Some(body),
    }
}

fn shipped(order: &str) -> DomainEvent {
    event(
        "fulfillment",
        "updated",
        order,
        Entity::Fulfillment(Fulfillment {
            fulfillment_id: format!("F-{order}"),
            order_id: order.into(),
            status: "shipped".into(),
            tracking_number: format!("TRK-{order}"),
            carrier: "DHL".into(),
            ..Default::default()
        }),
    )
}

fn placed(order: &str, shop_id: Option<&str>) -> DomainEvent {
    event(
        "order",
        "placed",
        order,
        Entity::Order(Order {
            order_id: order.into(),
            status: "placed".into(),
            external_ids: shop_id
                .map(|id| ExternalId {
                    system: "shopify".into(),
                    id: id.into(),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fulfilments_that_overtake_their_order_link_are_all_applied() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let _items = shop_catalog(&shop, ["SKU-1".to_string()], "5.00");
    let shop_orders: Vec<(String, String)> = (1..=ORDERS)
        .map(|i| {
            let o = shop.add_order("a@example.com", &[("SKU-1", 1, "5.00")], None);
            (format!("SO-{i}"), o.order_id)
        })
        .collect();

    // More lines than the sink's first page of a fulfilment order's lines (25) holds.
    let long_skus: Vec<String> = (0..60).map(|i| format!("L-{i:02}")).collect();
    let long_lines: Vec<(&str, i64, &str)> =
        long_skus.iter().map(|s| (s.as_str(), 2, "1.00")).collect();
    let long = shop
        .add_order("long@example.com", &long_lines, None)
        .order_id;

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         apply = [\"fulfillments\"]\n\
         [sinks.shopify.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
         wait_retry_ms = 300\nmax_wait_secs = 20\n",
        shop.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    // A first run provisions the streams; the backlog builds up while the bridge is down.
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    bridge.stop().await?;

    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    let publish = async |ev: DomainEvent| -> Result<()> {
        let meta = ev.meta.clone().unwrap_or_default();
        js.publish(
            format!("retail.v1.{}.{}", meta.entity, meta.event),
            ev.encode_to_vec().into(),
        )
        .await?
        .await?;
        Ok(())
    };
    // Fulfilments first, for orders the sink has never seen: the storefront ones, one of an
    // order that is not from the storefront, one of an order that never comes.
    for (order, _) in &shop_orders {
        publish(shipped(order)).await?;
    }
    publish(shipped("SO-POS")).await?;
    publish(shipped("SO-GHOST")).await?;
    for (order, shop_id) in &shop_orders {
        publish(placed(order, Some(shop_id))).await?;
    }
    publish(placed("SO-POS", None)).await?;
    let mut last_line = shipped("SO-LONG");
    if let Some(Entity::Fulfillment(f)) = &mut last_line.entity {
        f.lines = vec![FulfillmentLine {
            sku: "L-59".into(),
            quantity: 1,
            ..Default::default()
        }];
    }
    publish(placed("SO-LONG", Some(&long))).await?;
    publish(last_line).await?;

    let long_entry = ("SO-LONG".to_string(), long.clone());
    let bridge = Bridge::spawn(&config)?;
    wait_until(Duration::from_secs(90), async || {
        let missing: Vec<&str> = shop_orders
            .iter()
            .chain([&long_entry])
            .filter(|(order, shop_id)| {
                !shop.fulfillments(shop_id).iter().any(|f| {
                    f.tracking
                        .iter()
                        .any(|t| t.number.as_deref() == Some(format!("TRK-{order}").as_str()))
                })
            })
            .map(|(order, _)| order.as_str())
            .collect();
        let dlq = dead_letters(&client).await?;
        Ok(if missing.is_empty() && !dlq.is_empty() {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "fulfilments missing in the storefront: {missing:?}; dead letters {}\nbridge log:\n{}",
                dlq.len(),
                bridge.log()
            ))
        })
    })
    .await?;
    wait_quiescent(&client, Duration::from_secs(60)).await?;

    // Each storefront order has exactly its one fulfilment.
    for (order, shop_id) in &shop_orders {
        assert_eq!(
            shop.fulfillments(shop_id).len(),
            1,
            "fulfilments of {order}"
        );
    }
    // The long order shipped exactly the one unit of its 60th line.
    let long_order = shop.order(&long).expect("the long order");
    let fulfilled: Vec<(&str, i64)> = long_order
        .line_items
        .iter()
        .filter(|l| l.fulfilled > 0)
        .map(|l| (l.sku.as_str(), l.fulfilled))
        .collect();
    assert_eq!(fulfilled, vec![("L-59", 1)]);
    // Only the fulfilment whose order never came is parked, and it says why.
    let dlq = dead_letters(&client).await?;
    assert_eq!(
        dlq.len(),
        1,
        "dead letters: {:?}",
        dlq.iter()
            .map(|m| header(m, "Tributary-Reason"))
            .collect::<Vec<_>>()
    );
    let parked = DomainEvent::decode(dlq[0].payload.clone())?;
    assert!(
        matches!(&parked.entity, Some(Entity::Fulfillment(f)) if f.order_id == "SO-GHOST"),
        "parked: {parked:?}"
    );
    let reason = header(&dlq[0], "Tributary-Reason");
    assert!(
        reason.contains("order SO-GHOST not known") && reason.contains("max_wait_secs"),
        "reason: {reason}"
    );
    bridge.stop().await?;
    Ok(())
}

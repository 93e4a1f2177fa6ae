//! The order-to-cash loop: a storefront order (placed in the Shopify emulator, imported into
//! the sample ERP of config/retail/ with its Shopify id) confirmed in the ERP reaches the WMS
//! emulator through the WMS sink; the WMS ships it and sends its signed lifecycle webhooks
//! (Standard Webhooks style, every one delivered twice, shuffled) to the bridge's
//! `[[wms]]` endpoint; each becomes one `retail.v1.fulfillment.updated` event
//! keyed by the ERP order number, the shipped one carrying the tracking number. The
//! storefront then shows one fulfilment with that tracking number and the ERP status in the
//! order's `erp_*` attributes, and Salesforce's Order shows the tracking number. On the way,
//! the storefront price list's prices and the ERP's customers reach Shopify. A forged
//! webhook is refused with 401 and nothing is stored.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::salesforce::{self, SalesforceOptions};
use tributary_sandbox::shopify::{self, ShopifyOptions, VariantSeed};
use tributary_sandbox::webhooks::{Delivery, RetryPolicy, WebhookClient};
use tributary_sandbox::wms::{
    self, sign_standard_webhook, WmsOptions, WmsStatus, WmsWebhookOptions,
};

const SECRET: &str = "wms-webhook-secret";

async fn fulfillments(nats: &async_nats::Client) -> Result<Vec<DomainEvent>> {
    let mut out = Vec::new();
    for msg in read_all(nats, "RETAIL").await? {
        if msg.subject.as_str() == "retail.v1.fulfillment.updated" {
            out.push(DomainEvent::decode(msg.payload.clone())?);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erp_order_ships_in_the_wms_and_comes_back_as_a_fulfillment() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;

    // The WMS sends every lifecycle webhook twice, each after a random delay.
    let hook_port = tributary_testkit::free_port();
    let hook_url = format!("http://127.0.0.1:{hook_port}/webhooks/wms");
    let wms = wms::start(WmsOptions::default()).await?;
    let mut hooks = WmsWebhookOptions::new(hook_url.clone(), SECRET);
    hooks.duplicate_rate = 1.0;
    hooks.max_delay = Duration::from_millis(150);
    wms.set_webhook(Some(hooks))?;

    // The storefront: the SKU's product and the order the customer placed there.
    let shop = shopify::start(ShopifyOptions::default()).await?;
    let dc1 = shop.add_location("DC1");
    let product = shop.add_product(
        "Item 1",
        &[VariantSeed {
            sku: "SKU-1".into(),
            price: "9.50".into(),
        }],
    );
    let variant = product.variants[0].0.clone();
    let shop_order = shop.add_order("a@example.com", &[("SKU-1", 2, "5.00")], None);
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let (client_id, client_secret) = SalesforceOptions::default().clients[0].clone();

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\ninventory_location = \"DC1\"\n\
         [sinks.wms.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
         [[wms]]\nlisten = \"127.0.0.1:{hook_port}\"\npath = \"/webhooks/wms\"\nsecret = \"{SECRET}\"\n\
         [sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ DC1 = \"{dc1}\" }}\n\
         apply = [\"inventory\", \"orders\", \"fulfillments\", \"prices\", \"customers\"]\nprice_list = \"web\"\n\
         [sinks.shopify.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n\
         [sinks.salesforce]\nbase_url = \"{}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\nbatch_linger_ms = 20\n\
         [sinks.salesforce.delivery]\nlanes = 2\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        wms.base_url(),
        shop.base_url(),
        sf.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;

    // Order placed and confirmed in the ERP → released to the WMS by the sink.
    // The ERP imported the storefront order with Shopify's id; prices of the web list and
    // of another list change.
    erp.batch_execute(&format!(
        "INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee');\
         INSERT INTO items (sku, title) VALUES ('SKU-1', 'Item 1');\
         INSERT INTO price_lists VALUES ('web', 'EUR'), ('b2b', 'EUR');\
         INSERT INTO item_prices (price_list, sku, price) VALUES ('web', 'SKU-1', 11.90), ('b2b', 'SKU-1', 7.00);\
         BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, channel, total, shop_order_id) VALUES ('SO-42', 1, 'placed', 'web', 10, '{}');\
         INSERT INTO order_lines VALUES ('SO-42', 1, 'SKU-1', 2, 5); COMMIT;\
         UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-42';",
        shop_order.order_id
    ))
    .await?;
    // The ERP's stock of the warehouse reaches the WMS as adjustments (+20, then -5) and the
    // storefront as levels; the WMS's adjustment log shows each change once.
    erp.batch_execute(
        "INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-1', 'DC1', 20);\
         UPDATE stock SET on_hand = 15, updated_at = now() WHERE sku = 'SKU-1';",
    )
    .await?;
    wait_until(Duration::from_secs(60), async || {
        let in_shop = shop
            .inventory(&product.variants[0].1, &dc1)
            .map(|l| l.available);
        Ok(if wms.stock("SKU-1") == Some(15) && in_shop == Some(15) {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "stock never reached the WMS and the storefront (WMS {:?}, storefront {in_shop:?})\nbridge log:\n{}",
                wms.stock("SKU-1"),
                bridge.log()
            ))
        })
    })
    .await?;
    let deltas: Vec<i64> = wms.with_state(|s| s.adjustments.iter().map(|a| a.delta).collect());
    assert_eq!(deltas, vec![20, -5]);

    let wms_order = wait_until(Duration::from_secs(60), async || {
        Ok(match wms.order_by_reference("SO-42") {
            Some(o) => Check::Done(o),
            None => Check::Pending(format!(
                "SO-42 never reached the WMS\nbridge log:\n{}",
                bridge.log()
            )),
        })
    })
    .await?;

    // The warehouse allocates and ships it.
    wms.advance(&wms_order.id, WmsStatus::Allocated)?;
    let shipped = wms.advance(&wms_order.id, WmsStatus::Shipped)?;
    let tracking = shipped.shipments[0].tracking_number.clone();
    assert!(!tracking.is_empty());

    let client = nats.connect().await?;
    wait_until(Duration::from_secs(60), async || {
        let evs = fulfillments(&client).await?;
        let got = evs.iter().any(
            |e| matches!(&e.entity, Some(Entity::Fulfillment(f)) if f.tracking_number == tracking),
        );
        let delivered = wms
            .events()
            .iter()
            .all(|e| e.outcomes.len() == 2 && e.outcomes.iter().all(|o| o.delivered));
        Ok(if got && delivered {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "no fulfillment with {tracking} (events {:?})\nbridge log:\n{}",
                wms.events(),
                bridge.log()
            ))
        })
    })
    .await?;
    // The storefront and Salesforce show the shipment with its tracking number.
    wait_until(Duration::from_secs(60), async || {
        let shipped_in_shop = shop.fulfillments(&shop_order.order_id).iter().any(|f| {
            f.tracking
                .iter()
                .any(|t| t.number.as_deref() == Some(tracking.as_str()))
        });
        let tracked_in_sf = sf
            .record_by("Order", "External_Id__c", "SO-42")
            .and_then(|r| r.fields.get("Tracking_Number__c").cloned())
            == Some(serde_json::Value::String(tracking.clone()));
        Ok(if shipped_in_shop && tracked_in_sf {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "fulfilment not shown (shopify {shipped_in_shop}, salesforce {tracked_in_sf})\nbridge log:\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    // Every consumer idle: no straggling duplicate can be mapped or applied after this.
    wait_quiescent(&client, Duration::from_secs(60)).await?;
    let shop_fulfillments = shop.fulfillments(&shop_order.order_id);
    assert_eq!(
        shop_fulfillments.len(),
        1,
        "one fulfilment: {shop_fulfillments:?}"
    );
    let t = &shop_fulfillments[0].tracking[0];
    assert_eq!(t.company.as_deref(), Some("UPS"));
    let order = shop
        .order(&shop_order.order_id)
        .ok_or_else(|| anyhow::anyhow!("order vanished"))?;
    assert_eq!(order.fulfillment_status, "FULFILLED");
    let attribute = |k: &str| {
        order
            .custom_attributes
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attribute("erp_status").as_deref(), Some("confirmed"));
    assert_eq!(attribute("erp_order").as_deref(), Some("SO-42"));
    assert_eq!(order.tags, vec!["erp-status:confirmed".to_string()]);
    // The web list's price reached the variant; the b2b list's did not.
    let price = shop.variant(&variant).map(|v| v.price).unwrap_or_default();
    assert_eq!(price, "11.90");
    // The ERP's customer exists once in the storefront, found by e-mail.
    let customers: Vec<_> = shop.with_state(|s| {
        s.customers
            .values()
            .filter(|c| c.email.as_deref() == Some("a@example.com"))
            .map(|c| (c.first_name.clone(), c.last_name.clone()))
            .collect()
    });
    assert_eq!(
        customers,
        vec![(Some("Ann".to_string()), Some("Lee".to_string()))]
    );

    // Raw webhooks stored once each although every one was delivered twice.
    // (The two stock adjustments' `inventory.updated` webhooks are stored too.)
    let raw = read_all(&client, "SAAS_WMS").await?;
    let mut subjects: Vec<String> = raw.iter().map(|m| m.subject.to_string()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "saas.wms.inventory_updated",
            "saas.wms.inventory_updated",
            "saas.wms.order_allocated",
            "saas.wms.order_shipped"
        ],
        "duplicates dropped"
    );
    assert_eq!(wms.events().len(), 4);

    let evs = fulfillments(&client).await?;
    let shipped_events: Vec<_> = evs
        .iter()
        .filter(
            |e| matches!(&e.entity, Some(Entity::Fulfillment(f)) if f.tracking_number == tracking),
        )
        .collect();
    assert_eq!(
        shipped_events.len(),
        1,
        "the shipped fulfillment exactly once"
    );
    let ev = shipped_events[0];
    let meta = ev.meta.clone().unwrap_or_default();
    assert_eq!(meta.entity, "fulfillment");
    assert_eq!(meta.event, "updated");
    assert_eq!(meta.entity_key, "SO-42");
    assert_eq!(meta.system_of_record, "wms");
    let Some(Entity::Fulfillment(f)) = &ev.entity else {
        unreachable!()
    };
    assert_eq!(f.order_id, "SO-42");
    assert_eq!(f.status, "shipped");
    assert_eq!(f.carrier, "UPS");
    assert!(f.shipped_at_micros > 0);
    assert!(meta.event_time_micros > 0);
    // Versions: one sequence per entity, the allocated step first (a delayed `allocated`
    // arriving after `shipped` is stale and not published).
    let sequence: Vec<(u64, String)> = evs
        .iter()
        .filter_map(|e| {
            let m = e.meta.clone()?;
            let Some(Entity::Fulfillment(f)) = &e.entity else {
                return None;
            };
            (m.entity_key == "SO-42").then(|| (m.entity_version, f.status.clone()))
        })
        .collect();
    assert!(
        sequence.windows(2).all(|w| w[0].0 < w[1].0),
        "versions increase: {sequence:?}"
    );
    assert_eq!(sequence.last().map(|s| s.1.as_str()), Some("shipped"));
    assert!(sequence.len() <= 2, "{sequence:?}");

    // A forged webhook (wrong secret) and an unsigned one: 401, nothing stored.
    let body = bytes::Bytes::from(serde_json::to_vec(
        &serde_json::json!({"id": "evt_forged", "type": "order.delivered",
            "created_at": "2030-01-01T00:00:00.000Z",
            "data": {"order": {"id": wms_order.id, "reference_id": "SO-42", "status": "delivered",
                "updated_at": "2030-01-01T00:00:00.000Z", "shipments": []}}}),
    )?);
    let ts = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
    .to_string();
    let forged = Delivery {
        url: hook_url.clone(),
        headers: vec![
            ("webhook-id".into(), "evt_forged".into()),
            ("webhook-timestamp".into(), ts.clone()),
            (
                "webhook-signature".into(),
                sign_standard_webhook(b"not-the-secret", "evt_forged", &ts, &body),
            ),
        ],
        body: body.clone(),
    };
    let sender = WebhookClient::new(RetryPolicy::once())?;
    assert_eq!(sender.deliver(&forged).await.status, Some(401));
    let unsigned = Delivery {
        url: hook_url.clone(),
        headers: vec![("webhook-id".into(), "evt_unsigned".into())],
        body,
    };
    assert_eq!(sender.deliver(&unsigned).await.status, Some(401));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read_all(&client, "SAAS_WMS").await?.len(),
        4,
        "nothing stored"
    );
    assert!(fulfillments(&client)
        .await?
        .iter()
        .all(|e| !matches!(&e.entity, Some(Entity::Fulfillment(f)) if f.status == "delivered")));

    // Everything the bridge created (sources, domain stage, sinks, WMS webhooks) is marked as its own.
    let streams = marked_streams(&client).await?;
    for name in [
        "CDC_ERP",
        "CDC_POS",
        "RETAIL",
        "DLQ_DOMAIN",
        "DLQ_SINKS",
        "SAAS_WMS",
        "KV_tributary_domain",
        "KV_tributary_sinks",
        "OBJ_tributary_schemas",
    ] {
        assert!(streams.iter().any(|s| s == name), "{name} in {streams:?}");
    }

    let code = bridge.stop().await?;
    assert_eq!(code, 0);
    Ok(())
}

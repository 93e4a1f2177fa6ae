//! Issue #14's address refusals, through the whole loop with real servers: 20 storefront
//! checkouts carry their shipping address (Shopify feed → `order.placed` → ERP inbox → the
//! sales order's ship-to → every ERP order event → the WMS sink's release). Four of them have
//! an address the WMS refuses (a German postal code of four digits, a country it does not
//! ship to, no city, a US address without its state): their releases are dead-lettered with
//! the WMS's reason naming the field, and nothing of them reaches the warehouse, while the
//! other 16 ship. The operator corrects the four addresses in the ERP (`erp_correct_address`),
//! which releases them with the corrected address; `tributary dlq redrive --sink wms --all`
//! is then answered "already released" and the dead-letter stream ends empty. Every order
//! ends shipped in the WMS (one WMS order each, with the address the ERP has), fulfilled on
//! the storefront and tracked in Salesforce.

#[path = "support/storefront.rs"]
mod storefront;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use storefront::{checkout, correct_address, redrive, wms_ship_to, StorefrontWorld};
use support::*;
use tributary_proto::retail::v1::DomainEvent;
use tributary_proto::Message as _;
use tributary_sandbox::shopify::addresses::deliverable;
use tributary_sandbox::wms::WmsStatus;

const ORDERS: usize = 20;
const SKUS: usize = 5;
/// The checkouts whose address the WMS refuses: one per kind of refusal.
const REFUSED: [usize; 4] = [2, 7, 12, 17];

async fn count(erp: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    Ok(erp.query_one(sql, &[]).await?.get(0))
}

/// Sum of the series of `name` whose labels contain every one of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_addresses_are_dead_lettered_fixed_in_the_erp_and_redriven() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let erp = pg.connect("erp").await?;
    let world = StorefrontWorld::start(&erp, SKUS).await?;
    let (shop, wms, sf) = (world.shop.handle(), world.wms.handle(), world.sf.handle());
    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    let http = http_listen(&text);
    text.push_str(&world.config(&pg));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let client = nats.connect().await?;

    // Checkouts: (Shopify order gid, the field the WMS will name for a refused one).
    let mut placed: Vec<(String, Option<&str>)> = Vec::new();
    for i in 0..ORDERS {
        let (order, _, field) = checkout(shop, i, SKUS, REFUSED.contains(&i));
        placed.push((order.order_id, field));
    }
    let shipped_in_wms = || {
        wms.orders()
            .iter()
            .filter(|o| matches!(o.status, WmsStatus::Shipped | WmsStatus::Delivered))
            .count()
    };
    let fulfilled = || {
        placed
            .iter()
            .filter(|(gid, _)| !shop.fulfillments(gid).is_empty())
            .count()
    };
    let good = ORDERS - REFUSED.len();
    wait_until(Duration::from_secs(180), async || {
        let orders = count(&erp, "SELECT count(*) FROM sales_orders").await?;
        let dlq = dead_letters(&client).await?.len();
        let (shipped, done) = (shipped_in_wms(), fulfilled());
        Ok(
            if orders == ORDERS as i64 && dlq == REFUSED.len() && shipped == good && done == good {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "ERP orders {orders}, dead letters {dlq}, WMS shipped {shipped}, storefront fulfilled {done}\n{}",
                    bridge.log()
                ))
            },
        )
    })
    .await?;

    // Each refusal is the WMS sink's, for the refused order, naming the field.
    let order_of: BTreeMap<String, String> = erp
        .query("SELECT shop_order_id, order_no FROM sales_orders", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut refused_reasons = BTreeMap::new();
    for msg in dead_letters(&client).await? {
        assert_eq!(header(&msg, "Tributary-Sink"), "wms");
        let event = DomainEvent::decode(msg.payload.clone())?;
        let key = event.meta.unwrap_or_default().entity_key;
        refused_reasons.insert(key, header(&msg, "Tributary-Reason"));
    }
    for (gid, field) in &placed {
        let order_no = &order_of[gid];
        match field {
            Some(field) => {
                let reason = refused_reasons
                    .get(order_no)
                    .ok_or_else(|| anyhow::anyhow!("{order_no} was not dead-lettered"))?;
                assert!(
                    reason.contains(&format!("recipient.address.{field}"))
                        && reason.contains(order_no.as_str()),
                    "{order_no}: {reason}"
                );
                assert!(wms.order_by_reference(order_no).is_none(), "{order_no}");
            }
            None => assert!(!refused_reasons.contains_key(order_no), "{order_no}"),
        }
    }

    // The operator corrects the four addresses in the ERP: each is released at once.
    for i in REFUSED {
        correct_address(&erp, &placed[i].0, &deliverable(i)).await?;
    }
    wait_until(Duration::from_secs(120), async || {
        let (shipped, done) = (shipped_in_wms(), fulfilled());
        Ok(if shipped == ORDERS && done == ORDERS {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "after the fix: WMS shipped {shipped}, storefront fulfilled {done}\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    // The parked releases are redriven and answered "already released".
    let already_released = async || -> Result<f64> {
        let metrics = http_get(&http, "/metrics").await?.1;
        Ok(metric_sum(
            &metrics,
            "tributary_sink_skipped_total",
            &["sink=\"wms\"", "reason=\"already released\""],
        ))
    };
    let before = already_released().await?;
    let out = redrive(&config, "wms").await?;
    assert!(out.contains("4 event(s) redriven"), "{out}");
    wait_until(Duration::from_secs(60), async || {
        let dlq = dead_letters(&client).await?.len();
        let answered = already_released().await? - before;
        Ok(if dlq == 0 && answered >= REFUSED.len() as f64 {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "after the redrive: dead letters {dlq}, answered already released {answered}\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    wait_quiescent(&client, Duration::from_secs(60)).await?;

    // Every order: one WMS order, shipped, to the address the ERP has; one storefront
    // fulfilment; tracked in Salesforce. Nothing is left in the dead-letter stream.
    assert_eq!(
        wms.orders().len(),
        ORDERS,
        "one WMS order per storefront order"
    );
    for (i, (gid, _)) in placed.iter().enumerate() {
        let order_no = &order_of[gid];
        let w = wms
            .order_by_reference(order_no)
            .ok_or_else(|| anyhow::anyhow!("{order_no} never reached the WMS"))?;
        assert_eq!(wms.reference_creates(order_no), 1, "{order_no}");
        assert!(
            matches!(w.status, WmsStatus::Shipped | WmsStatus::Delivered),
            "{order_no}: {:?}",
            w.status
        );
        let want = deliverable(i);
        assert_eq!(
            wms_ship_to(&w),
            (want.address1, want.city, want.zip, want.country_code),
            "{order_no}: the WMS ships to the address the ERP has"
        );
        assert_eq!(shop.fulfillments(gid).len(), 1, "{gid}: one fulfilment");
        let tracked = sf
            .record_by("Order", "External_Id__c", order_no)
            .and_then(|r| r.fields.get("Tracking_Number__c").cloned());
        assert!(
            tracked
                .as_ref()
                .and_then(|t| t.as_str())
                .is_some_and(|t| !t.is_empty()),
            "{order_no} not tracked in Salesforce: {tracked:?}"
        );
    }
    assert_eq!(
        count(
            &erp,
            "SELECT count(*) FROM sales_orders WHERE ship_to_city IS NULL OR ship_to_country IS NULL"
        )
        .await?,
        0
    );
    assert!(dead_letters(&client).await?.is_empty(), "no dead letter");
    bridge.stop().await?;
    Ok(())
}

//! Simulated retail traffic: checkouts and refunds on the Shopify emulator (storefront), the
//! warehouse working the WMS emulator's orders and receiving returns, service agents opening
//! return Cases in the Salesforce emulator, customer updates in the ERP and sales at the POS.
//! Nothing writes orders or returns into the ERP: they reach it from the storefront and the
//! CRM through the bridge's inbox sink (docs/order-to-cash.md).

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tributary_sandbox::wms::WmsStatus;

use super::Targets;

pub const SKUS: u32 = 40;
const STORES: i32 = 5;
/// A storefront checkout every this many 100 ms ticks.
const CHECKOUT_EVERY_TICKS: u64 = 10;

/// Catalogue, prices, stock, stores, customers and loyalty members.
pub async fn seed(
    erp: &tokio_postgres::Client,
    pos: &tokio_postgres::Client,
) -> anyhow::Result<()> {
    erp.batch_execute(&format!(
        "INSERT INTO items SELECT format('SKU-%s', lpad(i::text, 4, '0')), format('Item %s', i), NULL, true FROM generate_series(1, {SKUS}) i;
         INSERT INTO price_lists VALUES ('retail-eur', 'EUR');
         INSERT INTO item_prices SELECT 'retail-eur', sku, 19.99 FROM items;
         INSERT INTO stock SELECT sku, 'DC1', 10000, 0, now() FROM items;
         INSERT INTO customers SELECT i, format('c%s@example.com', i), 'First' || i, 'Last' || i, NULL, i % 2 = 0, now() FROM generate_series(1, 50) i;"
    ))
    .await?;
    pos.batch_execute(&format!(
        "INSERT INTO stores SELECT i, format('Store %s', i) FROM generate_series(1, {STORES}) i;
         INSERT INTO members SELECT i, i, format('c%s@example.com', i), NULL, 0 FROM generate_series(1, 50) i;
         INSERT INTO store_stock SELECT s, format('SKU-%s', lpad(i::text, 4, '0')), 500 FROM generate_series(1, {STORES}) s, generate_series(1, {SKUS}) i;"
    ))
    .await?;
    Ok(())
}

/// The warehouse: orders the WMS sink released are picked and shipped a tick later, returns
/// it was told to expect are received; the WMS's webhooks bring both back to the bridge.
fn work_the_warehouse(t: &Targets) {
    for rma in t.wms.returns() {
        if rma.status == "expected" {
            let _ = t.wms.receive_return(&rma.id);
        }
    }
    for order in t.wms.orders() {
        let next = match order.status {
            WmsStatus::Pending => WmsStatus::Allocated,
            WmsStatus::Allocated => WmsStatus::Shipped,
            _ => continue,
        };
        // An order the WMS moved on meanwhile refuses the step; the next tick sees it.
        let _ = t.wms.advance(&order.id, next);
    }
}

/// Storefront checkouts and refunds, the warehouse, customer updates, POS sales.
pub async fn run(
    erp: tokio_postgres::Client,
    pos: tokio_postgres::Client,
    targets: std::sync::Arc<Targets>,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // About 4 row changes per POS sale; storefront checkouts come at a pace the Shopify cost
    // bucket (50 points/s) can follow with their status, stock and fulfilment writes.
    let sales_per_tick = (rate / 10 / 6).max(1);
    let mut ticks = 0u64;
    let mut placed: Vec<String> = Vec::new();
    let mut returned: HashSet<String> = HashSet::new();
    let mut sale_id = 0i64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        ticks += 1;
        work_the_warehouse(&targets);
        if ticks.is_multiple_of(CHECKOUT_EVERY_TICKS) {
            checkout(&targets, &mut placed);
            // About one return per ten orders, the first as soon as an order has shipped.
            if returned.len() <= placed.len() / 10 {
                open_return_case(&erp, &targets, &mut returned).await?;
            }
            if placed.len().is_multiple_of(7) {
                let customer = placed.len() % 50 + 1;
                erp.batch_execute(&format!("UPDATE customers SET phone = '+49 30 {}', updated_at = now() WHERE id = {customer}", placed.len())).await?;
            }
        }
        for _ in 0..sales_per_tick {
            let (store, member, sku, qty) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(1..=STORES),
                    rng.random_range(1..=50i64),
                    format!("SKU-{:04}", rng.random_range(1..=SKUS)),
                    rng.random_range(1..=3i32),
                )
            };
            sale_id += 1;
            pos.batch_execute(&format!(
                "BEGIN;
                 INSERT INTO sales VALUES ({sale_id}, {store}, {member}, {}, now());
                 INSERT INTO sale_lines VALUES ({sale_id}, 1, '{sku}', {qty}, 19.99);
                 UPDATE store_stock SET on_hand = on_hand - {qty} WHERE store_id = {store} AND sku = '{sku}';
                 UPDATE members SET points = points + {qty} WHERE id = {member};
                 COMMIT;",
                19.99 * f64::from(qty)
            ))
            .await?;
        }
    }
}

/// One storefront checkout of 1 – 3 lines; every tenth order a refund of an earlier one.
fn checkout(targets: &Targets, placed: &mut Vec<String>) {
    let (customer, lines, qty) = {
        let mut rng = rand::rng();
        (
            rng.random_range(1..=50u32),
            rng.random_range(1..=3u32),
            rng.random_range(1..=3i64),
        )
    };
    let skus: Vec<String> = (0..lines)
        .map(|l| format!("SKU-{:04}", (customer + l * 7) % SKUS + 1))
        .collect();
    let order_lines: Vec<(&str, i64, &str)> =
        skus.iter().map(|s| (s.as_str(), qty, "19.99")).collect();
    // Each shopper ships to an address the warehouse delivers to.
    let order = targets.shop.place_order_to(
        &format!("c{customer}@example.com"),
        &order_lines,
        None,
        Some(tributary_sandbox::shopify::addresses::deliverable(
            customer as usize,
        )),
    );
    placed.push(order.order_id);
    if placed.len() % 10 == 5 {
        // A customer sent something back: the storefront refunds one line.
        let earlier = placed[placed.len() - 5].clone();
        targets.shop.refund_order(&earlier, "19.99");
    }
}

/// A customer calls about a storefront order the ERP shows as shipped: the agent opens a
/// return Case for one unit of its first line (Salesforce's Change Data Capture brings it to
/// the bridge). The demo reads the ERP to pick the order, as the agent would look it up.
async fn open_return_case(
    erp: &tokio_postgres::Client,
    targets: &Targets,
    returned: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let rows = erp
        .query(
            "SELECT so.order_no, ol.sku FROM sales_orders so JOIN order_lines ol USING (order_no)
             WHERE so.storefront_ref IS NOT NULL AND so.status IN ('shipped', 'completed')
               AND ol.line_no = 1
             ORDER BY so.order_no",
            &[],
        )
        .await?;
    let Some((order, sku)) = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .find(|(order, _)| !returned.contains(order))
    else {
        return Ok(());
    };
    let fields = [
        ("Subject", format!("Return of {order}")),
        ("Type", "Return".into()),
        ("Origin", "Phone".into()),
        ("Order_External_Id__c", order.clone()),
        ("SKU__c", sku),
        ("Quantity__c", "1".into()),
        ("Description", "arrived damaged".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
    .collect();
    targets.sf.cdc_create("Case", fields);
    returned.insert(order);
    Ok(())
}

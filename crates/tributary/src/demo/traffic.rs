//! Simulated retail traffic on the sample ERP and POS databases.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

pub const SKUS: u32 = 40;
const STORES: i32 = 5;

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

/// Orders placed, allocated, shipped and sometimes returned; stock moves; POS sales; customer updates.
pub async fn run(
    erp: tokio_postgres::Client,
    pos: tokio_postgres::Client,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // About 8 row changes per order (order, lines, stock, later status, shipment) and 4 per sale.
    let orders_per_tick = (rate / 10 / 12).max(1);
    let mut order_no = 0u64;
    let mut sale_id = 0i64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        for _ in 0..orders_per_tick {
            order_no += 1;
            let (customer, lines, store, member, sku, qty) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(1..=50i64),
                    rng.random_range(1..=3u32),
                    rng.random_range(1..=STORES),
                    rng.random_range(1..=50i64),
                    format!("SKU-{:04}", rng.random_range(1..=SKUS)),
                    rng.random_range(1..=3i32),
                )
            };
            let mut sql = format!(
                "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-{order_no}', {customer}, 'placed', {});",
                19.99 * f64::from(lines)
            );
            for line in 1..=lines {
                sql.push_str(&format!(
                    "INSERT INTO order_lines VALUES ('SO-{order_no}', {line}, '{sku}', {qty}, 19.99);
                     UPDATE stock SET reserved = reserved + {qty}, updated_at = now() WHERE sku = '{sku}' AND location = 'DC1';"
                ));
            }
            sql.push_str("COMMIT;");
            erp.batch_execute(&sql).await?;
            if order_no > 1 {
                // Confirmed orders are released to the warehouse (the WMS sink).
                erp.batch_execute(&format!(
                    "UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-{}'",
                    order_no - 1
                ))
                .await?;
            }
            if order_no > 2 {
                let shipped = order_no - 2;
                erp.batch_execute(&format!(
                    "BEGIN;
                     UPDATE sales_orders SET status = 'shipped', payment_state = 'paid' WHERE order_no = 'SO-{shipped}';
                     INSERT INTO shipments VALUES ('SH-{shipped}', 'SO-{shipped}', 'DHL', 'TRK{shipped}', 'shipped', now());
                     COMMIT;"
                ))
                .await?;
            }
            if order_no % 10 == 5 {
                let returned = order_no - 4;
                erp.batch_execute(&format!(
                    "INSERT INTO returns (return_no, order_no, sku, quantity, reason, refund_amount)
                     SELECT 'RT-{returned}', order_no, sku, 1, 'damaged', unit_price FROM order_lines WHERE order_no = 'SO-{returned}' AND line_no = 1;"
                ))
                .await?;
            }
            if order_no.is_multiple_of(7) {
                erp.batch_execute(&format!("UPDATE customers SET phone = '+49 30 {order_no}', updated_at = now() WHERE id = {customer}")).await?;
            }
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

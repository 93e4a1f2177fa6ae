//! The storefront leg's world: storefront checkouts that carry a shipping address, the WMS
//! that judges it, and the ERP fix for a refused one. Shared by tests/wms_address_refusal.rs
//! and meant for tests/order_to_cash_faults.rs (2 % of its orders refused, fixed, redriven).
//!
//! - [`StorefrontWorld`]: the Shopify emulator (unthrottled, webhooks to the bridge's
//!   `[[shopify]]` feed), the WMS emulator (works released orders by itself, signs its
//!   webhooks to the `[[wms]]` feed, refuses orders without a deliverable address), the
//!   Salesforce emulator, and the configuration of the feeds and the WMS, Shopify,
//!   Salesforce and ERP inbox sinks for them.
//! - [`checkout`]: a checkout whose address the WMS accepts or refuses.
//! - [`correct_address`]: the operator's fix in the ERP (`erp_correct_address`), and
//!   [`redrive`]: `tributary dlq redrive --sink <sink> --all`.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
use tributary_sandbox::shopify::addresses::{deliverable, undeliverable};
use tributary_sandbox::shopify::{self, SeededOrder, ShippingAddress, Shopify, ShopifyOptions};
use tributary_sandbox::webhooks::RetryPolicy;
use tributary_sandbox::wms::{self, Wms, WmsOptions, WmsWebhookOptions};
use tributary_sandbox::RunningEmulator;
use tributary_testkit::PgCluster;

use crate::support::{tributary, Result};

pub const SHOP_SECRET: &str = "shpss_storefront_world_5e1c";
pub const WMS_SECRET: &str = "whsec_storefront_world_8a2f4d60";
pub const SF_CLIENT: &str = "tributary-bridge";

pub struct StorefrontWorld {
    pub shop: RunningEmulator<Shopify>,
    pub wms: RunningEmulator<Wms>,
    pub sf: RunningEmulator<Salesforce>,
    /// Where the bridge listens for the shop's and the warehouse's webhooks.
    pub shop_port: u16,
    pub wms_port: u16,
}

impl StorefrontWorld {
    /// Seeds the ERP with `skus` items (`SKU-1` …, plenty of stock at DC1), the shop with a
    /// product per SKU at 10.00, and starts the emulators.
    pub async fn start(erp: &tokio_postgres::Client, skus: usize) -> Result<StorefrontWorld> {
        Self::start_with(erp, skus, None).await
    }

    /// [`StorefrontWorld::start`] with the shop's plan (`Some`: its bucket, throttled as
    /// Shopify does); `None` is an unthrottled shop.
    pub async fn start_with(
        erp: &tokio_postgres::Client,
        skus: usize,
        shop_options: Option<ShopifyOptions>,
    ) -> Result<StorefrontWorld> {
        let mut seed = String::new();
        for i in 1..=skus {
            seed.push_str(&format!(
                "INSERT INTO items (sku, title) VALUES ('SKU-{i}', 'Item {i}');\
                 INSERT INTO stock (sku, location, on_hand) VALUES ('SKU-{i}', 'DC1', 1000000);"
            ));
        }
        erp.batch_execute(&seed).await?;
        let shop_port = tributary_testkit::free_port();
        let throttled = shop_options.is_some();
        let shop = shopify::start(shop_options.unwrap_or_default()).await?;
        shop.set_throttling(throttled);
        shop.set_webhook_subscription(Some(shopify::WebhookSubscription {
            url: format!("http://127.0.0.1:{shop_port}/webhooks/shopify/web"),
            secret: SHOP_SECRET.into(),
            policy: RetryPolicy::default(),
        }))?;
        crate::support::shop_catalog(&shop, (1..=skus).map(|i| format!("SKU-{i}")), "10.00");
        let wms_port = tributary_testkit::free_port();
        let wms = wms::start(WmsOptions {
            auto_advance: Some(Duration::from_millis(200)),
            rate_limits: false,
            require_address: true,
            webhook: Some(WmsWebhookOptions::new(
                format!("http://127.0.0.1:{wms_port}/webhooks/wms"),
                WMS_SECRET,
            )),
            ..WmsOptions::default()
        })
        .await?;
        let sf = salesforce::start(SalesforceOptions::default()).await?;
        Ok(StorefrontWorld {
            shop,
            wms,
            sf,
            shop_port,
            wms_port,
        })
    }

    /// The feeds and sinks to append to a retail configuration.
    pub fn config(&self, pg: &PgCluster) -> String {
        format!(
            "\n[[shopify]]\nname = \"web\"\nlisten = \"127.0.0.1:{shop_port}\"\nwebhook_secret = \"{SHOP_SECRET}\"\n\
             \n[[wms]]\nlisten = \"127.0.0.1:{wms_port}\"\npath = \"/webhooks/wms\"\nsecret = \"{WMS_SECRET}\"\n\
             \n[sinks]\n\
             [sinks.wms]\nbase_url = \"{wms_url}\"\napi_key = \"wms_sandbox\"\n\
             [sinks.wms.delivery]\nlanes = 8\nmin_backoff_ms = 100\nmax_backoff_ms = 2000\n\
             [sinks.shopify]\nbase_url = \"{shop_url}\"\naccess_token = \"shpat_sandbox\"\napply = [\"orders\", \"fulfillments\"]\n\
             [sinks.shopify.delivery]\nlanes = 8\nmin_backoff_ms = 100\nmax_backoff_ms = 2000\n\
             [sinks.salesforce]\nbase_url = \"{sf_url}\"\nclient_id = \"sandbox-client\"\nclient_secret = \"sandbox-secret\"\n\
             call_options_client = \"{SF_CLIENT}\"\nbatch_linger_ms = 20\n\
             [sinks.salesforce.delivery]\nlanes = 8\nmin_backoff_ms = 100\nmax_backoff_ms = 2000\n\
             [sinks.erp]\ntable = \"public.tributary_inbox\"\nbatch_linger_ms = 20\n\
             [sinks.erp.connection]\nhost = \"127.0.0.1\"\nport = {pg_port}\nuser = \"postgres\"\npassword = \"{pg_password}\"\ndbname = \"erp\"\n",
            shop_port = self.shop_port,
            wms_port = self.wms_port,
            shop_url = self.shop.base_url(),
            wms_url = self.wms.base_url(),
            sf_url = self.sf.base_url(),
            pg_port = pg.port(),
            pg_password = pg.password(),
        )
    }
}

/// Checkout `i` on the storefront: one line of `SKU-<i mod skus + 1>`, shipped to a
/// deliverable address, or (`refused`) to one the WMS refuses; returns the order and, for a
/// refused one, the field of `recipient.address` the WMS names.
pub fn checkout(
    shop: &Shopify,
    i: usize,
    skus: usize,
    refused: bool,
) -> (SeededOrder, ShippingAddress, Option<&'static str>) {
    let sku = format!("SKU-{}", i % skus + 1);
    let lines = [(sku.as_str(), 1 + (i % 3) as i64, "10.00")];
    let (address, field) = if refused {
        let (a, f) = undeliverable(i);
        (a, Some(f))
    } else {
        (deliverable(i), None)
    };
    let order = shop.place_order_to(
        &format!("c{i}@example.com"),
        &lines,
        None,
        Some(address.clone()),
    );
    (order, address, field)
}

/// The operator's fix: the ERP order taken from the storefront order `shop_order_gid` gets
/// the address `to` (`erp_correct_address`, which emits `order.address_changed`); the ERP
/// order number.
pub async fn correct_address(
    erp: &tokio_postgres::Client,
    shop_order_gid: &str,
    to: &ShippingAddress,
) -> Result<String> {
    let row = erp
        .query_one(
            "SELECT order_no FROM sales_orders WHERE shop_order_id = $1",
            &[&shop_order_gid],
        )
        .await?;
    let order_no: String = row.get(0);
    erp.execute(
        "SELECT erp_correct_address($1, $2, $3, $4, $5, $6, $7)",
        &[
            &order_no,
            &to.address1,
            &to.address2,
            &to.city,
            &to.zip,
            &to.province_code,
            &to.country_code,
        ],
    )
    .await?;
    Ok(order_no)
}

/// `tributary dlq redrive --sink <sink> --all`; its output.
pub async fn redrive(config: &Path, sink: &str) -> Result<String> {
    let config = config.to_string_lossy();
    let (code, out, err) =
        tributary(&["dlq", "redrive", "--sink", sink, "--all", "-c", &config]).await?;
    anyhow::ensure!(code == 0, "dlq redrive exited {code}: {out}{err}");
    Ok(out)
}

/// `recipient.address` of a WMS order as (address1, city, zip_code, country).
pub fn wms_ship_to(order: &wms::WmsOrder) -> (String, String, String, String) {
    let a = &order.recipient["address"];
    let f = |k: &str| a[k].as_str().unwrap_or_default().to_string();
    (f("address1"), f("city"), f("zip_code"), f("country"))
}

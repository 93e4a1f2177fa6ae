//! `tributary sandbox`: the WMS, Shopify and Salesforce emulators as one long-running
//! process, for the compose set-up and for trying sinks by hand.

use std::net::SocketAddr;

use tributary_sandbox::{salesforce, shopify, wms};

pub async fn run(
    wms_addr: SocketAddr,
    shopify_addr: SocketAddr,
    salesforce_addr: SocketAddr,
    pubsub_addr: SocketAddr,
    skus: u32,
) -> anyhow::Result<()> {
    let wms = wms::start(wms::WmsOptions {
        bind: wms_addr,
        ..Default::default()
    })
    .await?;
    let shop = shopify::start(shopify::ShopifyOptions {
        bind: shopify_addr,
        ..Default::default()
    })
    .await?;
    let sf = salesforce::start(salesforce::SalesforceOptions {
        bind: salesforce_addr,
        ..Default::default()
    })
    .await?;
    // Salesforce's Pub/Sub API (CDC) on the same org: REST writes come out as change events.
    let pubsub = salesforce::pubsub::start(
        sf.handle().clone(),
        pubsub_addr,
        std::time::Duration::from_secs(30),
    )
    .await?;
    // The sample catalogue (config/retail/erp.sql): SKU-0001… at location DC1.
    let dc1 = shop.add_location("DC1");
    for i in 1..=skus {
        shop.add_product(
            &format!("Item {i}"),
            &[shopify::VariantSeed {
                sku: format!("SKU-{i:04}"),
                price: "19.99".into(),
            }],
        );
    }
    println!(
        "WMS emulator        {}  (API key wms_sandbox)",
        wms.base_url()
    );
    println!(
        "Shopify emulator    {}  (access token shpat_sandbox; location DC1 = {dc1})",
        shop.base_url()
    );
    println!(
        "Salesforce emulator {}  (client sandbox-client / sandbox-secret)",
        sf.base_url()
    );
    println!(
        "Salesforce Pub/Sub  {}  (gRPC, CDC topics /data/ChangeEvents, /data/<Object>ChangeEvent)",
        pubsub.url()
    );
    println!("Ctrl-C stops them.");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    wms.stop().await;
    shop.stop().await;
    pubsub.stop().await;
    sf.stop().await;
    Ok(())
}

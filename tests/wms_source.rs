//! The WMS lifecycle webhooks as a source (issue #12): configured under `[[wms]]` (the old
//! `[sinks.wms.webhooks]` still works), received by the receiver Shopify uses, and stored as
//! the JSON change envelope every SaaS feed shares, which the mapper turns into a fulfillment.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use support::*;
use tokio_util::sync::CancellationToken;
use tributary_proto::cdc::v1::Operation;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_saas::wms::WmsWebhookSource;
use tributary_sandbox::wms::sign_standard_webhook;
use tributary_testkit::NatsServer;

const SECRET: &str = "7d1e4b9a02c6f35e8a4d7c1b90e2f6a3";

fn new_key(nats: &NatsServer) -> String {
    format!(
        "[nats]\nservers = [\"{}\"]\n[[wms]]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n",
        nats.url()
    )
}

fn old_key(nats: &NatsServer) -> String {
    format!(
        "[nats]\nservers = [\"{}\"]\n[sinks]\n[sinks.wms]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n\
         [sinks.wms.webhooks]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n",
        nats.url()
    )
}

fn shipped(id: &str) -> String {
    serde_json::json!({"id": id, "type": "order.shipped", "created_at": "2026-01-01T00:00:00.000Z",
        "data": {"order": {"id": "wms_7", "reference_id": "SO-7", "status": "shipped",
        "updated_at": "2026-01-01T00:00:00.000Z", "products": [{"sku": "SKU-1", "quantity": 2}],
        "shipments": [{"id": "shp_7", "carrier": "UPS", "tracking_number": "1Z7"}]}}})
    .to_string()
}

async fn post(addr: std::net::SocketAddr, id: &str, body: &str) -> Result<u16> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let signature = sign_standard_webhook(SECRET.as_bytes(), id, &ts, body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/wms"))
        .header("webhook-id", id)
        .header("webhook-timestamp", &ts)
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

/// Starts the source from `text`, sends one shipped webhook twice and checks what is stored.
async fn receives_and_stores_the_envelope(nats: &NatsServer, text: &str) -> Result<()> {
    let config = tributary_config::parse(text)?;
    let client = nats.connect().await?;
    let source = WmsWebhookSource::prepare(&config, jetstream::new(client.clone()))
        .await?
        .context("no WMS feed")?;
    let addr = source.local_addr().context("no address")?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(source.run(stop.clone()));
    let body = shipped("evt_7");
    assert_eq!(post(addr, "msg_7", &body).await?, 200);
    // The WMS's retry of the same delivery: answered 200, stored once.
    assert_eq!(post(addr, "msg_7", &body).await?, 200);

    let raw = read_stream(&client, "SAAS_WMS").await?;
    assert_eq!(raw.len(), 1, "one stored delivery");
    let r = &raw[0];
    assert_eq!(r.subject, "saas.wms.order_shipped");
    assert_eq!(r.msg_id, "wms:msg_7");
    let e = &r.event;
    assert_eq!(
        e.event_id, "wms:msg_7",
        "the envelope's id is the Nats-Msg-Id"
    );
    assert_eq!(
        (e.source.as_str(), e.schema.as_str(), e.table.as_str()),
        ("wms", "wms", "order.shipped")
    );
    assert_eq!(e.op, Operation::Update as i32);
    assert_eq!(e.origin, "webhook:msg_7");
    assert!(e.commit_time_micros > 0, "the webhook-timestamp");
    assert_eq!(e.columns.len(), 1);
    assert_eq!(
        (e.columns[0].name.as_str(), e.columns[0].type_name.as_str()),
        ("payload", "json")
    );
    let payload = tributary_saas::json_change::payload(e).context("no JSON payload")?;
    assert_eq!(payload, body, "the webhook body, byte for byte");

    // The mapper reads the envelope: the shipment becomes a fulfillment of SO-7.
    wait_until(Duration::from_secs(30), async || {
        let mut found = Vec::new();
        for msg in read_all(&client, "RETAIL").await? {
            if msg.subject.as_str() == "retail.v1.fulfillment.updated" {
                found.push(DomainEvent::decode(msg.payload.clone())?);
            }
        }
        let Some(Entity::Fulfillment(f)) = found.first().and_then(|e| e.entity.as_ref()) else {
            return Ok(Check::Pending(
                "no fulfillment from the stored envelope".into(),
            ));
        };
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (f.order_id.as_str(), f.tracking_number.as_str()),
            ("SO-7", "1Z7")
        );
        Ok(Check::Done(()))
    })
    .await?;
    stop.cancel();
    task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wms_feed_under_wms_stores_the_json_change_envelope() -> Result<()> {
    let nats = NatsServer::start().await?;
    receives_and_stores_the_envelope(&nats, &new_key(&nats)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_key_still_runs_the_same_feed() -> Result<()> {
    let nats = NatsServer::start().await?;
    let text = old_key(&nats);
    let config = tributary_config::parse(&text)?;
    let warnings = config.deprecations();
    assert!(
        warnings.len() == 1 && warnings[0].contains("`[[wms]]`"),
        "{warnings:?}"
    );
    receives_and_stores_the_envelope(&nats, &text).await
}

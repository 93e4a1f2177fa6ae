//! Shopify webhook sender over real HTTP: the seven headers, HMAC over the raw body, bounded
//! retries on non-2xx, and batches with duplicates, shuffling, bad signatures and drops.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use tributary_sandbox::shopify::{BatchOptions, ShopifyWebhook, WebhookSender};
use tributary_sandbox::webhooks::RetryPolicy;

const SECRET: &str = "shpss_app_secret";

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..RetryPolicy::default()
    }
}

async fn verifying_receiver() -> common::Receiver {
    common::receiver(|h, body| {
        h.get("x-shopify-hmac-sha256").and_then(|v| v.to_str().ok())
            == Some(common::hmac_b64(SECRET.as_bytes(), body).as_str())
    })
    .await
}

#[tokio::test]
async fn webhook_carries_the_seven_headers_and_a_valid_hmac() {
    let rx = verifying_receiver().await;
    let sender = WebhookSender::new(rx.url.clone(), SECRET, "shop.myshopify.com").unwrap();
    let hook = ShopifyWebhook::new(
        "orders/create",
        json!({"id": 1, "updated_at": "2026-01-01T00:00:00.000Z"}),
    );
    let outcome = sender.send(&hook).await;
    assert!(outcome.delivered);
    assert_eq!(outcome.attempts, 1);
    let got = &rx.all()[0];
    for h in [
        "x-shopify-topic",
        "x-shopify-hmac-sha256",
        "x-shopify-shop-domain",
        "x-shopify-api-version",
        "x-shopify-webhook-id",
        "x-shopify-event-id",
        "x-shopify-triggered-at",
    ] {
        assert!(got.header(h).is_some(), "missing {h}");
    }
    assert_eq!(
        got.header("x-shopify-event-id"),
        Some(hook.event_id.as_str())
    );
    assert_eq!(
        got.header("x-shopify-hmac-sha256").unwrap(),
        common::hmac_b64(SECRET.as_bytes(), &got.body)
    );
    assert!(tributary_sandbox::webhooks::verify_hmac_sha256_base64(
        SECRET.as_bytes(),
        &got.body,
        got.header("x-shopify-hmac-sha256").unwrap()
    ));
}

#[tokio::test]
async fn non_2xx_is_retried_with_the_same_event_id_and_bounded() {
    let rx = verifying_receiver().await;
    let sender =
        WebhookSender::with_policy(rx.url.clone(), SECRET, "shop.myshopify.com", fast_policy(4))
            .unwrap();
    rx.fail_next(2);
    let hook = ShopifyWebhook::new("customers/update", json!({"id": 9}));
    let outcome = sender.send(&hook).await;
    assert!(outcome.delivered);
    assert_eq!(outcome.attempts, 3);
    let ids: HashSet<_> = rx
        .all()
        .iter()
        .map(|r| r.header("x-shopify-event-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1);

    rx.fail_next(100);
    let outcome = sender
        .send(&ShopifyWebhook::new("customers/update", json!({"id": 10})))
        .await;
    assert!(!outcome.delivered);
    assert_eq!(outcome.attempts, 4);
    assert_eq!(outcome.status, Some(500));
}

#[tokio::test]
async fn batch_with_duplicates_shuffle_bad_signatures_and_drops() {
    let rx = verifying_receiver().await;
    let sender =
        WebhookSender::with_policy(rx.url.clone(), SECRET, "shop.myshopify.com", fast_policy(3))
            .unwrap();
    let hooks: Vec<ShopifyWebhook> = (0..300)
        .map(|i| {
            ShopifyWebhook::new(
                [
                    "orders/updated",
                    "inventory_levels/update",
                    "refunds/create",
                ][i % 3],
                json!({"id": i}),
            )
        })
        .collect();
    let opts = BatchOptions {
        duplicate_rate: 0.1,
        shuffle: true,
        bad_signature_rate: 0.05,
        drop_rate: 0.02,
        max_delay: Duration::from_millis(5),
        concurrency: 16,
        seed: 42,
    };
    let report = sender.send_batch(hooks, &opts).await;

    let received = rx.all();
    assert_eq!(received.len(), report.sent.len());
    let bad = report.sent.iter().filter(|s| s.bad_signature).count();
    assert!(bad > 0 && report.sent.iter().any(|s| s.duplicate) && !report.dropped.is_empty());
    assert_eq!(received.iter().filter(|r| r.status == 401).count(), bad);
    assert!(report
        .sent
        .iter()
        .filter(|s| s.bad_signature)
        .all(|s| s.outcome.status == Some(401) && s.outcome.attempts == 1));

    // Every event not dropped arrives genuinely at least once, unless all its copies were forged.
    let genuine: HashSet<String> = received
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.header("x-shopify-event-id").unwrap().to_string())
        .collect();
    let expected: HashSet<String> = report
        .sent
        .iter()
        .filter(|s| !s.bad_signature)
        .map(|s| s.event_id.clone())
        .collect();
    assert_eq!(genuine, expected);
    assert!(report.dropped.iter().all(|d| !genuine.contains(d)));

    // Shuffled: the arrival order is not the event order.
    let ids: Vec<i64> = received
        .iter()
        .filter_map(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .ok()?
                .get("id")?
                .as_i64()
        })
        .collect();
    assert!(ids.windows(2).any(|w| w[0] > w[1]));
}

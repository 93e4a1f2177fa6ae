//! WMS emulator over real HTTP: API keys, Idempotency-Key rules, reference_id uniqueness,
//! 429 with Retry-After, faults, cancellation, stock, and signed lifecycle webhooks.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use tributary_sandbox::wms::{self, Wms, WmsOptions, WmsStatus, WmsWebhookOptions};
use tributary_sandbox::{Fault, RunningEmulator};

const KEY: &str = "wms_sandbox";

struct Env {
    emu: RunningEmulator<Wms>,
    http: reqwest::Client,
}

async fn env(opts: WmsOptions) -> Env {
    Env {
        emu: wms::start(opts).await.unwrap(),
        http: reqwest::Client::new(),
    }
}

fn order(reference: &str) -> Value {
    json!({"reference_id": reference, "shipping_method": "standard", "recipient": {"name": "Ann",
               "address": {"address1": "Nyhavn 1", "city": "Copenhagen", "zip_code": "1051", "country": "DK"}},
           "products": [{"sku": "MUG-1", "quantity": 2}]})
}

impl Env {
    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.emu.base_url()))
            .bearer_auth(KEY)
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn rejects_a_missing_or_wrong_api_key() {
    let e = env(WmsOptions::default()).await;
    let r = e
        .http
        .post(format!("{}/orders", e.emu.base_url()))
        .bearer_auth("nope")
        .header("Idempotency-Key", "k")
        .json(&order("R-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(e.emu.orders().is_empty());
}

#[tokio::test]
async fn idempotency_key_replays_conflicts_and_reference_uniqueness() {
    let e = env(WmsOptions::default()).await;
    let (status, _, first) = e.post("/orders", Some("k-1"), &order("R-1")).await;
    assert_eq!(status, 201);
    assert_eq!(first["status"], "pending");

    let (status, headers, again) = e.post("/orders", Some("k-1"), &order("R-1")).await;
    assert_eq!((status, &again), (201, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(e.emu.key_applies("k-1"), 1);
    assert_eq!(e.emu.key_replays("k-1"), 1);

    assert_eq!(e.post("/orders", Some("k-1"), &order("R-2")).await.0, 422);
    assert_eq!(e.post("/orders", None, &order("R-2")).await.0, 400);

    // A new key for an existing reference: the existing order, no second one.
    let (status, _, existing) = e.post("/orders", Some("k-2"), &order("R-1")).await;
    assert_eq!((status, &existing["id"]), (200, &first["id"]));
    assert_eq!(e.emu.reference_creates("R-1"), 1);
    assert_eq!(e.emu.orders().len(), 1);

    let (status, _, invalid) = e
        .post(
            "/orders",
            Some("k-3"),
            &json!({"reference_id": "", "products": []}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(invalid["errors"]["reference_id"].is_array());
    let r = e
        .http
        .post(format!("{}/orders", e.emu.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "k-4")
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_key_still_in_flight_gets_409() {
    let e = env(WmsOptions {
        processing_delay: Duration::from_millis(300),
        ..WmsOptions::default()
    })
    .await;
    let body = order("R-9");
    let (a, b) = tokio::join!(e.post("/orders", Some("same"), &body), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        e.post("/orders", Some("same"), &body).await
    });
    assert_eq!((a.0, b.0), (201, 409));
    assert_eq!(e.emu.key_applies("same"), 1);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_can_be_switched_off() {
    let e = env(WmsOptions {
        requests_per_second: Some(2.0),
        ..WmsOptions::default()
    })
    .await;
    assert_eq!(e.post("/orders", Some("a"), &order("R-a")).await.0, 201);
    assert_eq!(e.post("/orders", Some("b"), &order("R-b")).await.0, 201);
    let (status, headers, _) = e.post("/orders", Some("c"), &order("R-c")).await;
    assert_eq!(status, 429);
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 1.0
    );
    assert_eq!(e.emu.key_applies("c"), 0);
    e.emu.set_rate_limits(false);
    for i in 0..10 {
        assert_eq!(
            e.post(
                "/orders",
                Some(&format!("d{i}")),
                &order(&format!("R-d{i}"))
            )
            .await
            .0,
            201
        );
    }
}

#[tokio::test]
async fn injected_faults_and_lost_answers() {
    let e = env(WmsOptions::default()).await;
    e.emu.faults().fail_next(1, Fault::ServerError(502));
    e.emu.faults().fail_next(1, Fault::RateLimited);
    assert_eq!(e.post("/orders", Some("f"), &order("R-f")).await.0, 502);
    let (status, headers, _) = e.post("/orders", Some("f"), &order("R-f")).await;
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap()),
        (429, "1")
    );
    assert!(e.emu.orders().is_empty());

    e.emu
        .faults()
        .fail_next(1, Fault::TimeoutAfterApply(Duration::from_secs(2)));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let lost = short
        .post(format!("{}/orders", e.emu.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "f")
        .json(&order("R-f"))
        .send()
        .await;
    assert!(lost.unwrap_err().is_timeout());
    let (status, headers, _) = e.post("/orders", Some("f"), &order("R-f")).await;
    assert_eq!(status, 201);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(e.emu.reference_creates("R-f"), 1);
}

#[tokio::test]
async fn cancellation_and_inventory_adjustments() {
    let e = env(WmsOptions::default()).await;
    e.emu.set_stock("MUG-1", 10);
    let (_, _, a) = e.post("/orders", Some("o1"), &order("R-1")).await;
    let (_, _, b) = e.post("/orders", Some("o2"), &order("R-2")).await;
    let a_id = a["id"].as_str().unwrap();
    e.emu.advance(a_id, WmsStatus::Allocated).unwrap();
    assert_eq!(e.emu.stock("MUG-1"), Some(8));
    let (status, _, cancelled) = e
        .post(&format!("/orders/{a_id}/cancel"), Some("c1"), &json!({}))
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(e.emu.stock("MUG-1"), Some(10));

    let b_id = b["id"].as_str().unwrap();
    e.emu.advance(b_id, WmsStatus::Allocated).unwrap();
    e.emu.advance(b_id, WmsStatus::Shipped).unwrap();
    let (status, _, refused) = e
        .post(&format!("/orders/{b_id}/cancel"), Some("c2"), &json!({}))
        .await;
    assert_eq!(status, 409);
    assert!(refused["detail"].as_str().unwrap().contains("shipped"));

    let (status, _, adj) = e
        .post(
            "/inventory/adjustments",
            Some("adj-1"),
            &json!({"sku": "MUG-1", "delta": 5, "reason": "cycle count"}),
        )
        .await;
    assert_eq!((status, adj["on_hand_after"].as_i64()), (201, Some(13)));
    e.post(
        "/inventory/adjustments",
        Some("adj-1"),
        &json!({"sku": "MUG-1", "delta": 5, "reason": "cycle count"}),
    )
    .await;
    let stock: Value = e
        .http
        .get(format!("{}/inventory?sku=MUG-1", e.emu.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stock["on_hand"], 13);
    assert_eq!(e.emu.key_applies("adj-1"), 1);
}

#[tokio::test]
async fn lifecycle_webhooks_are_signed_standard_webhooks() {
    let secret = "whsec_sandbox";
    let rx = common::receiver(move |h, body| {
        let get = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut signed =
            format!("{}.{}.", get("webhook-id"), get("webhook-timestamp")).into_bytes();
        signed.extend_from_slice(body);
        get("webhook-signature") == format!("v1,{}", common::hmac_b64(secret.as_bytes(), &signed))
    })
    .await;
    let e = env(WmsOptions {
        webhook: Some(WmsWebhookOptions::new(rx.url.clone(), secret)),
        auto_advance: Some(Duration::from_millis(20)),
        ..WmsOptions::default()
    })
    .await;
    let (_, _, created) = e.post("/orders", Some("w1"), &order("R-w")).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(common::eventually(|| rx.all().len() >= 3).await);
    assert_eq!(e.emu.order(&id).unwrap().status, WmsStatus::Delivered);
    let got = rx.all();
    assert!(got.iter().all(|r| r.status == 200));
    let kinds: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["order.allocated", "order.shipped", "order.delivered"]
    );
    let shipped: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert!(shipped["data"]["order"]["shipments"][0]["tracking_number"]
        .as_str()
        .unwrap()
        .starts_with("1Z"));
    assert!(tributary_sandbox::wms::verify_standard_webhook(
        secret.as_bytes(),
        got[0].header("webhook-id").unwrap(),
        got[0].header("webhook-timestamp").unwrap(),
        &got[0].body,
        got[0].header("webhook-signature").unwrap()
    ));

    // A forged delivery is refused by a verifying receiver.
    e.emu
        .set_webhook(Some(WmsWebhookOptions {
            bad_signature_rate: 1.0,
            ..WmsWebhookOptions::new(rx.url.clone(), secret)
        }))
        .unwrap();
    e.post("/orders", Some("w2"), &order("R-x")).await;
    assert!(common::eventually(|| rx.all().iter().any(|r| r.status == 401)).await);
}

#[tokio::test]
async fn an_outage_keeps_state_and_resumes_on_the_same_address() {
    let e = env(WmsOptions::default()).await;
    e.post("/orders", Some("o"), &order("R-o")).await;
    let addr = e.emu.addr();
    let handle = e.emu.stop().await;
    let down = e
        .http
        .post(format!("http://{addr}/orders"))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "o")
        .json(&order("R-o"))
        .send()
        .await;
    assert!(down.unwrap_err().is_connect());
    let back = wms::resume(handle, addr).await.unwrap();
    let r = e
        .http
        .post(format!("{}/orders", back.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "o")
        .json(&order("R-o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(back.reference_creates("R-o"), 1);
}

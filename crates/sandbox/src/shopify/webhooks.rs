//! Signed Shopify webhooks: payloads in the REST shape, the seven headers, and batch sending
//! with duplicates, shuffling, delays, bad signatures and deliberately lost events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::state::{gid, Customer, Fulfillment, InventoryLevel, Order, ShopState};
use crate::error::Result;
use crate::util::{hmac_sha256_base64, now_rfc3339, random_uuid};
use crate::webhooks::{Delivery, DeliveryOutcome, RetryPolicy, WebhookClient};

/// One webhook event. Redeliveries of it share `event_id`.
#[derive(Clone, Debug)]
pub struct ShopifyWebhook {
    pub topic: String,
    pub event_id: String,
    pub triggered_at: String,
    pub payload: Value,
}

impl ShopifyWebhook {
    /// A new event now, with a fresh event id.
    pub fn new(topic: impl Into<String>, payload: Value) -> Self {
        Self {
            topic: topic.into(),
            event_id: random_uuid(),
            triggered_at: now_rfc3339(),
            payload,
        }
    }
}

/// Where and how webhooks are sent for one shop.
#[derive(Clone)]
pub struct WebhookSender {
    url: String,
    secret: Arc<Vec<u8>>,
    shop_domain: String,
    api_version: String,
    client: WebhookClient,
}

/// Options of [`WebhookSender::send_batch`]. Random choices come from `seed`.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Share of events delivered a second time (same event id, new webhook id).
    pub duplicate_rate: f64,
    /// Deliver in random order instead of event order.
    pub shuffle: bool,
    /// Share of deliveries sent with a wrong signature (one attempt, no retry: a forger).
    pub bad_signature_rate: f64,
    /// Share of events never delivered (to be recovered by reconciliation).
    pub drop_rate: f64,
    /// Random delay before each delivery, up to this.
    pub max_delay: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub seed: u64,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            duplicate_rate: 0.0,
            shuffle: false,
            bad_signature_rate: 0.0,
            drop_rate: 0.0,
            max_delay: Duration::ZERO,
            concurrency: 8,
            seed: 7,
        }
    }
}

/// What happened to one delivery of a batch.
#[derive(Clone, Debug)]
pub struct SentWebhook {
    pub event_id: String,
    pub topic: String,
    pub webhook_id: String,
    pub duplicate: bool,
    pub bad_signature: bool,
    pub outcome: DeliveryOutcome,
}

/// The result of [`WebhookSender::send_batch`].
#[derive(Clone, Debug, Default)]
pub struct BatchReport {
    pub sent: Vec<SentWebhook>,
    /// Events deliberately never delivered.
    pub dropped: Vec<String>,
}

impl WebhookSender {
    /// Sends to `url`, signing with the app's `secret`, as `shop_domain`.
    pub fn new(
        url: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        shop_domain: impl Into<String>,
    ) -> Result<Self> {
        Self::with_policy(url, secret, shop_domain, RetryPolicy::default())
    }

    pub fn with_policy(
        url: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        shop_domain: impl Into<String>,
        policy: RetryPolicy,
    ) -> Result<Self> {
        Ok(Self {
            url: url.into(),
            secret: Arc::new(secret.into()),
            shop_domain: shop_domain.into(),
            api_version: "2025-10".into(),
            client: WebhookClient::new(policy)?,
        })
    }

    /// The client (its attempt log is useful in tests).
    pub fn client(&self) -> &WebhookClient {
        &self.client
    }

    /// The exact request for one delivery of `hook` (fresh `X-Shopify-Webhook-Id`).
    pub fn delivery(&self, hook: &ShopifyWebhook, bad_signature: bool) -> Delivery {
        let body = Bytes::from(serde_json::to_vec(&hook.payload).unwrap_or_default());
        let mut signature = hmac_sha256_base64(&self.secret, &body);
        if bad_signature {
            signature = hmac_sha256_base64(b"not-the-app-secret", &body);
        }
        Delivery {
            url: self.url.clone(),
            headers: vec![
                ("X-Shopify-Topic".into(), hook.topic.clone()),
                ("X-Shopify-Hmac-Sha256".into(), signature),
                ("X-Shopify-Shop-Domain".into(), self.shop_domain.clone()),
                ("X-Shopify-API-Version".into(), self.api_version.clone()),
                ("X-Shopify-Webhook-Id".into(), random_uuid()),
                ("X-Shopify-Event-Id".into(), hook.event_id.clone()),
                ("X-Shopify-Triggered-At".into(), hook.triggered_at.clone()),
            ],
            body,
        }
    }

    /// Delivers one event, retrying on non-2xx as Shopify does.
    pub async fn send(&self, hook: &ShopifyWebhook) -> DeliveryOutcome {
        self.client.deliver(&self.delivery(hook, false)).await
    }

    /// Delivers many events with the faults of `opts`.
    pub async fn send_batch(&self, hooks: Vec<ShopifyWebhook>, opts: &BatchOptions) -> BatchReport {
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let mut plan = Vec::new();
        let mut report = BatchReport::default();
        for hook in hooks {
            if rng.random::<f64>() < opts.drop_rate {
                report.dropped.push(hook.event_id.clone());
                continue;
            }
            let copies = if rng.random::<f64>() < opts.duplicate_rate {
                2
            } else {
                1
            };
            for copy in 0..copies {
                let bad = rng.random::<f64>() < opts.bad_signature_rate;
                let delay = opts.max_delay.mul_f64(rng.random::<f64>());
                plan.push((hook.clone(), copy > 0, bad, delay));
            }
        }
        if opts.shuffle {
            plan.shuffle(&mut rng);
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (hook, duplicate, bad, delay)) in plan.into_iter().enumerate() {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let sender = self.clone();
            tasks.spawn(async move {
                tokio::time::sleep(delay).await;
                let delivery = sender.delivery(&hook, bad);
                let webhook_id = delivery
                    .headers
                    .iter()
                    .find(|(k, _)| k == "X-Shopify-Webhook-Id")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let attempts = if bad {
                    1
                } else {
                    sender.client.policy().max_attempts
                };
                let outcome = sender.client.deliver_with(&delivery, attempts).await;
                drop(permit);
                (
                    i,
                    SentWebhook {
                        event_id: hook.event_id,
                        topic: hook.topic,
                        webhook_id,
                        duplicate,
                        bad_signature: bad,
                        outcome,
                    },
                )
            });
        }
        let mut sent: Vec<(usize, SentWebhook)> = tasks.join_all().await;
        sent.sort_by_key(|(i, _)| *i);
        report.sent = sent.into_iter().map(|(_, s)| s).collect();
        report
    }
}

fn tags_string(tags: &[String]) -> String {
    tags.join(", ")
}

/// `orders/create`, `orders/updated` payload.
pub fn order_payload(s: &ShopState, o: &Order) -> Value {
    let fulfillments: Vec<Value> = s
        .fulfillments
        .values()
        .filter(|f| f.order_id == o.id)
        .map(fulfillment_payload)
        .collect();
    json!({
        "id": o.id, "admin_graphql_api_id": gid("Order", o.id), "name": o.name, "email": o.email,
        "note": o.note, "tags": tags_string(&o.tags),
        "note_attributes": o.custom_attributes.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "closed_at": if o.closed { Some(o.updated_at.clone()) } else { None },
        "cancelled_at": if o.cancelled { Some(o.updated_at.clone()) } else { None },
        "financial_status": o.financial_status.to_lowercase(),
        "fulfillment_status": if o.fulfillment_status == "FULFILLED" { Some("fulfilled") } else { None },
        "line_items": o.line_items.iter().map(|l| json!({"id": l.id, "sku": l.sku, "quantity": l.quantity, "price": l.price})).collect::<Vec<_>>(),
        "customer": o.customer_id.map(|c| json!({"id": c, "admin_graphql_api_id": gid("Customer", c)})),
        "shipping_address": o.shipping_address,
        "fulfillments": fulfillments,
        "created_at": o.created_at, "updated_at": o.updated_at,
    })
}

/// `customers/create`, `customers/update` payload.
pub fn customer_payload(c: &Customer) -> Value {
    json!({"id": c.id, "admin_graphql_api_id": gid("Customer", c.id), "email": c.email,
           "first_name": c.first_name, "last_name": c.last_name, "phone": c.phone, "note": c.note,
           "tags": tags_string(&c.tags), "created_at": c.created_at, "updated_at": c.updated_at})
}

/// `inventory_levels/update` payload.
pub fn inventory_level_payload(item: u64, location: u64, l: &InventoryLevel) -> Value {
    json!({"inventory_item_id": item, "location_id": location, "available": l.available,
           "updated_at": l.updated_at,
           "admin_graphql_api_id": format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}")})
}

/// `fulfillments/create` payload.
pub fn fulfillment_payload(f: &Fulfillment) -> Value {
    let first = f.tracking.first().cloned().unwrap_or_default();
    json!({"id": f.id, "admin_graphql_api_id": gid("Fulfillment", f.id), "order_id": f.order_id,
           "status": f.status.to_lowercase(), "tracking_company": first.company,
           "tracking_number": first.number, "tracking_url": first.url,
           "tracking_numbers": f.tracking.iter().filter_map(|t| t.number.clone()).collect::<Vec<_>>(),
           "created_at": f.created_at, "updated_at": f.updated_at})
}

/// `refunds/create` payload for a refund of `amount` on order `o`.
pub fn refund_payload(refund_id: u64, o: &Order, amount: &str) -> Value {
    json!({"id": refund_id, "admin_graphql_api_id": gid("Refund", refund_id), "order_id": o.id,
           "created_at": now_rfc3339(), "note": null, "restock": false,
           "refund_line_items": [],
           "transactions": [{"kind": "refund", "status": "success", "amount": amount, "order_id": o.id}]})
}

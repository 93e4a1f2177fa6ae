//! The Rust API of the Shopify emulator: seeding, inspection, faults, webhook subscription.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::outcome::Changed;
use super::state::{
    gid, parse_gid, Customer, Fulfillment, InventoryLevel, LineItem, Location, Order, Product,
    Refund, ShippingAddress, ShopState, Variant,
};
use super::throttle::Limiter;
use super::webhooks::{self, ShopifyWebhook, WebhookSender};
use super::{lock, Inner, Shopify, ShopifyOptions, WebhookSubscription};
use crate::error::Result;
use crate::faults::Faults;
use crate::server::RequestLog;
use crate::util::now_rfc3339;

/// Seed of one product variant.
#[derive(Clone, Debug)]
pub struct VariantSeed {
    pub sku: String,
    pub price: String,
}

/// GIDs of a seeded product.
#[derive(Clone, Debug)]
pub struct SeededProduct {
    pub product_id: String,
    /// (variant GID, inventory item GID, SKU) per variant.
    pub variants: Vec<(String, String, String)>,
}

/// GIDs of a seeded order.
#[derive(Clone, Debug)]
pub struct SeededOrder {
    pub order_id: String,
    pub fulfillment_order_id: String,
}

impl Shopify {
    pub(super) fn new(opts: ShopifyOptions) -> Result<Self> {
        let sender = match &opts.webhook {
            Some(w) => Some(WebhookSender::with_policy(
                w.url.clone(),
                w.secret.clone(),
                opts.shop_domain.clone(),
                w.policy.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                cost: Mutex::new(Limiter::new(
                    opts.bucket_size,
                    opts.restore_rate,
                    opts.throttling,
                )),
                rest: Mutex::new(Limiter::new(40.0, 2.0, opts.throttling)),
                opts: Mutex::new(opts),
                state: Mutex::new(ShopState::default()),
                faults: Arc::default(),
                log: RequestLog::new(),
                sender: Mutex::new(sender),
            }),
        })
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub fn requests(&self) -> &RequestLog {
        &self.inner.log
    }

    /// Switches the cost and REST buckets on or off.
    pub fn set_throttling(&self, on: bool) {
        lock(&self.inner.cost).enabled = on;
        lock(&self.inner.rest).enabled = on;
        lock(&self.inner.opts).throttling = on;
    }

    /// Subscribes (or unsubscribes, `None`) the webhooks fired by mutations.
    pub fn set_webhook_subscription(&self, sub: Option<WebhookSubscription>) -> Result<()> {
        let domain = lock(&self.inner.opts).shop_domain.clone();
        let sender = match sub {
            Some(w) => Some(WebhookSender::with_policy(
                w.url, w.secret, domain, w.policy,
            )?),
            None => None,
        };
        *lock(&self.inner.sender) = sender;
        Ok(())
    }

    /// Runs `f` on the state (seeding or inspection beyond the helpers below). Fires no webhook.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ShopState) -> R) -> R {
        f(&mut lock(&self.inner.state))
    }

    pub fn add_location(&self, name: &str) -> String {
        self.with_state(|s| {
            let id = s.next_id();
            s.locations.insert(
                id,
                Location {
                    id,
                    name: name.to_string(),
                },
            );
            gid("Location", id)
        })
    }

    pub fn add_product(&self, title: &str, variants: &[VariantSeed]) -> SeededProduct {
        self.with_state(|s| {
            let now = now_rfc3339();
            let pid = s.next_id();
            let mut out = Vec::new();
            let mut ids = Vec::new();
            for v in variants {
                let (vid, item) = (s.next_id(), s.next_id());
                s.variants.insert(
                    vid,
                    Variant {
                        id: vid,
                        product_id: pid,
                        sku: v.sku.clone(),
                        price: v.price.clone(),
                        compare_at_price: None,
                        inventory_item_id: item,
                        updated_at: now.clone(),
                    },
                );
                ids.push(vid);
                out.push((
                    gid("ProductVariant", vid),
                    gid("InventoryItem", item),
                    v.sku.clone(),
                ));
            }
            s.products.insert(
                pid,
                Product {
                    id: pid,
                    title: title.to_string(),
                    variant_ids: ids,
                    created_at: now.clone(),
                    updated_at: now,
                },
            );
            SeededProduct {
                product_id: gid("Product", pid),
                variants: out,
            }
        })
    }

    /// Sets available and on-hand of an inventory item at a location (GIDs).
    pub fn set_inventory(&self, item: &str, location: &str, quantity: i64) -> Result<()> {
        let (Some(i), Some(l)) = (
            parse_gid(item, "InventoryItem"),
            parse_gid(location, "Location"),
        ) else {
            return Err(crate::SandboxError::UnknownEntity(format!(
                "{item} @ {location}"
            )));
        };
        self.with_state(|s| {
            s.inventory.insert(
                (i, l),
                InventoryLevel {
                    available: quantity,
                    on_hand: quantity,
                    updated_at: now_rfc3339(),
                },
            )
        });
        Ok(())
    }

    /// Available and on-hand of an item at a location (GIDs).
    pub fn inventory(&self, item: &str, location: &str) -> Option<InventoryLevel> {
        let (i, l) = (
            parse_gid(item, "InventoryItem")?,
            parse_gid(location, "Location")?,
        );
        self.with_state(|s| s.inventory.get(&(i, l)).cloned())
    }

    pub fn add_customer(&self, email: &str, first_name: &str, last_name: &str) -> String {
        self.with_state(|s| {
            let id = s.next_id();
            let now = now_rfc3339();
            s.customers.insert(
                id,
                Customer {
                    id,
                    email: Some(email.into()),
                    first_name: Some(first_name.into()),
                    last_name: Some(last_name.into()),
                    created_at: now.clone(),
                    updated_at: now,
                    ..Customer::default()
                },
            );
            gid("Customer", id)
        })
    }

    /// Adds an open, paid, unfulfilled order with `(sku, quantity, price)` lines and no
    /// shipping address.
    pub fn add_order(
        &self,
        email: &str,
        lines: &[(&str, i64, &str)],
        customer: Option<&str>,
    ) -> SeededOrder {
        self.add_order_to(email, lines, customer, None)
    }

    /// [`Shopify::add_order`] with the address the customer entered at checkout.
    pub fn add_order_to(
        &self,
        email: &str,
        lines: &[(&str, i64, &str)],
        customer: Option<&str>,
        shipping_address: Option<ShippingAddress>,
    ) -> SeededOrder {
        self.with_state(|s| {
            let id = s.next_id();
            let fo = s.next_id();
            let line_items = lines
                .iter()
                .map(|(sku, q, p)| LineItem {
                    id: s.next_id(),
                    sku: sku.to_string(),
                    quantity: *q,
                    price: p.to_string(),
                    fulfilled: 0,
                })
                .collect();
            let now = now_rfc3339();
            s.orders.insert(
                id,
                Order {
                    id,
                    name: format!("#{}", 1000 + id),
                    email: Some(email.into()),
                    note: None,
                    tags: vec![],
                    custom_attributes: vec![],
                    closed: false,
                    cancelled: false,
                    financial_status: "PAID".into(),
                    fulfillment_status: "UNFULFILLED".into(),
                    line_items,
                    fulfillment_order_id: fo,
                    customer_id: customer.and_then(|c| parse_gid(c, "Customer")),
                    shipping_address,
                    refunds: vec![],
                    created_at: now.clone(),
                    updated_at: now,
                },
            );
            SeededOrder {
                order_id: gid("Order", id),
                fulfillment_order_id: gid("FulfillmentOrder", fo),
            }
        })
    }

    /// Refunds `amount` on the order (stored on it, its `updated_at` moved) without sending a
    /// webhook; returns the refund's GID.
    pub fn add_refund(&self, order_gid: &str, amount: &str) -> Option<String> {
        let order = parse_gid(order_gid, "Order")?;
        self.with_state(|s| {
            let id = s.next_id();
            let now = now_rfc3339();
            let o = s.orders.get_mut(&order)?;
            o.refunds.push(Refund {
                id,
                amount: amount.to_string(),
                created_at: now.clone(),
            });
            o.financial_status = "PARTIALLY_REFUNDED".into();
            o.updated_at = now;
            Some(gid("Refund", id))
        })
    }

    /// A checkout on the storefront: the order as [`Shopify::add_order`] makes it, and its
    /// `orders/create` webhook sent to the subscribed endpoint (if any), as Shopify does.
    pub fn place_order(
        &self,
        email: &str,
        lines: &[(&str, i64, &str)],
        customer: Option<&str>,
    ) -> SeededOrder {
        self.place_order_to(email, lines, customer, None)
    }

    /// A checkout with a shipping address: [`Shopify::add_order_to`] and its `orders/create`
    /// webhook.
    pub fn place_order_to(
        &self,
        email: &str,
        lines: &[(&str, i64, &str)],
        customer: Option<&str>,
        shipping_address: Option<ShippingAddress>,
    ) -> SeededOrder {
        let order = self.add_order_to(email, lines, customer, shipping_address);
        self.send_hook("orders/create", &order.order_id);
        order
    }

    /// A refund as [`Shopify::add_refund`] makes it, and its `refunds/create` webhook sent
    /// to the subscribed endpoint (if any).
    pub fn refund_order(&self, order_gid: &str, amount: &str) -> Option<String> {
        let refund = self.add_refund(order_gid, amount)?;
        self.send_hook("refunds/create", order_gid);
        Some(refund)
    }

    fn send_hook(&self, topic: &str, entity_gid: &str) {
        let Some(sender) = lock(&self.inner.sender).clone() else {
            return;
        };
        let Some(hook) = self.webhook_for(topic, entity_gid) else {
            return;
        };
        tokio::spawn(async move {
            sender.send(&hook).await;
        });
    }

    pub fn order(&self, order_gid: &str) -> Option<Order> {
        let id = parse_gid(order_gid, "Order")?;
        self.with_state(|s| s.orders.get(&id).cloned())
    }

    pub fn customer(&self, customer_gid: &str) -> Option<Customer> {
        let id = parse_gid(customer_gid, "Customer")?;
        self.with_state(|s| s.customers.get(&id).cloned())
    }

    pub fn variant(&self, variant_gid: &str) -> Option<Variant> {
        let id = parse_gid(variant_gid, "ProductVariant")?;
        self.with_state(|s| s.variants.get(&id).cloned())
    }

    /// Fulfilments of an order.
    pub fn fulfillments(&self, order_gid: &str) -> Vec<Fulfillment> {
        let id = parse_gid(order_gid, "Order");
        self.with_state(|s| {
            s.fulfillments
                .values()
                .filter(|f| Some(f.order_id) == id)
                .cloned()
                .collect()
        })
    }

    /// Side effects applied to an entity (GID; inventory levels: [`inventory_level_gid`]).
    pub fn entity_writes(&self, entity_gid: &str) -> u64 {
        self.with_state(|s| s.entity_writes.get(entity_gid).copied().unwrap_or(0))
    }

    /// How many times the mutation under this `@idempotent` key was applied (0 or 1).
    pub fn idempotent_applies(&self, key: &str) -> u64 {
        self.with_state(|s| s.idempotent_applies.get(key).copied().unwrap_or(0))
    }

    /// How many times a stored `@idempotent` result was replayed.
    pub fn idempotent_replays(&self, key: &str) -> u64 {
        self.with_state(|s| s.idempotency.get(key).map(|r| r.replays).unwrap_or(0))
    }

    /// THROTTLED answers given by the cost bucket (injected faults not included: they are in
    /// the request log).
    pub fn throttled_count(&self) -> u64 {
        self.with_state(|s| s.throttled)
    }

    /// A webhook event for `topic` built from the current state of the entity `entity_gid`
    /// (order, customer, fulfillment, or inventory level GID); for sending by hand.
    pub fn webhook_for(&self, topic: &str, entity_gid: &str) -> Option<ShopifyWebhook> {
        let payload = self.with_state(|s| -> Option<Value> {
            if let Some(id) = parse_gid(entity_gid, "Order") {
                // The order's last stored refund, or a new one of 1.00.
                let stored = s
                    .orders
                    .get(&id)?
                    .refunds
                    .last()
                    .map(|r| (r.id, r.amount.clone()));
                let refund = match (topic == "refunds/create", stored) {
                    (false, _) => None,
                    (true, Some(r)) => Some(r),
                    (true, None) => Some((s.next_id(), "1.00".to_string())),
                };
                let o = s.orders.get(&id)?;
                return Some(match refund {
                    Some((r, amount)) => webhooks::refund_payload(r, o, &amount),
                    None => webhooks::order_payload(s, o),
                });
            }
            if let Some(id) = parse_gid(entity_gid, "Customer") {
                return s.customers.get(&id).map(webhooks::customer_payload);
            }
            if let Some(id) = parse_gid(entity_gid, "Fulfillment") {
                return s.fulfillments.get(&id).map(webhooks::fulfillment_payload);
            }
            let rest = entity_gid.strip_prefix("gid://shopify/InventoryLevel/")?;
            let (loc, item) = rest.split_once("?inventory_item_id=")?;
            let (loc, item) = (loc.parse().ok()?, item.parse().ok()?);
            s.inventory
                .get(&(item, loc))
                .map(|l| webhooks::inventory_level_payload(item, loc, l))
        })?;
        Some(ShopifyWebhook::new(topic, payload))
    }

    pub(super) fn fire(&self, changed: &[Changed]) {
        let Some(sender) = lock(&self.inner.sender).clone() else {
            return;
        };
        let hooks: Vec<ShopifyWebhook> = self.with_state(|s| {
            changed
                .iter()
                .filter_map(|c| {
                    let (topic, payload) = match *c {
                        Changed::Order(id) => (
                            "orders/updated",
                            webhooks::order_payload(s, s.orders.get(&id)?),
                        ),
                        Changed::Customer { id, created } => (
                            if created {
                                "customers/create"
                            } else {
                                "customers/update"
                            },
                            webhooks::customer_payload(s.customers.get(&id)?),
                        ),
                        Changed::Fulfillment(id) => (
                            "fulfillments/create",
                            webhooks::fulfillment_payload(s.fulfillments.get(&id)?),
                        ),
                        Changed::InventoryLevel { item, location } => (
                            "inventory_levels/update",
                            webhooks::inventory_level_payload(
                                item,
                                location,
                                s.inventory.get(&(item, location))?,
                            ),
                        ),
                        Changed::Product(id) => {
                            ("products/update", s.product_node(s.products.get(&id)?))
                        }
                    };
                    Some(ShopifyWebhook::new(topic, payload))
                })
                .collect()
        });
        tokio::spawn(async move {
            for hook in hooks {
                sender.send(&hook).await;
            }
        });
    }
}

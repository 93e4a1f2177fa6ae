//! The shop's in-memory state: catalogue, stock, orders, customers, fulfilments, and the
//! counters tests use to prove there were no duplicate side effects.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{json, Value};

use crate::util::now_rfc3339;

/// `gid://shopify/<kind>/<id>`.
pub fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

/// The numeric id of a GID of the given kind (`gid://shopify/Order/7` → 7).
pub fn parse_gid(value: &str, kind: &str) -> Option<u64> {
    value
        .strip_prefix("gid://shopify/")?
        .strip_prefix(kind)?
        .strip_prefix('/')?
        .parse()
        .ok()
}

#[derive(Clone, Debug, Serialize)]
pub struct Product {
    pub id: u64,
    pub title: String,
    pub variant_ids: Vec<u64>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    pub id: u64,
    pub product_id: u64,
    pub sku: String,
    /// Decimal string, as Shopify's `Money` scalars.
    pub price: String,
    pub compare_at_price: Option<String>,
    pub inventory_item_id: u64,
    pub updated_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Location {
    pub id: u64,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InventoryLevel {
    pub available: i64,
    pub on_hand: i64,
    pub updated_at: String,
}

/// Where an order goes, in the REST shape (`shipping_address` of an order); the GraphQL
/// node names the same fields `address1`, `address2`, `city`, `provinceCode`, `zip`,
/// `countryCodeV2`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ShippingAddress {
    pub address1: String,
    #[serde(default)]
    pub address2: Option<String>,
    pub city: String,
    #[serde(default)]
    pub province_code: Option<String>,
    pub zip: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
}

impl ShippingAddress {
    /// The GraphQL shape.
    pub fn node(&self) -> Value {
        json!({"address1": self.address1, "address2": self.address2, "city": self.city,
               "provinceCode": self.province_code, "zip": self.zip, "countryCodeV2": self.country_code})
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LineItem {
    pub id: u64,
    pub sku: String,
    pub quantity: i64,
    pub price: String,
    /// Units already fulfilled (the fulfilment order's line keeps `quantity − fulfilled`).
    pub fulfilled: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Order {
    pub id: u64,
    pub name: String,
    pub email: Option<String>,
    pub note: Option<String>,
    pub tags: Vec<String>,
    pub custom_attributes: Vec<(String, String)>,
    pub closed: bool,
    pub cancelled: bool,
    pub financial_status: String,
    /// `UNFULFILLED` or `FULFILLED`.
    pub fulfillment_status: String,
    pub line_items: Vec<LineItem>,
    pub fulfillment_order_id: u64,
    pub customer_id: Option<u64>,
    /// None for an order without physical goods to ship.
    pub shipping_address: Option<ShippingAddress>,
    pub refunds: Vec<Refund>,
    pub created_at: String,
    pub updated_at: String,
}

/// A refund of an order (money only: the emulator does not restock).
#[derive(Clone, Debug, Serialize)]
pub struct Refund {
    pub id: u64,
    pub amount: String,
    pub created_at: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Customer {
    pub id: u64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub note: Option<String>,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tracking {
    pub number: Option<String>,
    pub company: Option<String>,
    pub url: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fulfillment {
    pub id: u64,
    pub order_id: u64,
    /// Line item id and units this fulfilment shipped.
    pub lines: Vec<(u64, i64)>,
    pub status: String,
    pub tracking: Vec<Tracking>,
    pub notify_customer: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// One applied inventory quantity change, in the order the shop applied them (Shopify's
/// inventory adjustment history): tests read one level's writes in order from it.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryChange {
    pub item: u64,
    pub location: u64,
    /// `available` or `on_hand`.
    pub name: String,
    pub delta: i64,
    pub quantity_after: i64,
    /// The mutation's `referenceDocumentUri`, if it sent one.
    pub reference_document_uri: Option<String>,
}

/// A stored `@idempotent` result: the field's payload, answered again under whatever alias
/// a later document gives the field, and the field and arguments it was stored for (a
/// repeat with other parameters is refused).
#[derive(Clone, Debug)]
pub(crate) struct IdempotentResult {
    pub field: String,
    pub args: serde_json::Map<String, Value>,
    pub payload: Value,
    pub replays: u64,
}

/// Everything the shop holds. Reach it with `Shopify::with_state`.
#[derive(Default)]
pub struct ShopState {
    next_id: u64,
    pub products: BTreeMap<u64, Product>,
    pub variants: BTreeMap<u64, Variant>,
    pub locations: BTreeMap<u64, Location>,
    /// Keyed by (inventory item id, location id).
    pub inventory: BTreeMap<(u64, u64), InventoryLevel>,
    pub orders: BTreeMap<u64, Order>,
    pub customers: BTreeMap<u64, Customer>,
    pub fulfillments: BTreeMap<u64, Fulfillment>,
    /// Applied side effects per entity GID (a replayed idempotent request adds nothing). A
    /// hash map: inventory level GIDs share a long prefix, which made every ordered lookup
    /// compare it again and again (a sixth of the emulator's CPU in the sinks benchmark).
    pub entity_writes: HashMap<String, u64>,
    /// How often each idempotency key's side effect was applied (must stay 1). A hash map:
    /// it holds a key per event (100,000 in the sinks benchmark).
    pub idempotent_applies: HashMap<String, u64>,
    pub(crate) idempotency: HashMap<String, IdempotentResult>,
    /// Every applied inventory change, in order (replayed idempotent requests add nothing).
    pub inventory_history: Vec<InventoryChange>,
    /// THROTTLED answers given by the cost bucket (injected faults are answered by the
    /// middleware and counted in the request log only).
    pub throttled: u64,
}

impl ShopState {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn count_write(&mut self, gid: String) {
        *self.entity_writes.entry(gid).or_default() += 1;
    }

    /// The variant whose inventory item this is. Seeded variants take the id just before
    /// their inventory item's, so that one is looked at first: a scan of every variant per
    /// inventory quantity was the emulator's largest cost in the sinks benchmark (5,000
    /// variants).
    pub fn variant_by_item(&self, item: u64) -> Option<&Variant> {
        item.checked_sub(1)
            .and_then(|id| self.variants.get(&id))
            .filter(|v| v.inventory_item_id == item)
            .or_else(|| self.variants.values().find(|v| v.inventory_item_id == item))
    }

    pub(crate) fn order_by_fulfillment_order(&self, fo: u64) -> Option<u64> {
        self.orders
            .values()
            .find(|o| o.fulfillment_order_id == fo)
            .map(|o| o.id)
    }

    pub(crate) fn touch() -> String {
        now_rfc3339()
    }

    /// GraphQL shape of an order.
    pub fn order_node(&self, o: &Order) -> Value {
        json!({
            "id": gid("Order", o.id), "legacyResourceId": o.id.to_string(), "name": o.name,
            "email": o.email, "note": o.note, "tags": o.tags,
            "customAttributes": o.custom_attributes.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "closed": o.closed, "cancelledAt": if o.cancelled { Some(o.updated_at.clone()) } else { None },
            "displayFinancialStatus": o.financial_status, "displayFulfillmentStatus": o.fulfillment_status,
            "customer": o.customer_id.map(|c| json!({"id": gid("Customer", c)})),
            "shippingAddress": o.shipping_address.as_ref().map(ShippingAddress::node),
            "lineItems": {"nodes": o.line_items.iter().map(|l| json!({
                "id": gid("LineItem", l.id), "sku": l.sku, "quantity": l.quantity,
                "originalUnitPriceSet": {"shopMoney": {"amount": l.price}}})).collect::<Vec<_>>()},
            "fulfillmentOrders": {"nodes": [fulfillment_order_node(o)]},
            "fulfillments": self.fulfillments.values().filter(|f| f.order_id == o.id).map(fulfillment_node).collect::<Vec<_>>(),
            "refunds": o.refunds.iter().map(|r| json!({"id": gid("Refund", r.id), "createdAt": r.created_at,
                "totalRefundedSet": {"shopMoney": {"amount": r.amount, "currencyCode": "EUR"}}})).collect::<Vec<_>>(),
            "createdAt": o.created_at, "updatedAt": o.updated_at,
        })
    }

    /// GraphQL shape of a product with its variants.
    pub fn product_node(&self, p: &Product) -> Value {
        let variants: Vec<Value> = p
            .variant_ids
            .iter()
            .filter_map(|v| self.variants.get(v))
            .map(variant_node)
            .collect();
        json!({"id": gid("Product", p.id), "title": p.title, "variants": {"nodes": variants},
               "createdAt": p.created_at, "updatedAt": p.updated_at})
    }
}

/// GraphQL shape of an order's (single) fulfillment order.
pub fn fulfillment_order_node(o: &Order) -> Value {
    json!({"id": gid("FulfillmentOrder", o.fulfillment_order_id),
        "status": if o.line_items.iter().all(|l| l.fulfilled >= l.quantity) { "CLOSED" } else { "OPEN" },
        "lineItems": {"nodes": o.line_items.iter().map(|l| json!({
            "id": gid("FulfillmentOrderLineItem", l.id), "totalQuantity": l.quantity,
            "remainingQuantity": l.quantity - l.fulfilled,
            "lineItem": {"id": gid("LineItem", l.id), "sku": l.sku}})).collect::<Vec<_>>()}})
}

/// GraphQL shape of an inventory level.
pub fn inventory_level_node(item: u64, location: u64, l: &InventoryLevel) -> Value {
    json!({"id": format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}"),
           "updatedAt": l.updated_at, "item": {"id": gid("InventoryItem", item)},
           "location": {"id": gid("Location", location)},
           "quantities": [{"name": "available", "quantity": l.available}, {"name": "on_hand", "quantity": l.on_hand}]})
}

pub fn variant_node(v: &Variant) -> Value {
    json!({"id": gid("ProductVariant", v.id), "sku": v.sku, "price": v.price,
           "compareAtPrice": v.compare_at_price, "product": {"id": gid("Product", v.product_id)},
           "inventoryItem": {"id": gid("InventoryItem", v.inventory_item_id)}, "updatedAt": v.updated_at})
}

pub fn customer_node(c: &Customer) -> Value {
    json!({"id": gid("Customer", c.id), "email": c.email, "firstName": c.first_name,
           "lastName": c.last_name, "phone": c.phone, "note": c.note, "tags": c.tags,
           "createdAt": c.created_at, "updatedAt": c.updated_at})
}

pub fn fulfillment_node(f: &Fulfillment) -> Value {
    json!({"id": gid("Fulfillment", f.id), "status": f.status,
           "order": {"id": gid("Order", f.order_id)},
           "trackingInfo": f.tracking.iter().map(|t| json!({"number": t.number, "company": t.company, "url": t.url})).collect::<Vec<_>>(),
           "createdAt": f.created_at, "updatedAt": f.updated_at})
}

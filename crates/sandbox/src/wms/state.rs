//! WMS state: fulfilment orders and their lifecycle, stock per SKU, idempotency records.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

/// Order lifecycle: pending → allocated → picked → shipped → delivered, or exception / cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WmsStatus {
    Pending,
    Allocated,
    Picked,
    Shipped,
    Delivered,
    Exception,
    Cancelled,
}

impl WmsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Allocated => "allocated",
            Self::Picked => "picked",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Exception => "exception",
            Self::Cancelled => "cancelled",
        }
    }

    /// May an order move from `self` to `to`?
    pub fn can_move_to(self, to: WmsStatus) -> bool {
        use WmsStatus::*;
        matches!(
            (self, to),
            (Pending, Allocated)
                | (Allocated, Picked)
                | (Allocated, Shipped)
                | (Picked, Shipped)
                | (Shipped, Delivered)
                | (Pending | Allocated | Picked | Shipped, Exception)
                | (Pending | Allocated | Picked | Exception, Cancelled)
                | (Exception, Allocated)
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Shipment {
    pub id: String,
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: String,
    pub status: String,
    /// When the parcel left (RFC 3339): every later webhook of the order carries it, so a
    /// receiver that gets `delivered` before `shipped` still knows when it shipped.
    pub shipped_at: String,
    /// When it arrived, once delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WmsOrder {
    pub id: String,
    pub reference_id: String,
    pub status: WmsStatus,
    pub shipping_method: Option<String>,
    pub recipient: Value,
    pub products: Vec<OrderLine>,
    pub shipments: Vec<Shipment>,
    pub exception_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One stock adjustment applied.
#[derive(Clone, Debug, Serialize)]
pub struct Adjustment {
    pub id: String,
    pub sku: String,
    pub delta: i64,
    pub reason: Option<String>,
    pub on_hand_after: i64,
}

#[derive(Clone, Debug)]
pub(crate) enum Idem {
    InFlight,
    Done {
        fingerprint: String,
        status: u16,
        body: Value,
        replays: u64,
    },
}

#[derive(Default)]
pub struct WmsState {
    next_id: u64,
    pub orders: BTreeMap<String, WmsOrder>,
    pub by_reference: HashMap<String, String>,
    /// On-hand stock per SKU (only SKUs listed here are checked at allocation).
    pub inventory: BTreeMap<String, i64>,
    pub adjustments: Vec<Adjustment>,
    pub(crate) idempotency: HashMap<String, Idem>,
    /// Side effects applied per Idempotency-Key (must stay ≤ 1).
    pub key_applies: BTreeMap<String, u64>,
    /// Orders created per reference_id (must stay ≤ 1).
    pub reference_creates: BTreeMap<String, u64>,
    /// Expected customer returns (RMAs) by WMS id, and their ids by `reference_id`.
    pub returns: BTreeMap<String, WmsReturn>,
    pub returns_by_reference: HashMap<String, String>,
}

/// A customer return the WMS expects (an RMA): `expected` until the goods arrive, then
/// `received` (stock put back).
#[derive(Clone, Debug, Serialize)]
pub struct WmsReturn {
    pub id: String,
    pub reference_id: String,
    /// The order the goods were shipped under, as the client named it.
    pub order_reference: String,
    pub status: String,
    pub products: Vec<OrderLine>,
    pub created_at: String,
    pub updated_at: String,
    pub received_at: Option<String>,
}

impl WmsState {
    pub(crate) fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:06}", self.next_id)
    }
}

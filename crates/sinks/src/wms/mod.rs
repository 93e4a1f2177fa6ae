//! WMS target: fulfilment orders from order events, stock adjustments from inventory levels.
//!
//! ```text
//!  order.placed / line_added ──► lines (and the latest ship-to address) kept in the entity record (KV)
//!  order status in release_statuses ──► POST /orders {reference_id, recipient, products}   Idempotency-Key
//!  order status in cancel_statuses  ──► POST /orders/{id}/cancel                Idempotency-Key
//!  inventory.level_changed at inventory_location ──► POST /inventory/adjustments {sku, delta}
//!  return.created (announce_returns) ──► POST /returns {reference_id, order_reference, products}
//! ```
//!
//! The order id is the WMS `reference_id` (the WMS answers a repeat with the existing order);
//! the `Idempotency-Key` is derived from the event id, so a retry or a redelivery after a
//! crash replays the stored answer instead of acting twice.
//!
//! Every order event before the release may carry the ship-to address; the latest one known
//! is what the release sends. A WMS that refuses the address (422 naming the field) makes
//! the release a dead letter with that reason; the corrected address arrives as a later
//! order event (`order.address_changed`), which releases the order, and the redriven dead
//! letter is then answered "already released" (docs/order-to-cash.md, "Address refusals").

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_config::WmsSinkConfig;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

use crate::http;
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::{ApplyError, SinkError};

mod address;
mod inventory;
mod returns;

use address::ShipTo;

pub struct WmsTarget {
    cfg: WmsSinkConfig,
    api_key: String,
    base: String,
    client: reqwest::Client,
}

/// What the sink keeps per order (`EntityRecord::data`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OrderData {
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    lines: Vec<Line>,
    /// The latest ship-to address of the order's events up to its release; after the
    /// release, the one the WMS has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ship_to: Option<ShipTo>,
    /// The WMS order id once released.
    #[serde(default)]
    wms_id: Option<String>,
    #[serde(default)]
    cancelled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Line {
    line_id: String,
    sku: String,
    quantity: i64,
}

impl WmsTarget {
    pub fn new(cfg: &WmsSinkConfig) -> Result<Self, SinkError> {
        let api_key = cfg
            .api_key
            .resolve()
            .map_err(|e| SinkError::config("sinks.wms.api_key", e.to_string()))?;
        Ok(WmsTarget {
            base: cfg.base_url.trim_end_matches('/').to_string(),
            client: http::client(Duration::from_millis(cfg.delivery.request_timeout_ms))?,
            cfg: cfg.clone(),
            api_key,
        })
    }

    pub fn filter_subjects(cfg: &WmsSinkConfig, prefix: &str) -> Vec<String> {
        let mut out = vec![format!("{prefix}.order.>")];
        if cfg.inventory_location.is_some() {
            out.push(format!("{prefix}.inventory.level_changed"));
            out.push(crate::repair::repair_subject(prefix, "inventory"));
        }
        if cfg.announce_returns {
            out.push(format!("{prefix}.return.created"));
        }
        out
    }

    pub async fn apply(
        &self,
        event: &DomainEvent,
        record: &mut EntityRecord,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        if let Some(Entity::Inventory(level)) = &event.entity {
            return self.adjust_stock(level, record, idempotency_key).await;
        }
        if let Some(Entity::ProductReturn(r)) = &event.entity {
            return self.announce_return(r, record, idempotency_key).await;
        }
        let mut data: OrderData = serde_json::from_value(record.data.clone()).unwrap_or_default();
        let outcome = match &event.entity {
            Some(Entity::OrderLine(line)) => {
                if data.wms_id.is_some() {
                    Outcome::Ignored("line after release")
                } else {
                    let line = Line {
                        line_id: line.line_id.clone(),
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    };
                    // A replayed line replaces itself.
                    data.lines.retain(|l| l.line_id != line.line_id);
                    data.lines.push(line);
                    Outcome::Recorded
                }
            }
            Some(Entity::Order(order)) => {
                if !order.customer_id.is_empty() {
                    data.customer_id = order.customer_id.clone();
                }
                // Not after the release: a redriven (older) event must not overwrite the
                // address the WMS was given.
                if data.wms_id.is_none() {
                    if let Some(ship_to) = ShipTo::of(order.shipping_address.as_deref()) {
                        data.ship_to = Some(ship_to);
                    }
                }
                let status = order.status.as_str();
                // Lines follow their order's `placed` event: an order is released by a later
                // status change, when its lines are known.
                let placed = event.meta.as_ref().is_some_and(|m| m.event == "placed");
                if placed {
                    Outcome::Recorded
                } else if self.cfg.release_statuses.iter().any(|s| s == status) {
                    if data.wms_id.is_some() || data.cancelled {
                        Outcome::Ignored("already released")
                    } else {
                        let id = self.create(&order.order_id, &data, idempotency_key).await?;
                        data.wms_id = Some(id);
                        Outcome::Applied
                    }
                } else if self.cfg.cancel_statuses.iter().any(|s| s == status) {
                    match data.wms_id.clone() {
                        Some(id) if !data.cancelled => {
                            self.cancel(&id, idempotency_key).await?;
                            data.cancelled = true;
                            Outcome::Applied
                        }
                        Some(_) => Outcome::Ignored("already cancelled"),
                        None => {
                            data.cancelled = true;
                            Outcome::Recorded
                        }
                    }
                } else {
                    Outcome::Recorded
                }
            }
            _ => Outcome::Ignored("not an order event"),
        };
        record.data = serde_json::to_value(&data).unwrap_or_default();
        Ok(outcome)
    }

    pub(super) async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: &str,
    ) -> Result<serde_json::Value, ApplyError> {
        http::check_fence(None)?;
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .map_err(http::send_error)?;
        let status = resp.status();
        let retry_after = http::retry_after(&resp);
        let text = resp.text().await.map_err(http::send_error)?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                ApplyError::transient(format!("WMS answered {status} with unreadable JSON: {e}"))
            });
        }
        // 409 is "the same key is still in flight" (retry) unless the order's state forbids it.
        if status == reqwest::StatusCode::CONFLICT && text.contains("still being processed") {
            return Err(ApplyError::Transient {
                reason: "idempotency key in flight".into(),
                retry_after: Some(Duration::from_millis(500)),
                throttled: false,
            });
        }
        Err(http::classify(status, retry_after, &text))
    }

    async fn create(
        &self,
        order_id: &str,
        data: &OrderData,
        key: &str,
    ) -> Result<String, ApplyError> {
        if data.lines.is_empty() {
            return Err(ApplyError::definite(
                "order released without lines",
                format!("order {order_id} has no order.line_added events before its release"),
            ));
        }
        let mut recipient = json!({"customer_id": data.customer_id});
        if let Some(ship_to) = &data.ship_to {
            recipient["address"] = ship_to.json();
        }
        let body = json!({
            "reference_id": order_id,
            "shipping_method": self.cfg.shipping_method,
            "recipient": recipient,
            "products": data.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity})).collect::<Vec<_>>(),
        });
        let answer = self
            .post("/orders", &body, key)
            .await
            .map_err(|e| address::explain_refusal(order_id, e))?;
        answer
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| ApplyError::transient(format!("WMS order answer without id: {answer}")))
    }

    async fn cancel(&self, wms_id: &str, key: &str) -> Result<(), ApplyError> {
        self.post(&format!("/orders/{wms_id}/cancel"), &json!({}), key)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::retail::v1::{Address, EventMeta, Order};

    fn target() -> WmsTarget {
        // Nothing listens there: these events must not reach the WMS.
        let cfg = serde_json::from_value(json!({"base_url": "http://127.0.0.1:9", "api_key": "k"}))
            .unwrap_or_else(|e| panic!("config: {e}"));
        WmsTarget::new(&cfg).unwrap_or_else(|e| panic!("target: {e}"))
    }

    fn order_event(event: &str, status: &str, city: Option<&str>) -> DomainEvent {
        DomainEvent {
            meta: Some(EventMeta {
                event: event.into(),
                ..Default::default()
            }),
            entity: Some(Entity::Order(Order {
                order_id: "SO-W1".into(),
                status: status.into(),
                shipping_address: city.map(|c| {
                    Box::new(Address {
                        lines: vec!["1 Main St".into()],
                        city: c.into(),
                        postal_code: "10115".into(),
                        country: "DE".into(),
                        ..Default::default()
                    })
                }),
                ..Default::default()
            })),
        }
    }

    fn ship_to_city(record: &EntityRecord) -> Option<String> {
        let data: OrderData = serde_json::from_value(record.data.clone()).unwrap_or_default();
        data.ship_to.map(|s| s.city)
    }

    /// The release sends the latest address known; once released, a redriven (older) event
    /// is answered "already released" and leaves the address the WMS was given.
    #[tokio::test]
    async fn the_latest_address_is_kept_until_the_release_and_not_after() {
        let wms = target();
        let mut record = EntityRecord::default();
        let placed = order_event("placed", "placed", Some("Berlim"));
        let out = wms.apply(&placed, &mut record, "k1").await;
        assert!(matches!(out, Ok(Outcome::Recorded)));
        let no_address = order_event("status_changed", "placed", None);
        let out = wms.apply(&no_address, &mut record, "k2").await;
        assert!(matches!(out, Ok(Outcome::Recorded)));
        assert_eq!(ship_to_city(&record).as_deref(), Some("Berlim"));
        let corrected = order_event("address_changed", "placed", Some("Berlin"));
        let out = wms.apply(&corrected, &mut record, "k3").await;
        assert!(matches!(out, Ok(Outcome::Recorded)));
        assert_eq!(ship_to_city(&record).as_deref(), Some("Berlin"));

        // Released (as the WMS answered it): the redriven refused release changes nothing.
        let mut data: OrderData = serde_json::from_value(record.data.clone()).unwrap_or_default();
        data.wms_id = Some("ord_1".into());
        record.data = serde_json::to_value(&data).unwrap_or_default();
        let redriven = order_event("status_changed", "confirmed", Some("Berlim"));
        let out = wms.apply(&redriven, &mut record, "k4").await;
        assert!(matches!(out, Ok(Outcome::Ignored("already released"))));
        assert_eq!(ship_to_city(&record).as_deref(), Some("Berlin"));
    }
}

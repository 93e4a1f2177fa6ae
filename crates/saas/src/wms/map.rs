//! Stored lifecycle webhooks as fulfillment events: the mapping, and the durable consumer
//! that applies it through the domain state.

use super::*;
use tributary_core::{BoxFuture, Component, Failure, RetryPolicy};

/// A lifecycle webhook mapped to a fulfillment (key = the order's `reference_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedWebhook {
    pub key: String,
    pub as_of_micros: i64,
    pub fulfillment: Fulfillment,
}

fn rank(status: &str) -> i64 {
    match status {
        "pending" => 0,
        "allocated" => 1,
        "picked" => 2,
        "shipped" => 3,
        "delivered" => 4,
        "exception" => 5,
        "cancelled" => 6,
        _ => 0,
    }
}

/// Maps a webhook body (`{"id","type","created_at","data":{"order":{…}}}`); `Ok(None)` for
/// event types that are not order lifecycle steps (e.g. `inventory.updated`).
pub fn map_webhook(body: &Value) -> Result<Option<MappedWebhook>, String> {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    if !kind.starts_with("order.") {
        return Ok(None);
    }
    let order = body
        .pointer("/data/order")
        .ok_or("no data.order in the webhook")?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let wms_id = text(order, "id");
    let reference = text(order, "reference_id");
    let key = if reference.is_empty() {
        wms_id.clone()
    } else {
        reference
    };
    if key.is_empty() {
        return Err("the order has neither reference_id nor id".into());
    }
    let status = text(order, "status");
    if status.is_empty() {
        return Err("the order has no status".into());
    }
    let updated = order
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339_micros)
        .or_else(|| {
            body.get("created_at")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339_micros)
        })
        .ok_or("no updated_at / created_at timestamp")?;
    let shipment = order
        .get("shipments")
        .and_then(Value::as_array)
        .and_then(|s| s.last());
    let ship = |k: &str| shipment.map(|s| text(s, k)).unwrap_or_default();
    let lines = order
        .get("products")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| FulfillmentLine {
                    line_id: (i + 1).to_string(),
                    sku: text(p, "sku"),
                    quantity: p.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let fulfillment_id = match ship("id") {
        s if s.is_empty() => format!("WMS-{wms_id}"),
        s => format!("WMS-{s}"),
    };
    let shipped_at_micros = if status == "shipped" { updated } else { 0 };
    Ok(Some(MappedWebhook {
        as_of_micros: updated + rank(&status),
        fulfillment: Fulfillment {
            fulfillment_id,
            order_id: key.clone(),
            lines,
            carrier: ship("carrier"),
            tracking_number: ship("tracking_number"),
            tracking_url: ship("tracking_url"),
            status,
            location: String::new(),
            shipped_at_micros,
        },
        key,
    }))
}

/// The webhook body of a stored message: the JSON change envelope every SaaS feed shares, or
/// the bare body earlier releases stored (still in `SAAS_WMS` after an upgrade).
pub fn stored_webhook(payload: &[u8]) -> Result<Value, String> {
    let envelope = ChangeEvent::decode(payload).ok();
    match envelope.as_ref().and_then(crate::json_change::payload) {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("envelope payload: {e}")),
        None => serde_json::from_slice(payload)
            .map_err(|e| format!("neither a change envelope nor a JSON body: {e}")),
    }
}

pub(super) struct Mapper {
    pub endpoint: Arc<Endpoint>,
    pub feed: Arc<ExternalFeed>,
}

impl Component for Mapper {
    fn name(&self) -> String {
        "wms mapper".into()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move { Ok(self.consume(stop).await?) })
    }
}

impl Mapper {
    /// Maps until `stop`; transient failures restart the consumer (the one supervision
    /// rule: capped backoff, reset after a healthy run), corrupt entity state stops the feed
    /// and with it the bridge.
    pub(super) async fn supervise(self, stop: CancellationToken) -> Result<(), SaasError> {
        Ok(tributary_core::supervise(&self, RetryPolicy::COMPONENT, &stop).await?)
    }

    async fn consume(&self, stop: &CancellationToken) -> Result<(), SaasError> {
        let mut consumer = MappingConsumer::open(
            &self.endpoint.js,
            &self.endpoint.cfg.stream,
            "tributary-wms-webhooks",
            "Tributary WMS webhook → fulfillment mapping",
            format!("{SUBJECT_PREFIX}.>"),
        )
        .await?;
        while let Some(msg) = consumer.next(stop).await? {
            let webhook_id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Webhook-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            match self.handle(&webhook_id, &msg.payload).await {
                Ok(outcome) => {
                    metrics::counter!(DOMAIN_EVENTS, "outcome" => outcome).increment(1);
                    msg.ack().await.map_err(|e| SaasError::nats("ack", e))?
                }
                Err(e) => {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Maps one stored webhook; Err only for transient failures (redelivered).
    async fn handle(&self, webhook_id: &str, payload: &[u8]) -> Result<&'static str, SaasError> {
        let mapped = stored_webhook(payload).and_then(|v| map_webhook(&v));
        let mapped = match mapped {
            Ok(Some(m)) => m,
            Ok(None) => return Ok("ignored"),
            Err(reason) => {
                crate::dead_letter::park(
                    &self.endpoint.js,
                    "wms",
                    MAPPING,
                    &format!("wms:{webhook_id}"),
                    payload,
                    &reason,
                )
                .await?;
                return Ok("dead_letter");
            }
        };
        let system = self.endpoint.cfg.system.clone();
        let event = ExternalEvent {
            entity: "fulfillment".into(),
            event: "updated".into(),
            event_id: format!("wms:{}@{}/{MAPPING}", mapped.key, mapped.as_of_micros),
            key: mapped.key,
            feed: "wms".into(),
            as_of_micros: mapped.as_of_micros,
            mapping: MAPPING.into(),
            source_ref: SourceRef {
                source: system.clone(),
                event_id: format!("wms:{webhook_id}"),
                commit_lsn: 0,
                ordinal: 0,
                origin: "webhook".into(),
                feed_position: format!("webhook:{webhook_id}"),
            },
            system,
            body: Entity::Fulfillment(mapped.fulfillment),
        };
        Ok(match self.feed.apply(&event).await? {
            Applied::Published(_) => "published",
            Applied::Stale => "stale",
            Applied::Repeated => "repeated",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_webhooks_are_read_from_the_envelope_or_the_old_bare_body() -> Result<(), String> {
        let body = r#"{"id":"evt_1","type":"order.shipped"}"#;
        let envelope = JsonChange {
            event_id: "wms:m1".into(),
            source: "wms",
            database: "",
            schema: "wms",
            table: "order.shipped",
            op: Operation::Update,
            payload: body.into(),
            commit_micros: 1,
            origin: "webhook:m1".into(),
        }
        .into_event()
        .encode_to_vec();
        let expected: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        assert_eq!(stored_webhook(&envelope)?, expected);
        assert_eq!(stored_webhook(body.as_bytes())?, expected);
        assert!(stored_webhook(b"\x08\x01 not json").is_err());
        Ok(())
    }

    #[test]
    fn maps_shipped_and_orders_steps() -> Result<(), String> {
        let body = |status: &str, ts: &str| {
            serde_json::json!({"id": "evt_1", "type": format!("order.{status}"), "created_at": ts,
                "data": {"order": {"id": "wms_1", "reference_id": "SO-1", "status": status,
                "updated_at": ts, "products": [{"sku": "SKU-1", "quantity": 2}],
                "shipments": [{"id": "shp_9", "carrier": "UPS", "tracking_number": "1Z9",
                "tracking_url": "https://t/1Z9", "status": "in_transit"}]}}})
        };
        let shipped =
            map_webhook(&body("shipped", "2026-01-01T00:00:00.000Z"))?.ok_or("not mapped")?;
        assert_eq!(shipped.key, "SO-1");
        assert_eq!(shipped.fulfillment.tracking_number, "1Z9");
        assert_eq!(shipped.fulfillment.carrier, "UPS");
        assert_eq!(shipped.fulfillment.lines.len(), 1);
        let allocated =
            map_webhook(&body("allocated", "2026-01-01T00:00:00.000Z"))?.ok_or("not mapped")?;
        assert!(allocated.as_of_micros < shipped.as_of_micros);
        assert!(map_webhook(&serde_json::json!({"type": "inventory.updated"}))?.is_none());
        Ok(())
    }
}

//! Stored lifecycle webhooks as domain events (order steps → fulfillments, received returns →
//! returns): the mapping, and the durable consumer that applies it through the domain state.

use super::*;

/// A webhook mapped to a domain entity: an order step to a fulfillment (key = the order's
/// `reference_id`), a received return to the return (key = the return's `reference_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedWebhook {
    pub key: String,
    pub as_of_micros: i64,
    /// Subject tokens and the mapping name (event ids, feed positions).
    pub entity: &'static str,
    pub event: &'static str,
    pub mapping: &'static str,
    pub body: Entity,
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

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The object's `updated_at`, else the webhook's `created_at`.
fn updated_micros(body: &Value, object: &Value) -> Result<i64, String> {
    object
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339_micros)
        .or_else(|| {
            body.get("created_at")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339_micros)
        })
        .ok_or_else(|| "no updated_at / created_at timestamp".to_string())
}

/// The `reference_id` the client gave, else the WMS's own id.
fn key_of(object: &Value, what: &str) -> Result<String, String> {
    let reference = text(object, "reference_id");
    let key = if reference.is_empty() {
        text(object, "id")
    } else {
        reference
    };
    if key.is_empty() {
        return Err(format!("the {what} has neither reference_id nor id"));
    }
    Ok(key)
}

/// Maps a webhook body (`{"id","type","created_at","data":{"order"|"return":{…}}}`);
/// `Ok(None)` for event types that map to nothing (e.g. `inventory.updated`).
pub fn map_webhook(body: &Value) -> Result<Option<MappedWebhook>, String> {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "return.received" {
        return map_return(body).map(Some);
    }
    if !kind.starts_with("order.") {
        return Ok(None);
    }
    let order = body
        .pointer("/data/order")
        .ok_or("no data.order in the webhook")?;
    let wms_id = text(order, "id");
    let key = key_of(order, "order")?;
    let status = text(order, "status");
    if status.is_empty() {
        return Err("the order has no status".into());
    }
    let updated = updated_micros(body, order)?;
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
    // The shipment's own time when the WMS gives one (a `delivered` webhook can overtake the
    // `shipped` one; it still says when the parcel left), else the `shipped` webhook's time.
    let shipped_at_micros = match ship("shipped_at") {
        s if !s.is_empty() => parse_rfc3339_micros(&s)
            .ok_or_else(|| format!("shipment shipped_at {s:?} is not an RFC 3339 time"))?,
        _ if status == "shipped" => updated,
        _ => 0,
    };
    Ok(Some(MappedWebhook {
        as_of_micros: updated + rank(&status),
        entity: "fulfillment",
        event: "updated",
        mapping: MAPPING,
        body: Entity::Fulfillment(Fulfillment {
            fulfillment_id,
            order_id: key.clone(),
            lines,
            carrier: ship("carrier"),
            tracking_number: ship("tracking_number"),
            tracking_url: ship("tracking_url"),
            status,
            location: String::new(),
            shipped_at_micros,
        }),
        key,
    }))
}

/// `return.received`: the goods of an announced return arrived (`retail.v1.return.received`,
/// state `received`, with the units the warehouse counted).
fn map_return(body: &Value) -> Result<MappedWebhook, String> {
    let rma = body
        .pointer("/data/return")
        .ok_or("no data.return in the webhook")?;
    let key = key_of(rma, "return")?;
    let updated = updated_micros(body, rma)?;
    let lines: Vec<ReturnLine> = rma
        .get("products")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| ReturnLine {
                    line_id: (i + 1).to_string(),
                    sku: text(p, "sku"),
                    quantity: p.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                    reason: String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (sku, quantity) = match lines.as_slice() {
        [one] => (one.sku.clone(), one.quantity),
        _ => (String::new(), 0),
    };
    Ok(MappedWebhook {
        as_of_micros: updated,
        entity: "return",
        event: "received",
        mapping: RETURN_MAPPING,
        body: Entity::ProductReturn(Return {
            return_id: key.clone(),
            order_id: text(rma, "order_reference"),
            lines,
            state: "received".into(),
            sku,
            quantity,
            ..Default::default()
        }),
        key,
    })
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

/// The mapping consumer of the stored webhooks: a component (restarted by the runtime's
/// supervision; under `[ha]` a unit owned by one replica).
pub(super) struct Mapper {
    pub endpoint: Arc<Endpoint>,
    pub feed: Arc<ExternalFeed>,
    /// Under `[ha]`: checked before each webhook is mapped and before its ack.
    pub fence: tributary_core::FenceCell,
}

impl tributary_core::Component for Mapper {
    fn name(&self) -> String {
        "wms mapper".to_string()
    }

    fn run<'a>(
        &'a self,
        stop: &'a CancellationToken,
    ) -> tributary_core::BoxFuture<'a, Result<(), tributary_core::Failure>> {
        Box::pin(tracing::Instrument::instrument(
            async move { Ok(self.consume(stop).await?) },
            tracing::info_span!("wms_mapper"),
        ))
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

impl Mapper {
    async fn consume(&self, stop: &CancellationToken) -> Result<(), SaasError> {
        let mut consumer = MappingConsumer::open(
            &self.endpoint.js,
            &self.endpoint.cfg.stream,
            "tributary-wms-webhooks",
            "Tributary WMS webhook → fulfillment mapping",
            format!("{SUBJECT_PREFIX}.>"),
        )
        .await?;
        let fence = self.fence.get();
        while let Some(msg) = consumer.next(stop).await? {
            fence.check()?;
            let webhook_id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Webhook-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            match self.handle(&webhook_id, &msg.payload).await {
                Ok(outcome) => {
                    metrics::counter!(DOMAIN_EVENTS, "outcome" => outcome).increment(1);
                    fence.check()?;
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
            entity: mapped.entity.into(),
            event: mapped.event.into(),
            event_id: format!(
                "wms:{}@{}/{}",
                mapped.key, mapped.as_of_micros, mapped.mapping
            ),
            key: mapped.key,
            feed: "wms".into(),
            as_of_micros: mapped.as_of_micros,
            mapping: mapped.mapping.into(),
            source_ref: SourceRef {
                source: system.clone(),
                event_id: format!("wms:{webhook_id}"),
                commit_lsn: 0,
                ordinal: 0,
                origin: "webhook".into(),
                feed_position: format!("webhook:{webhook_id}"),
            },
            system,
            body: mapped.body,
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
        let Entity::Fulfillment(f) = &shipped.body else {
            return Err(format!("not a fulfillment: {shipped:?}"));
        };
        assert_eq!(f.tracking_number, "1Z9");
        assert_eq!(f.carrier, "UPS");
        assert_eq!(f.lines.len(), 1);
        let allocated =
            map_webhook(&body("allocated", "2026-01-01T00:00:00.000Z"))?.ok_or("not mapped")?;
        assert!(allocated.as_of_micros < shipped.as_of_micros);
        assert!(map_webhook(&serde_json::json!({"type": "inventory.updated"}))?.is_none());
        // A `delivered` webhook names the shipment's own time, which the `shipped` one had.
        let mut late = body("delivered", "2026-01-01T00:00:05.000Z");
        late["data"]["order"]["shipments"][0]["shipped_at"] = "2026-01-01T00:00:00.000Z".into();
        let delivered = map_webhook(&late)?.ok_or("not mapped")?;
        let (Entity::Fulfillment(d), Entity::Fulfillment(s)) = (&delivered.body, &shipped.body)
        else {
            return Err("not fulfillments".into());
        };
        assert_eq!(d.shipped_at_micros, s.shipped_at_micros);
        late["data"]["order"]["shipments"][0]["shipped_at"] = "yesterday".into();
        assert!(map_webhook(&late).is_err());
        Ok(())
    }

    #[test]
    fn maps_a_received_return_to_the_return_it_announced() -> Result<(), String> {
        let body = serde_json::json!({"id": "evt_2", "type": "return.received",
            "created_at": "2026-01-01T00:00:01.000Z",
            "data": {"return": {"id": "rma_1", "reference_id": "RT-7", "order_reference": "SO-1",
            "status": "received", "updated_at": "2026-01-01T00:00:00.500Z",
            "products": [{"sku": "SKU-1", "quantity": 2}]}}});
        let m = map_webhook(&body)?.ok_or("not mapped")?;
        assert_eq!(
            (m.key.as_str(), m.entity, m.event),
            ("RT-7", "return", "received")
        );
        let Entity::ProductReturn(r) = &m.body else {
            return Err(format!("not a return: {m:?}"));
        };
        assert_eq!(
            (r.order_id.as_str(), r.state.as_str()),
            ("SO-1", "received")
        );
        assert_eq!((r.sku.as_str(), r.quantity), ("SKU-1", 2));
        assert_ne!(m.mapping, MAPPING);
        let no_key = serde_json::json!({"type": "return.received", "created_at": "2026-01-01T00:00:00Z",
            "data": {"return": {"status": "received"}}});
        assert!(map_webhook(&no_key).is_err());
        Ok(())
    }
}

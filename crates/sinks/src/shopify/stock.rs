//! Inventory levels in batches: the levels that lanes set at the same time go out as one
//! GraphQL document of aliased `inventorySetQuantities` fields, one per event, each with the
//! event's own `@idempotent` key.
//!
//! ```text
//!  lanes ─► batcher (≤ batch_size, batch_linger_ms; crate::batch) ─► one document:
//!     mutation SetStock($i0: …, $i1: …) {
//!       m0: inventorySetQuantities(input: $i0) @idempotent(key: "<key of event 0>") { … }
//!       m1: inventorySetQuantities(input: $i1) @idempotent(key: "<key of event 1>") { … } }
//!     ◄── data.m0, data.m1 (userErrors), errors[path = [mN]] ── each lane gets its field's
//! ```
//!
//! Why one field per event rather than one field with many quantities: Shopify keeps one
//! result per idempotency key. With a field per event, a redelivered or replayed event is
//! answered from the store under its own key whatever document it travels in, and one
//! event's `userErrors` refuse that event only. A field's input depends on its event alone,
//! so the same key always comes with the same parameters (no
//! `IDEMPOTENCY_KEY_PARAMETER_MISMATCH` when a replay groups events differently).
//!
//! The cost bucket charges the document as a whole (10 points per field; a batch is split
//! into documents of at most half the bucket's maximum); THROTTLED, an
//! HTTP error or no answer fails every field of it (transient: each lane retries its event,
//! which joins a later document). A document refused as a whole (a GraphQL error without a
//! field path) is sent again field by field, so only the offending event is parked.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tributary_config::ShopifySinkConfig;

use super::{graphql_error, quoted, user_errors, Api, MUTATION_COST};
use crate::batch::{BatchOptions, BatchSend, Batcher};
use crate::{http, metrics as m, ApplyError};

/// Documents in flight at once while the next one gathers.
const MAX_CONCURRENT_REQUESTS: usize = 4;

/// One inventory level to set, with the event it comes from.
#[derive(Clone, Debug)]
pub(super) struct StockWrite {
    pub item: String,
    pub location: String,
    pub quantity: i64,
    pub event_id: String,
    /// The event's idempotency key.
    pub key: String,
}

pub(super) fn batcher(api: Arc<Api>, cfg: &ShopifySinkConfig) -> Batcher<StockWrite> {
    Batcher::spawn(
        api,
        BatchOptions {
            sink: "shopify",
            size: cfg.batch_size,
            linger: Duration::from_millis(cfg.batch_linger_ms),
            concurrency: MAX_CONCURRENT_REQUESTS,
            queue: cfg.batch_size.max(cfg.delivery.lanes) * 2,
        },
    )
}

impl Api {
    /// The `InventorySetQuantitiesInput` of one level: absolute (the ERP owns stock,
    /// `changeFromQuantity: null`), referencing its event.
    fn stock_input(&self, w: &StockWrite) -> Value {
        json!({
            "name": self.quantity_name,
            "reason": "correction",
            "referenceDocumentUri": format!("tributary://event/{}", w.event_id),
            "quantities": [{"inventoryItemId": w.item, "locationId": w.location, "quantity": w.quantity, "changeFromQuantity": null}],
        })
    }

    /// One level in a document of its own (`batch_size = 1`, and the re-sending of a
    /// document refused as a whole).
    pub(super) async fn set_stock_alone(&self, w: &StockWrite) -> Result<(), ApplyError> {
        let query = format!(
            "mutation SetStock($input: InventorySetQuantitiesInput!) {{ inventorySetQuantities(input: $input) @idempotent(key: {}) {{ inventoryAdjustmentGroup {{ id }} userErrors {{ field message code }} }} }}",
            quoted(&w.key)
        );
        let data = self
            .graphql(&query, json!({"input": self.stock_input(w)}), MUTATION_COST)
            .await?;
        user_errors(&data["inventorySetQuantities"])
    }

    /// Several levels in documents of aliased fields; one result per level, in order.
    async fn set_stock_many(&self, writes: &[StockWrite]) -> Vec<Result<(), ApplyError>> {
        let mut out = Vec::with_capacity(writes.len());
        for chunk in writes.chunks(self.fields_per_document()) {
            out.extend(self.set_stock_document(chunk).await);
        }
        out
    }

    /// Fields one document may carry: at most half the cost bucket (as last reported). A
    /// document dearer than the bucket would be THROTTLED however long the sink waited, and
    /// one that needs the whole bucket leaves the pacing estimate no room for error.
    fn fields_per_document(&self) -> usize {
        let pacer = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        match pacer.bucket {
            Some(b) if b.maximum > 0.0 => ((b.maximum / 2.0 / MUTATION_COST) as usize).max(1),
            _ => usize::MAX,
        }
    }

    /// One document of aliased fields; one result per level, in order.
    async fn set_stock_document(&self, writes: &[StockWrite]) -> Vec<Result<(), ApplyError>> {
        if let [one] = writes {
            return vec![self.set_stock_alone(one).await];
        }
        let mut definitions = Vec::with_capacity(writes.len());
        let mut fields = String::new();
        let mut variables = Map::new();
        for (i, w) in writes.iter().enumerate() {
            definitions.push(format!("$i{i}: InventorySetQuantitiesInput!"));
            fields.push_str(&format!(
                " m{i}: inventorySetQuantities(input: $i{i}) @idempotent(key: {}) {{ inventoryAdjustmentGroup {{ id }} userErrors {{ field message code }} }}",
                quoted(&w.key)
            ));
            variables.insert(format!("i{i}"), self.stock_input(w));
        }
        let query = format!(
            "mutation SetStock({}) {{{fields} }}",
            definitions.join(", ")
        );
        metrics::histogram!(m::SHOPIFY_STOCK_BATCH, "sink" => "shopify")
            .record(writes.len() as f64);
        let cost = MUTATION_COST * writes.len() as f64;
        let body = match self.request(&query, Value::Object(variables), cost).await {
            Ok(body) => body,
            Err(e) => return vec![Err(e); writes.len()],
        };
        match field_results(&body, writes.len()) {
            Some(results) => results,
            None => {
                tracing::warn!(
                    errors = %http::truncate(&body["errors"].to_string(), 300),
                    fields = writes.len(),
                    "inventory document refused as a whole; sending its levels one by one"
                );
                let mut out = Vec::with_capacity(writes.len());
                for w in writes {
                    out.push(self.set_stock_alone(w).await);
                }
                out
            }
        }
    }
}

/// Each field's result of an aliased document's answer: its `errors` entry (by `path`), else
/// its payload's `userErrors`. `None` when the document was refused as a whole (an error
/// that names no field of it, or neither `data` nor errors).
fn field_results(body: &Value, n: usize) -> Option<Vec<Result<(), ApplyError>>> {
    let errors = body["errors"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let field_of = |e: &Value| {
        e["path"][0]
            .as_str()
            .and_then(|alias| alias.strip_prefix('m'))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < n)
    };
    let no_answer = errors.is_empty() && !body["data"].is_object();
    if no_answer || errors.iter().any(|e| field_of(e).is_none()) {
        return None;
    }
    let results = (0..n)
        .map(|i| {
            if let Some(error) = errors.iter().find(|e| field_of(e) == Some(i)) {
                return Err(graphql_error(error, error));
            }
            let payload = &body["data"][format!("m{i}")];
            if payload.is_object() {
                user_errors(payload)
            } else {
                Err(ApplyError::transient(format!(
                    "no answer for field m{i} of the inventory document"
                )))
            }
        })
        .collect();
    Some(results)
}

impl BatchSend for Api {
    type Item = StockWrite;

    fn group(&self, _item: &StockWrite) -> &'static str {
        "inventory"
    }

    async fn send(&self, items: Vec<StockWrite>) -> Vec<Result<(), ApplyError>> {
        self.set_stock_many(&items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_results_map_each_alias_to_its_event() {
        let body = json!({
            "data": {
                "m0": {"inventoryAdjustmentGroup": {"id": "x"}, "userErrors": []},
                "m1": {"inventoryAdjustmentGroup": null, "userErrors": [{"field": ["input"], "message": "The specified inventory item could not be found.", "code": "INVALID_INVENTORY_ITEM"}]},
                "m2": null,
                "m3": {"inventoryAdjustmentGroup": {"id": "y"}, "userErrors": []},
            },
            "errors": [{"message": "The same idempotency key was used with different parameters.", "path": ["m2"], "extensions": {"code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"}}],
        });
        let r = field_results(&body, 4).expect("per field");
        assert!(r[0].is_ok());
        assert!(
            matches!(&r[1], Err(ApplyError::Definite { reason, .. }) if reason.contains("could not be found"))
        );
        assert!(
            matches!(&r[2], Err(ApplyError::Definite { reason, .. }) if reason.starts_with("IDEMPOTENCY_KEY_PARAMETER_MISMATCH"))
        );
        assert!(r[3].is_ok());

        // A field without an answer is retried; errors without a field path refuse the
        // document as a whole.
        let r = field_results(&json!({"data": {"m0": {"userErrors": []}}}), 2).expect("per field");
        assert!(r[0].is_ok() && matches!(r[1], Err(ApplyError::Transient { .. })));
        assert!(field_results(
            &json!({"errors": [{"message": "Parse error", "extensions": {"code": "PARSE_ERROR"}}]}),
            2
        )
        .is_none());
        assert!(field_results(
            &json!({"data": {"m0": null}, "errors": [{"message": "x", "path": ["other"]}]}),
            1
        )
        .is_none());
        assert!(field_results(&json!({}), 1).is_none());
        // Every field failed (the emulator then leaves `data` out): still per field.
        let r = field_results(
            &json!({"errors": [{"message": "x", "path": ["m0"], "extensions": {"code": "IDEMPOTENCY_CONCURRENT_REQUEST"}},
                               {"message": "y", "path": ["m1"], "extensions": {"code": "INVALID_VARIABLE"}}]}),
            2,
        )
        .expect("per field");
        assert!(matches!(r[0], Err(ApplyError::Transient { .. })));
        assert!(matches!(r[1], Err(ApplyError::Definite { .. })));
    }
}

//! The ERP's customer returns as expected receipts in the warehouse: `POST /returns` with the
//! return id as `reference_id` (the WMS answers a repeat with the existing RMA), so that the
//! goods are received against it and `return.received` comes back through the `[[wms]]` feed.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_proto::retail::v1::Return as ProductReturn;

use super::WmsTarget;
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::ApplyError;

/// What the sink keeps per return (`EntityRecord::data`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ReturnData {
    /// The WMS's RMA id once announced.
    #[serde(default)]
    rma_id: Option<String>,
}

/// The units a return brings back: its lines, or the single-line fields the ERP fills.
fn products(r: &ProductReturn) -> Vec<serde_json::Value> {
    if r.lines.is_empty() {
        return vec![json!({"sku": r.sku, "quantity": r.quantity})];
    }
    r.lines
        .iter()
        .map(|l| json!({"sku": l.sku, "quantity": l.quantity}))
        .collect()
}

impl WmsTarget {
    pub(super) async fn announce_return(
        &self,
        r: &ProductReturn,
        record: &mut EntityRecord,
        key: &str,
    ) -> Result<Outcome, ApplyError> {
        let mut data: ReturnData = serde_json::from_value(record.data.clone()).unwrap_or_default();
        if data.rma_id.is_some() {
            return Ok(Outcome::Ignored("return already announced"));
        }
        if !matches!(r.state.as_str(), "requested" | "approved" | "") {
            return Ok(Outcome::Ignored("return not awaiting goods"));
        }
        let body = json!({
            "reference_id": r.return_id,
            "order_reference": r.order_id,
            "reason": r.reason,
            "products": products(r),
        });
        // A return the WMS refuses (no SKU, quantity 0) is a definite error: dead-lettered
        // with the WMS's field errors.
        let answer = self.post("/returns", &body, key).await?;
        let id = answer.get("id").and_then(|v| v.as_str()).ok_or_else(|| {
            ApplyError::transient(format!("WMS return answer without id: {answer}"))
        })?;
        data.rma_id = Some(id.to_string());
        record.data = serde_json::to_value(&data).unwrap_or_default();
        Ok(Outcome::Applied)
    }
}

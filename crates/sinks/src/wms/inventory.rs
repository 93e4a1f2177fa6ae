//! Stock adjustments: the WMS takes differences, not levels. The entity record keeps the
//! on-hand level last sent for the SKU at this warehouse; the first level of a SKU is
//! compared with the WMS's own count, so the first adjustment aligns the two.

use std::time::Duration;

use serde_json::json;
use tributary_proto::retail::v1::InventoryLevel;

use super::WmsTarget;
use crate::http;
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::ApplyError;

/// `reporting_system` of levels the WMS itself reported: sending them back would echo.
const WMS_SYSTEM: &str = "wms";

impl WmsTarget {
    pub(super) async fn adjust_stock(
        &self,
        level: &InventoryLevel,
        record: &mut EntityRecord,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        if self.cfg.inventory_location.as_deref() != Some(level.location.as_str()) {
            return Ok(Outcome::Ignored("other location"));
        }
        if level.reporting_system == WMS_SYSTEM {
            return Ok(Outcome::Ignored("reported by the WMS"));
        }
        if level.sku.is_empty() {
            return Err(ApplyError::definite(
                "inventory level without a SKU",
                "the event carries no inventory.sku",
            ));
        }
        let sent = match record.data["on_hand"].as_i64() {
            Some(n) => n,
            None => self.stock(&level.sku).await?,
        };
        let delta = level.on_hand - sent;
        if delta != 0 {
            self.post(
                "/inventory/adjustments",
                &json!({"sku": level.sku, "delta": delta, "reason": "erp stock change"}),
                idempotency_key,
            )
            .await?;
        }
        record.data = json!({"on_hand": level.on_hand});
        Ok(if delta == 0 {
            Outcome::Recorded
        } else {
            Outcome::Applied
        })
    }

    /// The WMS's on-hand count of a SKU (0 if it does not stock it yet).
    async fn stock(&self, sku: &str) -> Result<i64, ApplyError> {
        let resp = self
            .client
            .get(format!("{}/inventory", self.base))
            .query(&[("sku", sku)])
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(http::send_error)?;
        let status = resp.status();
        let retry_after = http::retry_after(&resp);
        let text = resp.text().await.map_err(http::send_error)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(0);
        }
        if !status.is_success() {
            return Err(http::classify(status, retry_after, &text));
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ApplyError::Transient {
                reason: format!("WMS answered {status} with unreadable JSON: {e}"),
                retry_after: Some(Duration::from_millis(500)),
                throttled: false,
            })?;
        Ok(v["on_hand"].as_i64().unwrap_or(0))
    }
}

//! Stock adjustments: the WMS takes differences, not levels. The entity record keeps the
//! on-hand level last sent for the SKU at this warehouse; the first level of a SKU is
//! compared with the WMS's own count, so the first adjustment aligns the two; so is the level
//! of a repair (crate::repair), which the WMS's adjustment log shows with its reason.

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
        // A repair (record.last_repair set by the worker) aligns with what the WMS counts
        // now, which is what drifted from the level last sent.
        let sent = match (record.data["on_hand"].as_i64(), &record.last_repair) {
            (Some(n), None) => n,
            _ => self.stock(&level.sku).await?,
        };
        let delta = level.on_hand - sent;
        if delta != 0 {
            let reason = match &record.last_repair {
                Some(why) => format!("tributary repair: {why}"),
                None => "erp stock change".to_string(),
            };
            self.post(
                "/inventory/adjustments",
                &json!({"sku": level.sku, "delta": delta, "reason": reason}),
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

    /// One page (1-based) of the WMS's stock, `(sku, on_hand)`, and the next page if any:
    /// what the inventory reconciliation reads.
    pub(crate) async fn stock_page(
        &self,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<(String, i64)>, Option<u32>), ApplyError> {
        let v = self
            .get_json(&[("page", page.to_string()), ("limit", limit.to_string())])
            .await?
            .unwrap_or_default();
        let rows = v["inventory"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["sku"].as_str()?.to_string(), r["on_hand"].as_i64()?)))
            .collect();
        let next = v["next_page"].as_u64().and_then(|n| u32::try_from(n).ok());
        Ok((rows, next))
    }

    /// The WMS's on-hand count of a SKU (0 if it does not stock it yet).
    async fn stock(&self, sku: &str) -> Result<i64, ApplyError> {
        let v = self.get_json(&[("sku", sku.to_string())]).await?;
        Ok(v.and_then(|v| v["on_hand"].as_i64()).unwrap_or(0))
    }

    /// `GET /inventory` with `query`; None on 404 (a SKU the WMS does not stock).
    async fn get_json(
        &self,
        query: &[(&str, String)],
    ) -> Result<Option<serde_json::Value>, ApplyError> {
        // A deposed owner sends nothing to the target, reads included: its answer would
        // decide a write the new owner makes (tests/ha_sinks.rs counts every request).
        http::check_fence(None)?;
        let resp = self
            .client
            .get(format!("{}/inventory", self.base))
            .query(query)
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(http::send_error)?;
        let status = resp.status();
        let retry_after = http::retry_after(&resp);
        let text = resp.text().await.map_err(http::send_error)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
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
        Ok(Some(v))
    }
}

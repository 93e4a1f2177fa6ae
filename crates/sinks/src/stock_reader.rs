//! The targets' stock as the sinks see it, for the inventory reconciliation
//! (`tributary_reconcile`): the same endpoints, credentials and location mapping the WMS and
//! Shopify sinks use, read-only.

use std::collections::BTreeMap;

use tributary_config::SinksConfig;
use tributary_proto::retail::v1::InventoryLevel;

use crate::shopify::ShopifyTarget;
use crate::state::StateStore;
use crate::wms::WmsTarget;
use crate::{ApplyError, SinkError};

pub struct StockReader {
    wms: Option<(WmsTarget, String)>,
    shopify: Option<ShopifyTarget>,
}

impl StockReader {
    /// The targets of `cfg` that hold stock: the WMS sink with an `inventory_location`, the
    /// Shopify sink applying `inventory`.
    pub fn new(cfg: &SinksConfig, state: StateStore) -> Result<StockReader, SinkError> {
        let wms = match &cfg.wms {
            Some(w) => match &w.inventory_location {
                Some(location) => Some((WmsTarget::new(w)?, location.clone())),
                None => None,
            },
            None => None,
        };
        let shopify = match &cfg.shopify {
            Some(s) if s.apply.iter().any(|a| a == "inventory") => {
                Some(ShopifyTarget::new(s, state, Vec::new())?)
            }
            _ => None,
        };
        Ok(StockReader { wms, shopify })
    }

    /// The location whose stock the WMS holds, if the WMS sink applies stock.
    pub fn wms_location(&self) -> Option<&str> {
        self.wms.as_ref().map(|(_, l)| l.as_str())
    }

    /// The location codes Shopify holds stock for (empty without inventory in Shopify).
    pub fn shopify_locations(&self) -> Vec<String> {
        self.shopify
            .as_ref()
            .map(ShopifyTarget::location_codes)
            .unwrap_or_default()
    }

    /// One page (1-based) of the WMS's stock and the next page, if any.
    pub async fn wms_page(
        &self,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<(String, i64)>, Option<u32>), ApplyError> {
        match &self.wms {
            Some((t, _)) => t.stock_page(page, limit).await,
            None => Ok((Vec::new(), None)),
        }
    }

    /// Shopify's levels at location `code`, by SKU, in the sink's quantity.
    pub async fn shopify_levels(
        &self,
        code: &str,
        page_size: u32,
    ) -> Result<BTreeMap<String, i64>, ApplyError> {
        match &self.shopify {
            Some(t) => t.levels_at(code, page_size).await,
            None => Ok(BTreeMap::new()),
        }
    }

    /// The quantity the Shopify sink sets for `level` (what Shopify should show).
    pub fn shopify_quantity(&self, level: &InventoryLevel) -> i64 {
        self.shopify
            .as_ref()
            .map_or(level.on_hand, |t| t.quantity_of(level))
    }
}

//! Reading stock back for the inventory reconciliation: the levels at one location, paged
//! through the location's `inventoryLevels` connection, keyed by SKU (from the products
//! connection), in the quantity the sink sets (`quantity_name`).

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use tributary_proto::retail::v1::InventoryLevel;

use super::ShopifyTarget;
use crate::ApplyError;

pub(super) const LEVELS: &str = "query Levels($id: ID!, $first: Int!, $after: String) { location(id: $id) { inventoryLevels(first: $first, after: $after) { nodes { item { id } quantities(names: [\"available\", \"on_hand\"]) { name quantity } } pageInfo { hasNextPage endCursor } } } }";

/// Shopify's largest page.
const MAX_PAGE: u32 = 250;

/// Requested cost of [`LEVELS`]: location 1 + inventoryLevels (2 + `first` × (node 1 +
/// item 1 + quantities 1)); 753 at the largest page.
pub(super) fn levels_cost(first: u32) -> f64 {
    3.0 + 3.0 * f64::from(first)
}

impl ShopifyTarget {
    /// The quantity the sink sets for `level`: `on_hand`, or what is available.
    pub(crate) fn quantity_of(&self, level: &InventoryLevel) -> i64 {
        if self.cfg.quantity_name == "on_hand" {
            level.on_hand
        } else if level.available != 0 {
            level.available
        } else {
            level.on_hand - level.reserved
        }
    }

    /// The location codes the sink maps to Shopify locations.
    pub(crate) fn location_codes(&self) -> Vec<String> {
        self.cfg.locations.keys().cloned().collect()
    }

    /// Every catalogue SKU's level at the location mapped from `code` (0 where it has none).
    /// SKUs the catalogue does not know are absent: the sink cannot set them.
    pub(crate) async fn levels_at(
        &self,
        code: &str,
        page_size: u32,
    ) -> Result<BTreeMap<String, i64>, ApplyError> {
        let Some(location) = self.cfg.locations.get(code) else {
            return Ok(BTreeMap::new());
        };
        let skus: HashMap<String, String> = self
            .load_items()
            .await?
            .into_iter()
            .map(|(sku, v)| (v.inventory_item, sku))
            .collect();
        // A catalogue item without a level at the location holds none there.
        let mut out: BTreeMap<String, i64> = skus.values().map(|sku| (sku.clone(), 0)).collect();
        let first = self.page_within_bucket(page_size.clamp(1, MAX_PAGE), levels_cost);
        let mut after: Option<String> = None;
        loop {
            let vars = json!({"id": location, "first": first, "after": after});
            let data = self.graphql(LEVELS, vars, levels_cost(first)).await?;
            let levels = &data["location"]["inventoryLevels"];
            for node in levels["nodes"].as_array().into_iter().flatten() {
                let Some(sku) = node["item"]["id"].as_str().and_then(|i| skus.get(i)) else {
                    continue;
                };
                let quantity = node["quantities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|q| q["name"].as_str() == Some(self.cfg.quantity_name.as_str()))
                    .and_then(|q| q["quantity"].as_i64());
                if let Some(q) = quantity {
                    out.insert(sku.clone(), q);
                }
            }
            match levels["pageInfo"]["endCursor"].as_str() {
                Some(c) if levels["pageInfo"]["hasNextPage"].as_bool() == Some(true) => {
                    after = Some(c.to_string())
                }
                _ => return Ok(out),
            }
        }
    }
}

//! Prices: the storefront's price list in the ERP sets the variant prices.

use serde_json::json;
use tributary_proto::retail::v1::Price;

use super::{user_errors, ShopifyTarget, MUTATION_COST};
use crate::outcome::Outcome;
use crate::ApplyError;

impl ShopifyTarget {
    /// `productVariantsBulkUpdate` with the variant's new price (an absolute value: a
    /// redelivery writes the same price again).
    pub(super) async fn set_price(&self, price: &Price) -> Result<Outcome, ApplyError> {
        if self.cfg.price_list.as_deref() != Some(price.price_list.as_str()) {
            return Ok(Outcome::Ignored("other price list"));
        }
        let Some(amount) = price
            .price
            .as_ref()
            .map(|m| m.amount.as_str())
            .filter(|a| !a.is_empty())
        else {
            return Err(ApplyError::definite(
                format!("price of {} has no amount", price.sku),
                "the event carries no price.amount",
            ));
        };
        let variant = self.variant(&price.sku).await?;
        let data = self
            .graphql(
                "mutation Price($productId: ID!, $variants: [ProductVariantsBulkInput!]!) { productVariantsBulkUpdate(productId: $productId, variants: $variants) { productVariants { id price } userErrors { field message } } }",
                json!({"productId": variant.product, "variants": [{"id": variant.id, "price": amount}]}),
                MUTATION_COST,
            )
            .await?;
        user_errors(&data["productVariantsBulkUpdate"])?;
        Ok(Outcome::Applied)
    }
}

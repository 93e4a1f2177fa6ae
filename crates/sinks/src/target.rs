//! The targets a sink worker can drive; one enum rather than a trait object while there
//! are few of them.

use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};

use crate::activity::Activity;
use crate::erp::ErpTarget;
use crate::salesforce::SalesforceTarget;
use crate::shopify::ShopifyTarget;
use crate::state::EntityRecord;
use crate::wms::WmsTarget;
use crate::ApplyError;

// Re-exported so the worker keeps naming the outcome beside the target it drives.
pub use crate::outcome::Outcome;

// One value per configured sink, built once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Wms(Box<WmsTarget>),
    Shopify(Box<ShopifyTarget>),
    Salesforce(SalesforceTarget),
    Erp(Box<ErpTarget>),
}

impl Target {
    /// Whether applying `event` reads records of other entities from the state store (a
    /// Shopify fulfilment reads its order's link): the lane lets its pending puts land first.
    pub fn reads_state(&self, event: &DomainEvent) -> bool {
        matches!(
            (self, &event.entity),
            (Target::Shopify(_), Some(Entity::Fulfillment(_)))
        )
    }

    /// Lanes a worker needs at least: a lane waits for its record's batched request
    /// (Salesforce collections, Shopify inventory documents), so fewer lanes than records
    /// per request would leave requests part-empty.
    pub fn min_lanes(&self) -> usize {
        match self {
            Target::Salesforce(t) => t.min_lanes(),
            Target::Shopify(t) => t.min_lanes(),
            Target::Erp(t) => t.min_lanes(),
            Target::Wms(_) => 1,
        }
    }

    /// The lane activity the target watches, if it gathers records of several lanes.
    pub(crate) fn activity(&self) -> Option<std::sync::Arc<Activity>> {
        match self {
            Target::Salesforce(t) => t.activity(),
            Target::Shopify(t) => t.activity(),
            Target::Erp(t) => t.activity(),
            Target::Wms(_) => None,
        }
    }

    pub async fn apply(
        &self,
        event: &DomainEvent,
        record: &mut EntityRecord,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        match self {
            Target::Wms(t) => t.apply(event, record, idempotency_key).await,
            Target::Shopify(t) => t.apply(event, record, idempotency_key).await,
            Target::Salesforce(t) => t.apply(event, record, idempotency_key).await,
            Target::Erp(t) => t.apply(event, record, idempotency_key).await,
        }
    }
}

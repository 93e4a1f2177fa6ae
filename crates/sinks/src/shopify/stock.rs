//! Inventory levels in batches: the quantities lanes set at the same time go out as one
//! `inventorySetQuantities` with several quantities.
//!
//! ```text
//!  lane ─► queue ─┐   one request at a time (whoever holds the turn sends what is queued,
//!  lane ─► queue ─┼─► ≤ STOCK_BATCH quantities, then answers every member)
//!  lane ─► queue ─┘   ◄── each lane gets its own quantity's result
//! ```
//!
//! No linger: a request carries what queued while the previous one was in flight, so a
//! lone event goes out at once and a backlog fills the requests. A lane sets one entity's
//! level at a time, so a request never holds two quantities of one item and location.
//! Idempotency: a request of one quantity carries the event's own key; a request of several
//! a key derived from its members' keys (a retry of the same request replays; quantities
//! are absolute, `changeFromQuantity: null`, so a member re-sent in another request after a
//! lost answer sets the same value again). When Shopify refuses a request of several
//! (`userErrors` refuse the whole mutation), every member is sent again alone, so only the
//! offending event is parked.

use std::sync::Mutex;

use serde_json::json;
use tokio::sync::{oneshot, Mutex as AsyncMutex};

use super::{quoted, user_errors, ShopifyTarget, MUTATION_COST};
use crate::ApplyError;

/// Quantities per request (Shopify accepts up to 250 per `inventorySetQuantities`).
pub(super) const STOCK_BATCH: usize = 100;

#[derive(Default)]
pub(super) struct StockQueue {
    queue: Mutex<Vec<PendingStock>>,
    /// Held by the lane sending a request.
    turn: AsyncMutex<()>,
}

pub(super) struct PendingStock {
    pub item: String,
    pub location: String,
    pub quantity: i64,
    pub event_id: String,
    pub key: String,
    reply: Option<oneshot::Sender<Result<(), ApplyError>>>,
}

impl PendingStock {
    pub fn new(item: String, location: String, quantity: i64, event_id: &str, key: &str) -> Self {
        PendingStock {
            item,
            location,
            quantity,
            event_id: event_id.to_string(),
            key: key.to_string(),
            reply: None,
        }
    }

    fn answer(mut self, result: Result<(), ApplyError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

impl ShopifyTarget {
    /// Sets one quantity, in a request with whatever other lanes are setting meanwhile.
    pub(super) async fn set_quantity(&self, mut pending: PendingStock) -> Result<(), ApplyError> {
        let (reply, mut answer) = oneshot::channel();
        pending.reply = Some(reply);
        self.stock
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pending);
        loop {
            // The holder of the turn answers every member of its request before it lets go,
            // so with the turn ours, our quantity is either answered or still queued.
            let _turn = self.stock.turn.lock().await;
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(ApplyError::transient("inventory request dropped"))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<PendingStock> = {
                let mut queue = self.stock.queue.lock().unwrap_or_else(|e| e.into_inner());
                let n = queue.len().min(STOCK_BATCH);
                queue.drain(..n).collect()
            };
            self.send_stock(batch).await;
        }
    }

    async fn send_stock(&self, batch: Vec<PendingStock>) {
        metrics::histogram!(crate::metrics::SHOPIFY_STOCK_BATCH, "sink" => "shopify")
            .record(batch.len() as f64);
        match self.set_quantities(&batch).await {
            Ok(()) => batch.into_iter().for_each(|p| p.answer(Ok(()))),
            Err(e @ ApplyError::Definite { .. }) if batch.len() > 1 => {
                tracing::debug!(error = ?e, quantities = batch.len(), "inventory request refused; sending its quantities alone");
                for p in batch {
                    let result = self.set_quantities(std::slice::from_ref(&p)).await;
                    p.answer(result);
                }
            }
            Err(e) => batch.into_iter().for_each(|p| p.answer(Err(e.clone()))),
        }
    }

    async fn set_quantities(&self, batch: &[PendingStock]) -> Result<(), ApplyError> {
        let (key, reference) = match batch {
            [one] => (
                one.key.clone(),
                format!("tributary://event/{}", one.event_id),
            ),
            _ => {
                let members: Vec<&str> = batch.iter().map(|p| p.key.as_str()).collect();
                let key = crate::idempotency_key("shopify", &members.join(","));
                let reference = format!("tributary://events/{key}");
                (key, reference)
            }
        };
        let query = format!(
            "mutation SetStock($input: InventorySetQuantitiesInput!) {{ inventorySetQuantities(input: $input) @idempotent(key: {}) {{ inventoryAdjustmentGroup {{ id }} userErrors {{ field message code }} }} }}",
            quoted(&key)
        );
        let quantities: Vec<_> = batch
            .iter()
            .map(|p| json!({"inventoryItemId": p.item, "locationId": p.location, "quantity": p.quantity, "changeFromQuantity": null}))
            .collect();
        let variables = json!({"input": {
            "name": self.cfg.quantity_name,
            "reason": "correction",
            "referenceDocumentUri": reference,
            "quantities": quantities,
        }});
        let data = self.graphql(&query, variables, MUTATION_COST).await?;
        user_errors(&data["inventorySetQuantities"])
    }
}

//! The tracker's consumer of the domain stream: one event at a time, in stream order.
//!
//! ```text
//!  RETAIL ──durable consumer──► observe ──► record (KV, CAS) ──► ack
//!  (order/fulfillment/return/refund)   └─► milestone events (O2C) before the record
//! ```
//!
//! A message is acked only after the record it changes is stored; a redelivered or replayed
//! event finds its id in the record's timeline and changes nothing (acked at once).

use async_nats::jetstream;
use prost::Message as _;
use tracing::{debug, warn};
use tributary_core::Fence;
use tributary_proto::retail::v1::DomainEvent;

use crate::events::observe;
use crate::metrics as m;
use crate::process::{Kind, Observation, Process};
use crate::shared::Shared;
use crate::TrackerError;

/// Compare-and-set attempts before the write is given up as a transient error.
const MAX_CONFLICTS: usize = 16;

/// Handles one message; returns once it is acked (or left for redelivery on error).
pub async fn handle(
    shared: &Shared,
    fence: &Fence,
    msg: jetstream::Message,
) -> Result<(), TrackerError> {
    let outcome = match DomainEvent::decode(msg.payload.clone()) {
        Ok(event) => match observe(&event) {
            Some(obs) => apply(shared, fence, &obs).await?,
            None => m::IGNORED,
        },
        Err(e) => {
            // Not a domain event: the tracker cannot follow it and retrying will not help.
            warn!(subject = %msg.subject, error = %e, "undecodable domain event ignored");
            m::IGNORED
        }
    };
    fence.check()?;
    msg.ack()
        .await
        .map_err(|e| TrackerError::nats("ack", e.to_string()))?;
    metrics::counter!(m::EVENTS, "outcome" => outcome).increment(1);
    Ok(())
}

async fn apply(
    shared: &Shared,
    fence: &Fence,
    obs: &Observation,
) -> Result<&'static str, TrackerError> {
    for _ in 0..MAX_CONFLICTS {
        let (mut process, revision) = match shared.store.load(obs.kind, &obs.key).await? {
            Some(found) => found,
            None => (Process::new(obs.kind, &obs.key, &obs.order_id), 0),
        };
        let Some(mut outcome) = process.apply(obs) else {
            return Ok(m::REPEATED);
        };
        fence.check()?;
        if revision == 0 {
            // Once per record, not per event: whichever of the two records comes second
            // finds the first one's key, so nothing is missed (one event at a time).
            link(shared, &mut process, obs).await?;
        }
        if process.continued_as.is_some() {
            // The order's process is counted and announced on the record that carries it on
            // (the storefront's own order later shows "fulfilled" too): kept here for
            // `orders show`, not counted twice.
            outcome = Default::default();
        }
        for &(milestone, at) in &outcome.reached {
            shared.publisher.milestone(&process, milestone, at).await?;
        }
        fence.check()?;
        if shared.store.save(&process, revision).await?.is_none() {
            metrics::counter!(m::STATE_CONFLICTS).increment(1);
            continue;
        }
        // Counted only after the record holds them, so that a replay counts nothing twice.
        for &(milestone, _) in &outcome.reached {
            metrics::counter!(m::MILESTONES, "process" => obs.kind.as_str(), "milestone" => milestone.as_str())
                .increment(1);
        }
        for &(stage, seconds) in &outcome.latencies {
            metrics::histogram!(m::STAGE_SECONDS, "stage" => stage).record(seconds);
        }
        if let Some(seconds) = outcome.refund_cycle {
            metrics::histogram!(m::REFUND_CYCLE_SECONDS).record(seconds);
        }
        debug!(key = %obs.key, event = %obs.entry.event_id, reached = outcome.reached.len(), "applied");
        return Ok(m::APPLIED);
    }
    Err(TrackerError::nats(
        format!("KV write of {} {}", obs.kind.as_str(), obs.key),
        format!("lost the compare-and-set {MAX_CONFLICTS} times in a row"),
    ))
}

/// One order, two records: the storefront's own order (`WEB-1001`) and the ERP's order taken
/// from it (`SO-W000001`, naming the storefront id). The ERP's carries the process on (its
/// allocation, release and shipment); the storefront's is closed with `continued_as`, so that
/// it is never "unallocated". A storefront order the ERP never took keeps waiting and becomes
/// `order.stuck` — what an operator must see. Either may come first: each side records its
/// key under the link when its record is created, before it is stored (idempotent; a
/// redelivery of that first event does it again), and looks for the other side's.
async fn link(
    shared: &Shared,
    process: &mut Process,
    obs: &Observation,
) -> Result<(), TrackerError> {
    for l in &obs.links {
        if l.own {
            shared.store.set_link(true, &l.id, &obs.key).await?;
            if process.continued_as.is_none() {
                process.continued_as = shared.store.link(false, &l.id).await?;
            }
            continue;
        }
        shared.store.set_link(false, &l.id, &obs.key).await?;
        let Some(own_key) = shared.store.link(true, &l.id).await? else {
            continue;
        };
        if own_key == obs.key {
            continue;
        }
        for _ in 0..MAX_CONFLICTS {
            let Some((mut own, revision)) = shared.store.load(Kind::Order, &own_key).await? else {
                break;
            };
            if own.continued_as.is_some() {
                break;
            }
            own.continued_as = Some(obs.key.clone());
            if shared.store.save(&own, revision).await?.is_some() {
                debug!(storefront = %own_key, continued_as = %obs.key, "order records linked");
                break;
            }
        }
    }
    Ok(())
}

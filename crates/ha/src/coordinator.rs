//! The ownership loop of one replica: heartbeat, compute the assignment from the live members,
//! acquire the units assigned here, hand over the ones that moved, and run each owned unit under
//! its lease.
//!
//! ```text
//!  every tick:  heartbeat ─► members ─► assign(units, members) ─┬─ mine, not running → try_acquire → spawn own()
//!                                                               └─ running, now someone else's (alive) → drain, release
//!  own(unit):   work ◄── UnitContext{fence, stop}
//!               lease.hold() ── lost ──► stop the work (its fence already refuses), wait, do not release
//!               stop/handover ──► stop the work, keep renewing while it drains, then release
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::lease::{unix_ms, Lease, LeaseStore};
use crate::members::tick;
use crate::metrics as m;
use crate::{assign, HaError};
use tributary_core::Fence;

/// The error type a unit returns: fatal for the replica (transient errors are the unit's own
/// supervision's business).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Starts a unit's work; called each time this replica acquires the unit.
pub type UnitFn =
    Arc<dyn Fn(UnitContext) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// A unit of work that exactly one replica runs at a time.
#[derive(Clone)]
pub struct UnitSpec {
    /// Stable name, the same on every replica (e.g. `source:erp`, `sink:shopify:7`).
    pub name: String,
    pub run: UnitFn,
}

/// What a unit's work gets: its fence (ask before every side effect) and its stop token
/// (cancelled on shutdown, hand-over and loss of the lease).
pub struct UnitContext {
    pub unit: String,
    pub fence: Fence,
    pub stop: CancellationToken,
}

/// Timings of the ownership loop.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// How long a stopped unit may drain (with its lease still renewed) before it is aborted.
    pub drain_timeout: Duration,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Runs the units this replica is assigned, under leases.
pub struct Coordinator {
    store: LeaseStore,
    units: BTreeMap<String, UnitSpec>,
    opts: CoordinatorOptions,
    joined: Arc<AtomicBool>,
    held: Arc<Mutex<BTreeMap<String, Fence>>>,
}

/// Whether every lease this replica holds is being renewed (for `/healthz`).
#[derive(Clone)]
pub struct LeaseHealth {
    held: Arc<Mutex<BTreeMap<String, Fence>>>,
    ttl: Duration,
}

impl LeaseHealth {
    /// Err naming the units whose renewal is overdue: a renew is due every TTL/3, and a holder
    /// whose remaining validity fell below 0.4 TTL has missed one. (It stops the unit itself at
    /// the end of the validity; this makes the trouble visible before.)
    pub fn check(&self) -> Result<(), String> {
        let held = match self.held.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let overdue: Vec<String> = held
            .iter()
            .filter(|(_, f)| !f.is_lost())
            .filter(|(_, f)| f.valid_until().saturating_duration_since(now) < self.ttl.mul_f64(0.4))
            .map(|(u, _)| u.clone())
            .collect();
        if overdue.is_empty() {
            Ok(())
        } else {
            Err(format!("lease renewal overdue: {}", overdue.join(", ")))
        }
    }
}

enum End {
    /// The work returned by itself (Ok: it stopped; Err: fatal).
    Finished(Result<(), BoxError>),
    /// Stopped on request and drained (or aborted after the drain timeout); lease released.
    HandedOver,
    /// The lease was lost; the work was stopped.
    Lost,
}

struct Running {
    stop: CancellationToken,
    handing_over: bool,
}

impl Coordinator {
    pub fn new(store: LeaseStore, units: Vec<UnitSpec>, opts: CoordinatorOptions) -> Coordinator {
        crate::metrics::register(units.iter().map(|u| u.name.as_str()));
        let units = units.into_iter().map(|u| (u.name.clone(), u)).collect();
        Coordinator {
            store,
            units,
            opts,
            joined: Arc::new(AtomicBool::new(false)),
            held: Arc::default(),
        }
    }

    /// The `/healthz` view of the leases this replica holds.
    pub fn lease_health(&self) -> LeaseHealth {
        LeaseHealth {
            held: self.held.clone(),
            ttl: self.store.ttl(),
        }
    }

    /// True while this replica's heartbeat is stored (it is a member of the group); false
    /// before the first one and after heartbeats failed for a whole TTL.
    pub fn joined(&self) -> Arc<AtomicBool> {
        self.joined.clone()
    }

    /// Runs until `stop` (every unit drained and released, Ok) or until a unit fails fatally
    /// (every other unit drained and released, Err naming the unit).
    pub async fn run(self, stop: CancellationToken) -> Result<(), HaError> {
        let me = self.store.instance().to_string();
        let started = unix_ms();
        let every = tick(self.store.ttl());
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        let mut tasks: JoinSet<(String, End)> = JoinSet::new();
        let mut members: Vec<String> = vec![me.clone()];
        let mut failure: Option<HaError> = None;
        info!(instance = %me, units = self.units.len(), "joining the replica group");
        // The heartbeat has its own task: a slow listing or acquisition (a leader election
        // on the bucket) must not let this replica's membership expire while it is alive.
        // Held in a JoinSet so that the heartbeat dies with this future (dropped or aborted
        // like a crashed process), never outliving the ownership loop.
        let heartbeat_stop = CancellationToken::new();
        let mut heartbeats = JoinSet::new();
        heartbeats.spawn(heartbeat(
            self.store.clone(),
            started,
            self.joined.clone(),
            heartbeat_stop.clone(),
        ));
        // A listing or acquisition that takes half a TTL is abandoned and asked again (the
        // leases held here are renewed by their own tasks meanwhile).
        let patience = self.store.ttl() / 2;
        // When this replica last found a unit it was assigned held by someone else: the gap
        // until it acquires the unit is the time without an owner, to within a tick.
        let mut last_seen_held: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            let listed = tokio::time::timeout(patience, self.store.members())
                .await
                .unwrap_or_else(|_| Err(HaError::kv("member.", "keys", RequestTimedOut(patience))));
            match listed {
                Ok(list) => {
                    members = list.into_iter().map(|m| m.instance).collect();
                    if !members.contains(&me) {
                        members.push(me.clone());
                    }
                    metrics::gauge!(m::MEMBERS).set(members.len() as f64);
                }
                Err(e) => warn!(error = %e, "cannot list the replicas; keeping the last view"),
            }
            let names: Vec<&str> = self.units.keys().map(String::as_str).collect();
            let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
            let plan = assign(&names, &member_refs);
            let alive: BTreeSet<&str> = member_refs.iter().copied().collect();

            for (unit, owner) in &plan {
                if let Some(r) = running.get_mut(*unit) {
                    if *owner != me && alive.contains(owner) && !r.handing_over {
                        info!(unit, to = owner, "handing the unit over");
                        r.handing_over = true;
                        r.stop.cancel();
                    }
                    continue;
                }
                if *owner != me {
                    continue;
                }
                let attempt = tokio::time::timeout(patience, self.store.try_acquire(unit))
                    .await
                    .unwrap_or_else(|_| {
                        Err(HaError::kv(unit, "create", RequestTimedOut(patience)))
                    });
                match attempt {
                    Ok(Some(lease)) => {
                        if let Some(seen) = last_seen_held.remove(*unit) {
                            metrics::histogram!(m::UNOWNED_SECONDS, "unit" => unit.to_string())
                                .record(seen.elapsed().as_secs_f64());
                        }
                        let spec = self.units[*unit].clone();
                        let unit_stop = CancellationToken::new();
                        running.insert(
                            unit.to_string(),
                            Running {
                                stop: unit_stop.clone(),
                                handing_over: false,
                            },
                        );
                        metrics::gauge!(m::LEASE_HELD, "unit" => unit.to_string()).set(1.0);
                        metrics::counter!(m::HANDOVERS, "unit" => unit.to_string(), "event" => "acquired").increment(1);
                        info!(unit, revision = lease.revision(), "unit acquired");
                        if let Ok(mut held) = self.held.lock() {
                            held.insert(unit.to_string(), lease.fence());
                        }
                        let drain = self.opts.drain_timeout;
                        let name = unit.to_string();
                        tasks.spawn(async move {
                            let end = own(lease, spec, unit_stop, drain).await;
                            (name, end)
                        });
                    }
                    Ok(None) => {
                        last_seen_held.insert(unit.to_string(), Instant::now());
                    }
                    Err(e) => warn!(unit, error = %e, "cannot acquire"),
                }
            }

            // Reap ended units until the next tick (or at once on stop).
            let deadline = tokio::time::sleep(every);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    _ = stop.cancelled() => break,
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                        if let Some(err) = reap(joined, &mut running, &self.held) {
                            failure.get_or_insert(err);
                            stop.cancel();
                        }
                    }
                }
            }
            if stop.is_cancelled() {
                break;
            }
        }
        for r in running.values() {
            r.stop.cancel();
        }
        while let Some(joined) = tasks.join_next().await {
            if let Some(err) = reap(joined, &mut running, &self.held) {
                failure.get_or_insert(err);
            }
        }
        heartbeat_stop.cancel();
        heartbeats.join_all().await;
        self.joined.store(false, Ordering::Relaxed);
        if let Err(e) = self.store.leave().await {
            warn!(error = %e, "cannot remove the heartbeat; it expires with the TTL");
        }
        match failure {
            Some(e) => Err(e),
            None => {
                info!(instance = %me, "left the replica group");
                Ok(())
            }
        }
    }
}

fn reap(
    joined: Result<(String, End), tokio::task::JoinError>,
    running: &mut BTreeMap<String, Running>,
    held: &Mutex<BTreeMap<String, Fence>>,
) -> Option<HaError> {
    let (unit, end) = match joined {
        Ok(x) => x,
        Err(e) => {
            error!(error = %e, "unit task panicked or was cancelled");
            return Some(HaError::Unit {
                unit: "?".into(),
                source: Box::new(e),
            });
        }
    };
    running.remove(&unit);
    if let Ok(mut held) = held.lock() {
        held.remove(&unit);
    }
    metrics::gauge!(m::LEASE_HELD, "unit" => unit.clone()).set(0.0);
    let event = match &end {
        End::Finished(_) => "released",
        End::HandedOver => "handed_over",
        End::Lost => "lost",
    };
    metrics::counter!(m::HANDOVERS, "unit" => unit.clone(), "event" => event).increment(1);
    match end {
        End::Finished(Err(source)) => {
            error!(unit = %unit, error = %source, "unit failed");
            Some(HaError::Unit { unit, source })
        }
        _ => None,
    }
}

/// Runs one unit under its lease until it ends, is stopped, or the lease is lost.
async fn own(mut lease: Lease, spec: UnitSpec, stop: CancellationToken, drain: Duration) -> End {
    let fence = lease.fence();
    let work_stop = CancellationToken::new();
    let ctx = UnitContext {
        unit: spec.name.clone(),
        fence: fence.clone(),
        stop: work_stop.clone(),
    };
    let mut work = tokio::spawn((spec.run)(ctx));
    let never = CancellationToken::new();
    let mut draining: Option<Instant> = None;
    let end = {
        let hold = lease.hold(&never);
        tokio::pin!(hold);
        loop {
            let drain_deadline = draining.map(|since| since + drain);
            tokio::select! {
                joined = &mut work => {
                    let result = joined.unwrap_or_else(|e| Err(Box::new(e) as BoxError));
                    break if draining.is_some() && result.is_ok() {
                        End::HandedOver
                    } else {
                        End::Finished(result)
                    };
                }
                _ = &mut hold => {
                    // `never` is never cancelled: hold only returns when the lease is lost.
                    work_stop.cancel();
                    break End::Lost;
                }
                _ = stop.cancelled(), if draining.is_none() => {
                    work_stop.cancel();
                    draining = Some(Instant::now());
                }
                _ = async { if let Some(d) = drain_deadline { tokio::time::sleep_until(d.into()).await } }, if drain_deadline.is_some() => {
                    warn!(unit = %spec.name, "unit did not drain in time; aborted");
                    work.abort();
                    break End::HandedOver;
                }
            }
        }
    };
    match end {
        End::Lost => {
            // Its side effects are already refused by the fence; let it notice and stop.
            if tokio::time::timeout(drain, &mut work).await.is_err() {
                work.abort();
            }
            End::Lost
        }
        other => {
            if let Err(e) = lease.release().await {
                warn!(unit = %spec.name, error = %e, "cannot release the lease; it expires with the TTL");
            }
            other
        }
    }
}

/// A KV request abandoned after `0`.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
struct RequestTimedOut(Duration);

/// Writes this replica's heartbeat every tick until `stop`; `joined` is true while the last
/// successful one is younger than the TTL.
async fn heartbeat(
    store: LeaseStore,
    started: u64,
    joined: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let every = tick(store.ttl());
    let mut last_ok: Option<Instant> = None;
    loop {
        match tokio::time::timeout(store.ttl() / 2, store.heartbeat(started)).await {
            Ok(Ok(())) => {
                last_ok = Some(Instant::now());
                joined.store(true, Ordering::Relaxed);
            }
            Ok(Err(e)) => warn!(error = %e, "heartbeat failed"),
            Err(_) => warn!("heartbeat not answered in time"),
        }
        if last_ok.is_some_and(|at| at.elapsed() > store.ttl()) {
            joined.store(false, Ordering::Relaxed);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

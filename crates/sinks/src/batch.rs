//! Shared requests for the writes of several lanes: Salesforce sObject Collections, Shopify
//! documents of aliased inventory mutations.
//!
//! ```text
//!  lane ─submit─┐
//!  lane ─submit─┼─► batcher task: ≤ size items, ≤ linger after the first, one group per
//!  lane ─submit─┘     request ─► up to `concurrency` requests in flight ─► one result per item
//!         ◄──────────── each lane gets its own item's result ◄─────────────┘
//! ```
//!
//! A lane submits one item and waits for its result before it takes its next event, so one
//! entity never has two items in flight, whichever requests they land in: per-entity order
//! holds with several requests in flight. The target decides what one item's result is
//! (its own record's result, its own field's answer) and what a request that fails as a whole
//! means for each of its items.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::activity::Activity;
use crate::{metrics as m, ApplyError};

/// A target's side of a batched request.
pub(crate) trait BatchSend: Send + Sync + 'static {
    type Item: Send + 'static;

    /// Items of one request share a group (Salesforce: the sObject of a collection).
    fn group(&self, item: &Self::Item) -> &'static str;

    /// Sends `items` (one group, in arrival order) as one request; one result per item, in
    /// the same order.
    fn send(
        &self,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Vec<Result<(), ApplyError>>> + Send;
}

/// How a batcher gathers and sends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchOptions {
    /// The sink, for the metrics.
    pub sink: &'static str,
    /// Items per request at most.
    pub size: usize,
    /// How long the first item of a batch waits for others at most.
    pub linger: Duration,
    /// Requests in flight at once (a new batch gathers while earlier ones are sent).
    pub concurrency: usize,
    /// Items that may wait for the batcher (the lanes that can submit at once).
    pub queue: usize,
}

struct Pending<T> {
    item: T,
    reply: oneshot::Sender<Result<(), ApplyError>>,
    /// The submitting lane's fence: checked again when the request leaves.
    fence: Option<tributary_core::Fence>,
}

/// The lanes' handle on a batcher task.
pub(crate) struct Batcher<T> {
    tx: mpsc::Sender<Pending<T>>,
    activity: Arc<Activity>,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the batcher task; must run inside the Tokio runtime. The task ends when the
    /// handle is dropped.
    pub fn spawn<S: BatchSend<Item = T>>(target: Arc<S>, opts: BatchOptions) -> Self {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let activity = Arc::new(Activity::default());
        tokio::spawn(run(target, opts, rx, activity.clone()));
        Batcher { tx, activity }
    }

    /// What the sink's lanes are doing; the worker reports it (lanes idle, dispatcher
    /// blocked) so that a batch leaves as soon as no lane can add to it.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Hands `item` to the next request and waits for its own result.
    pub async fn submit(&self, item: T) -> Result<(), ApplyError> {
        let _waiting = self.activity.waiting();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                item,
                reply,
                fence: crate::http::lane_fence(),
            })
            .await
            .map_err(|_| ApplyError::transient("batcher stopped"))?;
        answer
            .await
            .map_err(|_| ApplyError::transient("batched request dropped"))?
    }
}

/// Items of one group waiting for a request.
struct Gathering<T> {
    group: &'static str,
    items: Vec<Pending<T>>,
    /// When the oldest item arrived.
    since: tokio::time::Instant,
}

/// Why a batch was sent (the label of [`m::BATCH_TRIGGERS`]).
fn trigger(full: bool, lingered: bool) -> &'static str {
    if full {
        "full"
    } else if lingered {
        "linger"
    } else {
        "settled"
    }
}

/// Gathers items per group and sends each group's batch as one request when a request slot
/// is free (up to `concurrency` in flight) and
///
/// - the batch is full (`size`), or
/// - its oldest item has waited `linger`, or
/// - no request is in flight and no lane can add an item ([`Activity::settled`]): waiting
///   could only gain events that have not reached the sink yet.
///
/// While requests are in flight a partial batch keeps gathering (their lanes come back with
/// their next items) for up to the linger: in the sinks benchmark this halved Salesforce's
/// requests per event against sending whenever the lanes settle, at the same throughput,
/// and Salesforce counts requests against the org's daily limit.
async fn run<S: BatchSend>(
    target: Arc<S>,
    opts: BatchOptions,
    mut rx: mpsc::Receiver<Pending<S::Item>>,
    activity: Arc<Activity>,
) {
    let max = opts.size.max(1);
    let concurrency = opts.concurrency.max(1);
    let requests = Arc::new(Semaphore::new(concurrency));
    let mut gathering: Vec<Gathering<S::Item>> = Vec::new();
    let mut open = true;
    let add = |gathering: &mut Vec<Gathering<S::Item>>, p: Pending<S::Item>| {
        let group = target.group(&p.item);
        match gathering.iter_mut().find(|g| g.group == group) {
            Some(g) => g.items.push(p),
            None => gathering.push(Gathering {
                group,
                items: vec![p],
                since: tokio::time::Instant::now(),
            }),
        }
    };
    loop {
        // Registered before the state is read: a change after the read wakes the wait below.
        let changed = activity.changed.notified();
        while let Ok(p) = rx.try_recv() {
            add(&mut gathering, p);
        }
        let idle = requests.available_permits() == concurrency;
        // Decided once for all groups, so that their batches leave together.
        let settled = !open || (idle && activity.settled());
        let now = tokio::time::Instant::now();
        loop {
            // The fullest ready batch first.
            let ready = gathering
                .iter()
                .enumerate()
                .filter(|(_, g)| g.items.len() >= max || settled || g.since + opts.linger <= now)
                .max_by_key(|(_, g)| g.items.len())
                .map(|(i, _)| i);
            let Some(i) = ready else { break };
            let Ok(permit) = requests.clone().try_acquire_owned() else {
                break;
            };
            let g = &mut gathering[i];
            let (full, lingered) = (g.items.len() >= max, g.since + opts.linger <= now);
            let pending: Vec<Pending<S::Item>> = if g.items.len() > max {
                g.items.drain(..max).collect()
            } else {
                gathering.swap_remove(i).items
            };
            metrics::counter!(m::BATCH_TRIGGERS, "sink" => opts.sink, "trigger" => trigger(full, lingered))
                .increment(1);
            let target = target.clone();
            let activity = activity.clone();
            tokio::spawn(async move {
                // Items of lanes that lost their lease while the batch gathered leave it.
                let mut items = Vec::with_capacity(pending.len());
                let mut replies = Vec::with_capacity(pending.len());
                for p in pending {
                    match crate::http::check_fence(p.fence.as_ref()) {
                        Ok(()) => {
                            items.push(p.item);
                            replies.push(p.reply);
                        }
                        Err(e) => {
                            let _ = p.reply.send(Err(e));
                        }
                    }
                }
                let n = items.len();
                let mut results = target.send(items).await;
                // A target that answers fewer results than items must not leave a lane
                // waiting forever: the missing ones are retried.
                results.resize_with(n, || {
                    Err(ApplyError::transient(
                        "no result for this item in the batch",
                    ))
                });
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
                drop(permit);
                activity.changed.notify_one();
            });
        }
        if !open && gathering.is_empty() {
            return;
        }
        // Only batches still within their linger have a deadline; one that is ready waits
        // for a request slot (a finished request notifies `changed`).
        let deadline = gathering
            .iter()
            .map(|g| g.since + opts.linger)
            .filter(|d| *d > now)
            .min();
        tokio::select! {
            p = rx.recv(), if open => match p {
                Some(p) => add(&mut gathering, p),
                None => open = false,
            },
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The metrics register the `trigger` label values before any batch is sent.
    #[test]
    fn every_trigger_has_its_label_registered() {
        let mut sent = vec![
            trigger(true, false),
            trigger(false, false),
            trigger(false, true),
        ];
        let mut registered = m::TRIGGERS.to_vec();
        sent.sort();
        registered.sort();
        assert_eq!(sent, registered);
    }

    /// Records the requests it gets; refuses item 13 (definite), answers the others.
    #[derive(Default)]
    struct Recorder {
        requests: Mutex<Vec<Vec<u32>>>,
    }

    impl BatchSend for Recorder {
        type Item = u32;
        fn group(&self, item: &u32) -> &'static str {
            if item.is_multiple_of(2) {
                "even"
            } else {
                "odd"
            }
        }
        async fn send(&self, items: Vec<u32>) -> Vec<Result<(), ApplyError>> {
            self.requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(items.clone());
            items
                .iter()
                .map(|i| {
                    if *i == 13 {
                        Err(ApplyError::definite("thirteen", ""))
                    } else {
                        Ok(())
                    }
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn each_submitter_gets_its_own_result_and_groups_do_not_mix() {
        let target = Arc::new(Recorder::default());
        let batcher = Arc::new(Batcher::spawn(
            target.clone(),
            BatchOptions {
                sink: "test",
                size: 4,
                linger: Duration::from_millis(50),
                concurrency: 2,
                queue: 16,
            },
        ));
        let mut tasks = Vec::new();
        for i in 10..18u32 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { (i, b.submit(i).await) }));
        }
        for t in tasks {
            let (i, r) = t.await.expect("joins");
            assert_eq!(r.is_err(), i == 13, "item {i}: {r:?}");
        }
        let requests = target
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        assert!(requests.iter().all(|r| r.len() <= 4));
        assert!(requests.iter().all(|r| r.iter().all(|i| i % 2 == r[0] % 2)));
        assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 8);
        assert!(
            requests.len() < 8,
            "some items shared a request: {requests:?}"
        );
    }
}

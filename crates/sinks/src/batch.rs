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

use crate::ApplyError;

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
    /// Items per request at most.
    pub size: usize,
    /// How long the first item of a batch waits for others.
    pub linger: Duration,
    /// Requests in flight at once (a new batch gathers while earlier ones are sent).
    pub concurrency: usize,
    /// Items that may wait for the batcher (the lanes that can submit at once).
    pub queue: usize,
}

struct Pending<T> {
    item: T,
    reply: oneshot::Sender<Result<(), ApplyError>>,
}

/// The lanes' handle on a batcher task.
pub(crate) struct Batcher<T> {
    tx: mpsc::Sender<Pending<T>>,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the batcher task; must run inside the Tokio runtime. The task ends when the
    /// handle is dropped.
    pub fn spawn<S: BatchSend<Item = T>>(target: Arc<S>, opts: BatchOptions) -> Self {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        tokio::spawn(run(target, opts, rx));
        Batcher { tx }
    }

    /// Hands `item` to the next request and waits for its own result.
    pub async fn submit(&self, item: T) -> Result<(), ApplyError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { item, reply })
            .await
            .map_err(|_| ApplyError::transient("batcher stopped"))?;
        answer
            .await
            .map_err(|_| ApplyError::transient("batched request dropped"))?
    }
}

async fn run<S: BatchSend>(
    target: Arc<S>,
    opts: BatchOptions,
    mut rx: mpsc::Receiver<Pending<S::Item>>,
) {
    let max = opts.size.max(1);
    let requests = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // With no linger this still takes what is queued already: the timeout polls the
        // receiver before it looks at the deadline.
        let deadline = tokio::time::Instant::now() + opts.linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        // One request per group, items in arrival order.
        let mut by_group: Vec<(&'static str, Vec<Pending<S::Item>>)> = Vec::new();
        for p in batch {
            let group = target.group(&p.item);
            match by_group.iter_mut().find(|(g, _)| *g == group) {
                Some((_, v)) => v.push(p),
                None => by_group.push((group, vec![p])),
            }
        }
        for (_, pending) in by_group {
            let Ok(permit) = requests.clone().acquire_owned().await else {
                return;
            };
            let target = target.clone();
            tokio::spawn(async move {
                let (items, replies): (Vec<_>, Vec<_>) =
                    pending.into_iter().map(|p| (p.item, p.reply)).unzip();
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
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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

//! What a SaaS feed runs, split by how it may be replicated: receivers (the webhook
//! listeners) run on every replica behind a load balancer; the single-writer parts (mapping
//! consumers, the reconciliation poller, each Change Data Capture subscription) are
//! [`Component`]s, under `[ha]` each a work unit owned by one replica through its lease.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use tributary_core::{supervise, BoxFuture, Component, RetryPolicy};

use crate::SaasError;

/// A listener serving until the stop token it was built with is cancelled.
pub type Receiver = BoxFuture<'static, ()>;

/// A feed's receivers and components.
#[derive(Default)]
pub struct FeedParts {
    /// (name for `/readyz`, e.g. `webhook listener shopify`, the server).
    pub receivers: Vec<(String, Receiver)>,
    pub components: Vec<Box<dyn Component>>,
}

impl FeedParts {
    pub fn extend(&mut self, other: FeedParts) {
        self.receivers.extend(other.receivers);
        self.components.extend(other.components);
    }

    /// Runs everything in this process until `stop` (single replica): components under
    /// [`supervise`]; the first one that stops for good stops the others and is returned.
    pub async fn run(self, stop: CancellationToken) -> Result<(), SaasError> {
        let mut tasks = JoinSet::new();
        for (_, receiver) in self.receivers {
            tasks.spawn(async move {
                receiver.await;
                Ok(())
            });
        }
        for component in self.components {
            let stop = stop.clone();
            tasks.spawn(async move {
                supervise(component.as_ref(), RetryPolicy::COMPONENT, &stop)
                    .await
                    .map_err(SaasError::from)
            });
        }
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                    stop.cancel();
                }
                Err(e) => warn!(error = %e, "SaaS feed task panicked"),
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

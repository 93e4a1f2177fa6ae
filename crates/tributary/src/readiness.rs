//! What `/readyz` and `/status` say about each configured component: sources, the domain
//! stage's consumers, sinks, SaaS feeds and their webhook listeners, each ready or not with
//! the reason.
//!
//! A component's own [`Health`] says whether it does its work (a source streams, a sink's
//! target answers); [`Tracked`] adds what only the runtime knows: the component has not
//! started yet, or it is waiting to be restarted after an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tributary_core::{BoxFuture, Component, Failure, Health};

/// One component as `/readyz` and `/status` report it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ComponentState {
    /// `source erp`, `domain erp`, `sink wms`, `feed shopify`, …
    pub component: String,
    pub ready: bool,
    /// Why it is not ready (null when ready).
    pub reason: Option<String>,
}

type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The probes of every configured component, in start order.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<(String, Check)>,
}

impl Readiness {
    pub fn add(&mut self, component: impl Into<String>, check: Check) {
        self.probes.push((component.into(), check));
    }

    /// A component run by the supervisor: ready when it runs and its health is `Healthy`.
    pub fn add_tracked(&mut self, tracked: &Arc<Tracked>) {
        let t = tracked.clone();
        self.add(tracked.name(), Arc::new(move || t.readiness()));
    }

    /// A task that is ready while it runs: `alive` turns false when it has stopped.
    pub fn add_task(&mut self, component: impl Into<String>, alive: Arc<AtomicBool>, what: String) {
        self.add(
            component,
            Arc::new(move || match alive.load(Ordering::Relaxed) {
                true => Ok(()),
                false => Err(format!("{what} stopped")),
            }),
        );
    }

    pub fn states(&self) -> Vec<ComponentState> {
        self.probes
            .iter()
            .map(|(name, check)| {
                let reason = check().err();
                ComponentState {
                    component: name.clone(),
                    ready: reason.is_none(),
                    reason,
                }
            })
            .collect()
    }
}

/// The `/readyz` body: one line per component, the ones not ready first.
pub fn render(states: &[ComponentState]) -> (bool, String) {
    let ready = states.iter().all(|s| s.ready);
    let mut out = String::from(if ready { "ready\n" } else { "not ready\n" });
    let (down, up): (Vec<&ComponentState>, Vec<&ComponentState>) =
        states.iter().partition(|s| !s.ready);
    for s in down {
        let reason = s.reason.as_deref().unwrap_or("not ready");
        out.push_str(&format!("{}: not ready: {reason}\n", s.component));
    }
    for s in up {
        out.push_str(&format!("{}: ready\n", s.component));
    }
    (ready, out)
}

#[derive(Debug, Clone)]
enum RunState {
    NotStarted,
    Running,
    /// The last run failed; the supervisor restarts it after a backoff.
    Failed(String),
}

/// A component whose run state the runtime records for `/readyz`.
pub struct Tracked {
    inner: Box<dyn Component>,
    state: Mutex<RunState>,
}

impl Tracked {
    pub fn new(inner: Box<dyn Component>) -> Arc<Self> {
        Arc::new(Tracked {
            inner,
            state: Mutex::new(RunState::NotStarted),
        })
    }

    fn set(&self, state: RunState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn readiness(&self) -> Result<(), String> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match state {
            RunState::NotStarted => Err("not started".into()),
            RunState::Failed(e) => Err(format!("restarting after: {e}")),
            RunState::Running => match self.inner.health() {
                Health::Healthy => Ok(()),
                Health::Starting => Err("starting".into()),
                Health::Degraded(why) => Err(why),
            },
        }
    }
}

impl Component for Tracked {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            self.set(RunState::Running);
            let result = self.inner.run(stop).await;
            if let Err(e) = &result {
                self.set(RunState::Failed(tributary_core::chain(e)));
            }
            result
        })
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.inner.set_fence(fence)
    }

    fn health(&self) -> Health {
        self.inner.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_names_each_component_not_ready_with_its_reason() {
        let mut r = Readiness::default();
        r.add("source erp", Arc::new(|| Ok(())));
        r.add(
            "sink wms",
            Arc::new(|| Err("target failing: refused".into())),
        );
        let alive = Arc::new(AtomicBool::new(true));
        r.add_task("feed shopify", alive.clone(), "listener".into());
        let (ready, body) = render(&r.states());
        assert!(!ready);
        assert_eq!(
            body,
            "not ready\nsink wms: not ready: target failing: refused\n\
             source erp: ready\nfeed shopify: ready\n"
        );
        alive.store(false, Ordering::Relaxed);
        let states = r.states();
        assert_eq!(states[2].reason.as_deref(), Some("listener stopped"));
        let (ready, body) = render(&[states[0].clone()]);
        assert!(ready);
        assert_eq!(body, "ready\nsource erp: ready\n");
    }
}

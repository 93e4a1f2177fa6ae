//! The supervision rules, on tokio's paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{BoxFuture, Component, ErrorClass, FatalKind};

#[derive(Debug, thiserror::Error)]
#[error("test error ({0:?})")]
struct TestError(ErrorClass);

impl Classify for TestError {
    fn class(&self) -> ErrorClass {
        self.0.clone()
    }
}

/// Each run lasts `ran_for`, then ends with the next scripted outcome (`None`: Ok).
struct Scripted {
    script: Mutex<Vec<(Duration, Option<ErrorClass>)>>,
    starts: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(mut script: Vec<(Duration, Option<ErrorClass>)>) -> Self {
        script.reverse();
        Scripted {
            script: Mutex::new(script),
            starts: Mutex::new(Vec::new()),
        }
    }

    /// Pause between the end of one run and the start of the next, in ms.
    fn gaps(&self, runs: &[Duration]) -> Vec<u128> {
        let starts = self.starts.lock().expect("lock").clone();
        starts
            .windows(2)
            .zip(runs)
            .map(|(w, ran)| (w[1] - w[0] - *ran).as_millis())
            .collect()
    }
}

impl Component for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }

    fn run<'a>(&'a self, stop: &'a CancellationToken) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            self.starts.lock().expect("lock").push(Instant::now());
            let next = self.script.lock().expect("lock").pop();
            let Some((ran_for, outcome)) = next else {
                stop.cancelled().await;
                return Ok(());
            };
            tokio::time::sleep(ran_for).await;
            match outcome {
                None => Ok(()),
                Some(class) => Err(TestError(class).into()),
            }
        })
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(100),
    max: Duration::from_millis(800),
    multiplier: 2,
    healthy_after: Duration::from_secs(60),
};

#[tokio::test(start_paused = true)]
async fn transient_failures_restart_with_capped_backoff_reset_after_a_healthy_run() {
    let short = Duration::from_millis(10);
    let long = Duration::from_secs(61);
    let t = Some(ErrorClass::TRANSIENT);
    let runs = [short, short, short, short, short, long, short];
    let c = Scripted::new(runs.iter().map(|d| (*d, t.clone())).collect());
    let stop = CancellationToken::new();
    let supervised = supervise(&c, POLICY, &stop);
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(120)).await;
        stop.cancel();
    };
    let (result, ()) = tokio::join!(supervised, stopper);
    assert!(result.is_ok(), "cancelled: {result:?}");
    // 100, 200, 400, 800 (cap), 800; the 61 s run was healthy: 100 again; then 200.
    assert_eq!(c.gaps(&runs), [100, 200, 400, 800, 800, 100, 200]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_hint_above_the_backoff_is_waited() {
    let hint = Some(ErrorClass::Transient {
        retry_after: Some(Duration::from_secs(5)),
    });
    let runs = [Duration::ZERO];
    let c = Scripted::new(vec![(Duration::ZERO, hint)]);
    let stop = CancellationToken::new();
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.cancel();
    };
    let (result, ()) = tokio::join!(supervise(&c, POLICY, &stop), stopper);
    assert!(result.is_ok());
    assert_eq!(c.gaps(&runs), [5000]);
}

#[tokio::test(start_paused = true)]
async fn fatal_and_definite_errors_stop_at_once_naming_the_component() {
    for class in [
        ErrorClass::CORRUPT_STATE,
        ErrorClass::Fatal {
            kind: FatalKind::Config,
        },
        ErrorClass::Definite { reason: "auth" },
    ] {
        let c = Scripted::new(vec![
            (Duration::ZERO, Some(ErrorClass::TRANSIENT)),
            (Duration::ZERO, Some(class.clone())),
            (Duration::ZERO, None),
        ]);
        let stop = CancellationToken::new();
        let stopped = supervise(&c, POLICY, &stop)
            .await
            .expect_err("stops on a non-transient error");
        assert_eq!(stopped.component, "scripted");
        assert_eq!(stopped.error.class(), class);
        assert!(
            stopped.to_string().starts_with("scripted stopped ("),
            "{stopped}"
        );
        assert_eq!(c.starts.lock().expect("lock").len(), 2, "not restarted");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_stop_interrupts_the_backoff() {
    let c = Scripted::new(vec![(
        Duration::ZERO,
        Some(ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(3600)),
        }),
    )]);
    let stop = CancellationToken::new();
    let begun = Instant::now();
    let stopper = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.cancel();
    };
    let (result, ()) = tokio::join!(supervise(&c, POLICY, &stop), stopper);
    assert!(result.is_ok());
    assert_eq!(begun.elapsed(), Duration::from_secs(1));
    assert_eq!(c.starts.lock().expect("lock").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn start_up_retries_transient_errors_until_the_deadline() {
    let stop = CancellationToken::new();
    let calls = Mutex::new(0u32);
    // Available at the fourth attempt.
    let got = retry_until("dep", Duration::from_secs(60), POLICY, &stop, || async {
        let mut n = calls.lock().expect("lock");
        *n += 1;
        if *n < 4 {
            Err(TestError(ErrorClass::TRANSIENT))
        } else {
            Ok(*n)
        }
    })
    .await
    .expect("available");
    assert_eq!(got, Some(4));

    // Never available: gives up once the next wait would pass the deadline.
    let begun = Instant::now();
    let e = retry_until("dep", Duration::from_secs(5), POLICY, &stop, || async {
        Err::<(), _>(TestError(ErrorClass::TRANSIENT))
    })
    .await
    .expect_err("gives up");
    assert!(e.0.is_transient());
    let waited = begun.elapsed();
    assert!(
        waited <= Duration::from_secs(5) && waited >= Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn start_up_gives_up_at_once_on_a_permanent_error() {
    let stop = CancellationToken::new();
    let begun = Instant::now();
    let calls = Mutex::new(0u32);
    let e = retry_until("dep", Duration::from_secs(60), POLICY, &stop, || async {
        *calls.lock().expect("lock") += 1;
        Err::<(), _>(TestError(ErrorClass::Definite { reason: "auth" }))
    })
    .await
    .expect_err("permanent");
    assert_eq!(e.0, ErrorClass::Definite { reason: "auth" });
    assert_eq!(*calls.lock().expect("lock"), 1);
    assert_eq!(begun.elapsed(), Duration::ZERO);
}

#[test]
fn chain_prints_each_cause_once() {
    #[derive(Debug, thiserror::Error)]
    #[error("source erp: {0}")]
    struct Repeats(#[source] std::io::Error);
    #[derive(Debug, thiserror::Error)]
    #[error("starting up")]
    struct Adds(#[source] std::io::Error);
    let io = || std::io::Error::other("connection refused");
    assert_eq!(chain(&Repeats(io())), "source erp: connection refused");
    assert_eq!(chain(&Adds(io())), "starting up: connection refused");
}

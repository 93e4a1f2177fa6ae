//! The batching sink against the Salesforce emulator, and the error and date helpers.

use super::encode::{date_of, utf8_percent_encode};
use super::errors::{error_code, record_error, single_record_errors};
use super::*;
use serde_json::json;
use std::collections::HashMap;

#[test]
fn dates() {
    assert_eq!(date_of(0), None);
    assert_eq!(
        date_of(1_700_000_000_000_000).as_deref(),
        Some("2023-11-14")
    );
    assert_eq!(date_of(951_782_400_000_000).as_deref(), Some("2000-02-29"));
}

#[test]
fn error_codes() {
    assert_eq!(
        error_code(r#"[{"message":"x","errorCode":"INVALID_SESSION_ID","fields":[]}]"#),
        "INVALID_SESSION_ID"
    );
    let e = record_error(
        "Contact",
        &json!([{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]),
        "body",
    );
    assert!(matches!(e, ApplyError::Definite { .. }));
    let e = record_error("Order", &json!([{"statusCode": "UNABLE_TO_LOCK_ROW"}]), "");
    assert!(matches!(e, ApplyError::Transient { .. }));
    assert_eq!(utf8_percent_encode("SO 1/2"), "SO%201%2F2");
    // A single upsert's 400: judged by its error code, like a collection record.
    let body = r#"[{"errorCode":"INVALID_EMAIL_ADDRESS","fields":["Email"],"message":"Email: invalid email address: x"}]"#;
    let errors = single_record_errors(body).expect("an error list");
    match record_error("Contact", &errors, body) {
        ApplyError::Definite { reason, .. } => assert_eq!(
            reason,
            "Contact INVALID_EMAIL_ADDRESS: Email: invalid email address: x"
        ),
        e => panic!("{e}"),
    }
    let body = r#"[{"errorCode":"UNABLE_TO_LOCK_ROW","fields":[],"message":"unable to obtain exclusive access"}]"#;
    let errors = single_record_errors(body).expect("an error list");
    assert!(matches!(
        record_error("Order", &errors, body),
        ApplyError::Transient { .. }
    ));
    assert!(single_record_errors("{\"errors\": 1}").is_none());
    assert!(single_record_errors("not json").is_none());
}

use std::future::Future;
use std::pin::pin;

use tributary_proto::retail::v1::{domain_event::Entity, Customer, EventMeta};
use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
use tributary_sandbox::{Fault, RunningEmulator};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Long enough that a batch which leaves did not wait it out.
const NEVER: u64 = 600_000;

fn target(sf: &RunningEmulator<Salesforce>, linger_ms: u64) -> SalesforceTarget {
    let (id, secret) = SalesforceOptions::default().clients[0].clone();
    let cfg: SalesforceSinkConfig = serde_json::from_value(json!({
        "base_url": sf.base_url(),
        "client_id": id,
        "client_secret": secret,
        "batch_linger_ms": linger_ms,
    }))
    .expect("a valid [sinks.salesforce]");
    SalesforceTarget::new(&cfg).expect("a Salesforce target")
}

fn customer(n: u32, version: u64) -> DomainEvent {
    DomainEvent {
        meta: Some(EventMeta {
            event_id: format!("ev-{n}-{version}"),
            entity: "customer".into(),
            event: "updated".into(),
            entity_key: format!("C-{n}"),
            entity_version: version,
            ..Default::default()
        }),
        entity: Some(Entity::Customer(Customer {
            customer_id: format!("C-{n}"),
            last_name: format!("Last{n}-v{version}"),
            ..Default::default()
        })),
    }
}

async fn apply(t: &SalesforceTarget, n: u32, version: u64) -> Result<Outcome, String> {
    t.apply(&customer(n, version), &mut EntityRecord::default(), "")
        .await
        .map_err(|e| e.to_string())
}

/// The records of each collection request, and the single upserts (as 1).
fn request_sizes(sf: &Salesforce) -> Vec<usize> {
    sf.requests()
        .matching("/services/data/")
        .iter()
        .map(|r| {
            r.json()
                .and_then(|b| b["records"].as_array().map(Vec::len))
                .unwrap_or(1)
        })
        .collect()
}

/// Polls `f` for `d`: `Some` if it completed.
async fn within<F: Future + Unpin>(d: Duration, f: &mut F) -> Option<F::Output> {
    tokio::time::timeout(d, f).await.ok()
}

#[tokio::test]
async fn a_batch_leaves_without_its_linger_once_no_lane_can_add() -> TestResult {
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let t = target(&sf, NEVER);
    let activity = t.activity().ok_or("batching is on")?;
    let _lanes: Vec<_> = (0..4).map(|_| activity.lane()).collect();
    let mut batch = pin!(futures::future::join_all((0..3).map(|n| apply(&t, n, 1))));
    // The fourth lane holds an event it has not handed in yet: the batch waits for it.
    assert!(within(Duration::from_millis(300), &mut batch)
        .await
        .is_none());
    // Idle, but the dispatcher may hand it the next message at any moment.
    let _idle = activity.idle();
    assert!(within(Duration::from_millis(300), &mut batch)
        .await
        .is_none());
    // The dispatcher is stuck behind a full lane: nothing can reach the idle lane.
    let _blocked = activity.dispatcher_blocked();
    let results = within(Duration::from_secs(30), &mut batch)
        .await
        .ok_or("the batch waited for its linger")?;
    for r in results {
        assert_eq!(r?, Outcome::Applied);
    }
    assert_eq!(
        request_sizes(&sf),
        vec![3],
        "one collection of the three records"
    );
    Ok(())
}

#[tokio::test]
async fn a_partial_batch_waits_for_the_request_in_flight() -> TestResult {
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let t = target(&sf, NEVER);
    let activity = t.activity().ok_or("batching is on")?;
    let first_lane = activity.lane();
    // The session first: the token request would otherwise take the fault below.
    assert_eq!(apply(&t, 0, 1).await?, Outcome::Applied);
    // The next request is applied at once and answered 1.5 s later.
    sf.faults()
        .fail_next(1, Fault::TimeoutAfterApply(Duration::from_millis(1500)));
    let mut first = pin!(apply(&t, 1, 1));
    let held = within(Duration::from_millis(300), &mut first).await;
    assert!(held.is_none());
    assert_eq!(sf.writes().len(), 2, "sent alone (no other lane)");
    // A second lane's record: no lane can add, but the answer in flight brings the first
    // lane back, maybe with a record for the same request.
    let _second_lane = activity.lane();
    let mut second = pin!(apply(&t, 2, 1));
    let held = within(Duration::from_millis(300), &mut second).await;
    assert!(held.is_none());
    assert_eq!(sf.writes().len(), 2, "the second record was sent");
    let answer = within(Duration::from_secs(30), &mut first).await;
    assert_eq!(answer.ok_or("no answer")??, Outcome::Applied);
    // The first lane has nothing more: the second record goes.
    drop(first_lane);
    let answer = within(Duration::from_secs(30), &mut second).await;
    assert_eq!(
        answer.ok_or("the batch waited for its linger")??,
        Outcome::Applied
    );
    assert_eq!(sf.writes().len(), 3);
    assert_eq!(request_sizes(&sf), vec![1, 1, 1]);
    Ok(())
}

#[tokio::test]
async fn lanes_batched_together_keep_each_entitys_order() -> TestResult {
    let sf = salesforce::start(SalesforceOptions::default()).await?;
    let t = std::sync::Arc::new(target(&sf, 20));
    let activity = t.activity().ok_or("batching is on")?;
    let (lanes, entities_per_lane, versions) = (16u32, 8u32, 5u64);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (t, activity) = (t.clone(), activity.clone());
        tasks.spawn(async move {
            // Like a sink lane: one record in flight, the next event after its answer.
            let _lane = activity.lane();
            for version in 1..=versions {
                for e in 0..entities_per_lane {
                    apply(&t, lane * entities_per_lane + e, version).await?;
                }
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let writes = sf.writes();
    assert_eq!(
        writes.len() as u64,
        u64::from(lanes * entities_per_lane) * versions
    );
    let mut last: HashMap<String, u64> = HashMap::new();
    for w in &writes {
        let name = w.fields["LastName"].as_str().unwrap_or_default();
        let version: u64 = name.rsplit("-v").next().unwrap_or("").parse()?;
        let before = last.insert(w.external_id.clone(), version).unwrap_or(0);
        assert_eq!(
            version,
            before + 1,
            "{}: v{version} after v{before}",
            w.external_id
        );
    }
    assert!(
        request_sizes(&sf).iter().any(|n| *n > 1),
        "records of several lanes shared a request"
    );
    Ok(())
}

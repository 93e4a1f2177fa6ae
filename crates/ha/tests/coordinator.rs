//! Three replicas (coordinators) on a 3-node JetStream cluster share units: every unit has one
//! acting owner at a time (checked through the fence-approved "side effects" each unit records),
//! units spread, move to the survivors after a crash within TTL + 2 s, and move back when a
//! replica joins; a NATS node (the lease bucket's leader) can die without two owners.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tributary_ha::{Coordinator, CoordinatorOptions, LeaseStore, UnitContext, UnitSpec};
use tributary_testkit::NatsCluster;

const TTL: Duration = Duration::from_secs(3);
const BUCKET: &str = "tributary_leases";

/// (unit, instance, token, at) for every side effect a fence allowed.
type Log = Arc<Mutex<Vec<(String, String, u64, Instant)>>>;

fn units(n: usize, log: &Log, instance: &str) -> Vec<UnitSpec> {
    (0..n)
        .map(|i| {
            let log = log.clone();
            let instance = instance.to_string();
            UnitSpec {
                name: format!("unit-{i}"),
                run: Arc::new(move |ctx: UnitContext| {
                    let log = log.clone();
                    let instance = instance.clone();
                    Box::pin(async move {
                        loop {
                            // A side effect: allowed only by the fence.
                            match ctx.fence.check() {
                                Ok(token) => log.lock().unwrap().push((
                                    ctx.unit.clone(),
                                    instance.clone(),
                                    token,
                                    Instant::now(),
                                )),
                                Err(_) => return Ok(()),
                            }
                            tokio::select! {
                                _ = ctx.stop.cancelled() => return Ok(()),
                                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                            }
                        }
                    })
                }),
            }
        })
        .collect()
}

struct Replica {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tributary_ha::HaError>>,
}

async fn start_replica(cluster: &NatsCluster, instance: &str, n: usize, log: &Log) -> Replica {
    let client = cluster.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let store = LeaseStore::open(&js, BUCKET, TTL, 3, instance)
        .await
        .expect("lease bucket");
    let coordinator = Coordinator::new(
        store,
        units(n, log, instance),
        CoordinatorOptions {
            drain_timeout: Duration::from_secs(2),
        },
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(coordinator.run(stop.clone()));
    Replica { stop, task }
}

/// The latest owner per unit that acted after `since`.
fn owners_since(log: &Log, since: Instant) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (unit, instance, _, at) in log.lock().unwrap().iter() {
        if *at >= since {
            out.insert(unit.clone(), instance.clone());
        }
    }
    out
}

/// No two instances act on a unit in overlapping periods, and tokens only grow.
fn assert_one_owner_at_a_time(log: &Log) {
    let log = log.lock().unwrap();
    let mut per_unit: BTreeMap<&str, Vec<(&str, u64, Instant)>> = BTreeMap::new();
    for (unit, instance, token, at) in log.iter() {
        per_unit
            .entry(unit)
            .or_default()
            .push((instance, *token, *at));
    }
    for (unit, mut events) in per_unit {
        events.sort_by_key(|e| e.2);
        // Split into ownership periods; a period's instance must not reappear with an older
        // token after another instance acted (that would be two owners interleaving).
        let mut last_token = 0;
        let mut last_owner = "";
        for (instance, token, _) in events {
            if instance != last_owner {
                assert!(
                    token > last_token,
                    "{unit}: {instance} acted with token {token} after {last_owner} had {last_token}"
                );
                last_owner = instance;
            }
            assert!(token >= last_token, "{unit}: token went back");
            last_token = token;
        }
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, deadline: Duration, f: F) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn replicas_share_units_fail_over_and_rebalance_with_one_owner_at_a_time() {
    let mut cluster = NatsCluster::start(3).await.expect("3-node cluster");
    let log: Log = Arc::default();
    const N: usize = 6;
    let r1 = start_replica(&cluster, "r1", N, &log).await;
    let r2 = start_replica(&cluster, "r2", N, &log).await;
    let r3 = start_replica(&cluster, "r3", N, &log).await;

    // Every unit owned, spread two each.
    let t0 = Instant::now();
    wait_for("a spread of 2/2/2", Duration::from_secs(20), || {
        let owners = owners_since(&log, Instant::now() - Duration::from_millis(300));
        owners.len() == N
            && ["r1", "r2", "r3"]
                .iter()
                .all(|r| owners.values().filter(|o| o == r).count() == 2)
    })
    .await;
    eprintln!("spread after {:?}", t0.elapsed());

    // Crash r3 (no release, no drain: its leases must expire).
    r3.task.abort();
    let crashed = Instant::now();
    let took = wait_for("r3's units on the survivors", TTL * 4, || {
        let owners = owners_since(&log, Instant::now() - Duration::from_millis(300));
        owners.len() == N && owners.values().all(|o| o != "r3")
    })
    .await;
    eprintln!("failover after {took:?} (TTL {TTL:?})");
    assert!(
        crashed.elapsed() < TTL + Duration::from_secs(4),
        "failover took {:?}",
        crashed.elapsed()
    );

    // The bucket's leader node dies; leases stay single-owner and get renewed by the others.
    let client = cluster.connect().await.unwrap();
    let js = async_nats::jetstream::new(client);
    let leader = cluster
        .wait_stream_leader(&js, &format!("KV_{BUCKET}"), Duration::from_secs(20))
        .await
        .expect("bucket leader");
    cluster.node(leader).kill().await.expect("kill the leader");
    tokio::time::sleep(TTL * 2).await;
    wait_for("all units owned after the node loss", TTL * 5, || {
        owners_since(&log, Instant::now() - Duration::from_millis(300)).len() == N
    })
    .await;
    cluster
        .node(leader)
        .start_again()
        .await
        .expect("restart node");

    // A new replica joins: it gets its share by hand-over, not by two owners.
    let r4 = start_replica(&cluster, "r4", N, &log).await;
    wait_for("r4 owns its share", Duration::from_secs(20), || {
        let owners = owners_since(&log, Instant::now() - Duration::from_millis(300));
        owners.len() == N && owners.values().filter(|o| *o == "r4").count() == 2
    })
    .await;

    for r in [&r1, &r2, &r4] {
        r.stop.cancel();
    }
    for r in [r1, r2, r4] {
        r.task.await.unwrap().expect("clean stop");
    }
    assert_one_owner_at_a_time(&log);
}

#[tokio::test]
async fn healthz_reports_a_lease_whose_renewal_is_overdue() {
    let mut nats = tributary_testkit::NatsServer::start().await.expect("nats");
    let client = nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let store = LeaseStore::open(&js, BUCKET, TTL, 1, "solo")
        .await
        .expect("lease bucket");
    let log: Log = Arc::default();
    let coordinator =
        Coordinator::new(store, units(1, &log, "solo"), CoordinatorOptions::default());
    let health = coordinator.lease_health();
    let stop = CancellationToken::new();
    let task = tokio::spawn(coordinator.run(stop.clone()));
    wait_for("the unit acquired", Duration::from_secs(10), || {
        !owners_since(&log, Instant::now() - Duration::from_millis(200)).is_empty()
    })
    .await;
    assert!(health.check().is_ok());
    nats.kill().await.expect("kill nats");
    let cut = Instant::now();
    let mut overdue = None;
    while cut.elapsed() < TTL {
        if let Err(why) = health.check() {
            overdue = Some(why);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let why = overdue.expect("healthz turned unhealthy before the lease ran out");
    assert!(why.contains("unit-0"), "{why}");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
}

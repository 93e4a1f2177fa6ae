//! Leases against real nats-servers: one holder at a time, expiry, renewal, release, and a holder
//! that stops acting before anyone else can take over.

use std::time::{Duration, Instant};

use tributary_ha::LeaseStore;
use tributary_testkit::NatsServer;

const TTL: Duration = Duration::from_secs(2);

async fn store(nats: &NatsServer, instance: &str) -> LeaseStore {
    let client = nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    LeaseStore::open(&js, "leases", TTL, 1, instance)
        .await
        .expect("open the lease bucket")
}

#[tokio::test]
async fn one_holder_at_a_time_and_release_hands_over_at_once() {
    let nats = NatsServer::start().await.expect("nats");
    let a = store(&nats, "a").await;
    let b = store(&nats, "b").await;
    let lease = a
        .try_acquire("source:erp")
        .await
        .unwrap()
        .expect("a acquires");
    assert!(
        b.try_acquire("source:erp").await.unwrap().is_none(),
        "b must not acquire"
    );
    let holder = b.holder("source:erp").await.unwrap().expect("a holder");
    assert_eq!(holder.instance, "a");
    assert_eq!(holder.revision, lease.revision());
    let fence = lease.fence();
    assert!(fence.check().is_ok());
    lease.release().await.expect("release");
    assert!(fence.check().is_err(), "a released lease fences at once");
    let taken = b
        .try_acquire("source:erp")
        .await
        .unwrap()
        .expect("b acquires after release");
    assert!(taken.revision() > holder.revision, "a new fencing token");
}

#[tokio::test]
async fn an_unrenewed_lease_fences_its_holder_before_anyone_can_take_it() {
    let nats = NatsServer::start().await.expect("nats");
    let a = store(&nats, "a").await;
    let b = store(&nats, "b").await;
    let acquired = Instant::now();
    let lease = a.try_acquire("u").await.unwrap().expect("a acquires");
    let fence = lease.fence();
    // a never renews (a paused or dead holder). b polls.
    let mut fenced_at = None;
    let taken_at = loop {
        if fenced_at.is_none() && fence.check().is_err() {
            fenced_at = Some(acquired.elapsed());
        }
        if let Some(l) = b.try_acquire("u").await.unwrap() {
            break (acquired.elapsed(), l);
        }
        assert!(acquired.elapsed() < TTL * 5, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fenced_at = fenced_at.expect("a was fenced before b acquired");
    assert!(
        fenced_at < TTL,
        "a stops acting before the TTL: {fenced_at:?}"
    );
    assert!(taken_at.0 >= TTL, "b only after the TTL: {:?}", taken_at.0);
    assert!(fenced_at < taken_at.0);
    // a's renew now loses the compare-and-set.
    let mut lease = lease;
    assert!(lease.renew().await.is_err());
    assert!(fence.is_lost());
}

#[tokio::test]
async fn a_renewed_lease_is_kept_and_its_token_grows() {
    let nats = NatsServer::start().await.expect("nats");
    let a = store(&nats, "a").await;
    let b = store(&nats, "b").await;
    let mut lease = a.try_acquire("u").await.unwrap().expect("a acquires");
    let first = lease.revision();
    let stop = tokio_util::sync::CancellationToken::new();
    let fence = lease.fence();
    let stopper = stop.clone();
    let holder = tokio::spawn(async move {
        let held = lease.hold(&stopper).await;
        (lease, held)
    });
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        assert!(
            b.try_acquire("u").await.unwrap().is_none(),
            "b acquired a renewed lease"
        );
        assert!(fence.check().is_ok());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let (lease, held) = holder.await.unwrap();
    held.expect("still held");
    assert!(lease.revision() > first);
    lease.release().await.unwrap();
}

#[tokio::test]
async fn a_holder_cut_off_from_nats_stops_before_the_ttl() {
    let mut nats = NatsServer::start().await.expect("nats");
    let a = store(&nats, "a").await;
    let mut lease = a.try_acquire("u").await.unwrap().expect("a acquires");
    let fence = lease.fence();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    let holder = tokio::spawn(async move { lease.hold(&stopper).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cut = Instant::now();
    nats.kill().await.expect("kill nats");
    let held = tokio::time::timeout(TTL * 2, holder)
        .await
        .expect("hold returns")
        .unwrap();
    assert!(held.is_err(), "the lease is lost");
    assert!(fence.check().is_err());
    assert!(fence.lost().is_cancelled());
    // Counted from the cut, at most the TTL (the last renew was before it).
    assert!(cut.elapsed() < TTL, "self-fenced after {:?}", cut.elapsed());
}

#[tokio::test]
async fn a_bucket_made_with_another_ttl_is_refused() {
    let nats = NatsServer::start().await.expect("nats");
    let _ = store(&nats, "a").await;
    let client = nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let err = LeaseStore::open(&js, "leases", TTL * 2, 1, "b")
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("ha.lease_ttl_ms"), "{err}");
}

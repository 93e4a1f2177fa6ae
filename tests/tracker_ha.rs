//! The order-to-cash tracker under `[ha]`: two replicas share it through its lease (unit
//! `tracker`); the owner is SIGKILLed while orders held back keep arriving, the other replica
//! takes the unit over from the stored records and the consumer's ack floor, and every held
//! order still gets its `order.stuck` exactly once and its milestones in KV.

#[path = "support/o2c.rs"]
mod o2c;
#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use o2c::*;
use support::*;
use tributary_testkit::NatsServer;

const BUCKET: &str = "tributary_leases";

fn replica(dir: &std::path::Path, nats: &NatsServer, instance: &str) -> Result<(PathBuf, String)> {
    let addr = format!("127.0.0.1:{}", tributary_testkit::free_port());
    let text = format!(
        "http_listen = \"{addr}\"\n[nats]\nservers = [\"{}\"]\n\
         [ha]\ninstance_id = \"{instance}\"\nlease_ttl_ms = 3000\n\
         [tracker]\nsweep_interval_secs = 1\nunallocated_after_secs = 1800\n",
        nats.url()
    );
    let sub = dir.join(instance);
    std::fs::create_dir_all(&sub)?;
    Ok((write_config(&sub, &text)?, addr))
}

async fn owner(js: &jetstream::Context) -> Option<String> {
    let kv = js.get_key_value(BUCKET).await.ok()?;
    let value = kv.get("unit.tracker").await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
    v.get("instance")?.as_str().map(str::to_string)
}

/// Orders `from..to` placed two hours ago, never confirmed; every other one also has a
/// fresh order that ships (so the tracker has work beside the held ones).
async fn publish_orders(js: &jetstream::Context, from: usize, to: usize) -> Result<()> {
    let now = now_micros();
    for i in from..to {
        let held = format!("H-{i}");
        let placed = now - 7200 * S + i as i64 * S;
        let e = event(
            "order",
            "placed",
            &held,
            1,
            placed,
            order(&held, "placed", placed),
        );
        publish(js, &e, &[format!("{held}/1")]).await?;
        let shipped = format!("OK-{i}");
        let e = event(
            "order",
            "placed",
            &shipped,
            1,
            now,
            order(&shipped, "placed", now),
        );
        publish(js, &e, &[format!("{shipped}/1")]).await?;
        let e = event(
            "fulfillment",
            "updated",
            &shipped,
            2,
            now + S,
            fulfillment(&shipped, "shipped", now + S),
        );
        publish(js, &e, &[format!("{shipped}/2")]).await?;
    }
    Ok(())
}

/// Waits until `o2c.v1.order.stuck` names `n` orders; returns them sorted.
async fn stuck_orders(
    client: &async_nats::Client,
    n: usize,
    logs: &dyn Fn() -> String,
) -> Result<Vec<String>> {
    wait_until(Duration::from_secs(90), async || {
        let mut stuck = o2c_subjects(client)
            .await?
            .remove("o2c.v1.order.stuck")
            .unwrap_or_default();
        stuck.sort();
        Ok(if stuck.len() >= n {
            Check::Done(stuck)
        } else {
            Check::Pending(format!("{} of {n} order.stuck\n{}", stuck.len(), logs()))
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracker_owner_is_replaced_and_nothing_is_flagged_twice() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    create_retail(&js).await?;
    publish_orders(&js, 0, 10).await?;

    let dir = tempfile::tempdir()?;
    let (c1, _) = replica(dir.path(), &nats, "r1")?;
    let (c2, _) = replica(dir.path(), &nats, "r2")?;
    let mut replicas = vec![("r1", Bridge::spawn(&c1)?), ("r2", Bridge::spawn(&c2)?)];
    let logs = |r: &[(&str, Bridge)]| {
        r.iter()
            .map(|(n, b)| format!("--- {n}\n{}", b.log()))
            .collect::<String>()
    };
    let first = stuck_orders(&client, 10, &|| logs(&replicas)).await?;
    let held: Vec<String> = (0..10)
        .map(|i| format!("H-{i}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(first, held);

    // SIGKILL the owner; more held orders arrive while the unit has none.
    let killed = wait_until(Duration::from_secs(30), async || {
        Ok(match owner(&js).await {
            Some(o) => Check::Done(o),
            None => Check::Pending("no owner of unit tracker".into()),
        })
    })
    .await?;
    let at = replicas
        .iter()
        .position(|(n, _)| *n == killed)
        .expect("the owner is a replica");
    let (_, bridge) = replicas.remove(at);
    bridge.kill9().await?;
    publish_orders(&js, 10, 20).await?;

    let all = stuck_orders(&client, 20, &|| logs(&replicas)).await?;
    let mut want: Vec<String> = (0..20).map(|i| format!("H-{i}")).collect();
    want.sort();
    assert_eq!(all, want, "every held order flagged exactly once");
    let survivor = owner(&js).await.unwrap_or_default();
    assert!(
        !survivor.is_empty() && survivor != killed,
        "the unit moved: {survivor}"
    );

    // The shipped orders' records are complete on the new owner too.
    let kv = js.get_key_value("tributary_tracker").await?;
    for i in [0, 15] {
        let record = kv
            .get(format!("order.OK-{i}"))
            .await?
            .expect("a record per order");
        let record: serde_json::Value = serde_json::from_slice(&record)?;
        assert!(
            record["milestones"]["shipped"].is_object(),
            "OK-{i}: {record}"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = o2c_subjects(&client)
        .await?
        .remove("o2c.v1.order.stuck")
        .unwrap_or_default();
    assert_eq!(
        stuck.len(),
        20,
        "no exception published twice after the takeover"
    );
    for (_, bridge) in replicas {
        assert_eq!(bridge.stop().await?, 0);
    }
    Ok(())
}

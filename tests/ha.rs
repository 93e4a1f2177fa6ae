//! High availability: several bridge replicas on a 3-node JetStream cluster share the sources
//! through leases. Owners are SIGKILLed, paused (SIGSTOP) and restarted; every change lands in
//! its stream exactly once, in commit order, and a replica that lost its lease stores,
//! confirms and applies nothing.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;
use support::*;
use tributary_testkit::{NatsCluster, PgCluster};

const TTL_MS: u64 = 3000;
const BUCKET: &str = "tributary_leases";

async fn setup_db(pg: &PgCluster, db: &str) -> Result<()> {
    pg.create_database(db).await?;
    let c = pg.connect(db).await?;
    c.batch_execute(ORDERS_DDL).await?;
    c.batch_execute(&format!("CREATE PUBLICATION pub_{db} FOR TABLE orders"))
        .await?;
    Ok(())
}

/// One config per replica: its own HTTP port and instance id; streams and leases R3.
fn replica_config(
    dir: &std::path::Path,
    pg: &PgCluster,
    cluster: &NatsCluster,
    sources: &[SourceSpec],
    instance: &str,
) -> Result<PathBuf> {
    let urls = cluster.urls().join("\", \"");
    let mut text = config_text(pg, &urls, sources);
    text.push_str(&format!(
        "\n[nats.stream]\nreplicas = 3\n\n[ha]\ninstance_id = \"{instance}\"\nlease_ttl_ms = {TTL_MS}\nreplicas = 3\n"
    ));
    let sub = dir.join(instance);
    std::fs::create_dir_all(&sub)?;
    write_config(&sub, &text)
}

/// The instance holding `unit`'s lease, if any.
async fn owner(nats: &async_nats::Client, unit: &str) -> Option<String> {
    let js = async_nats::jetstream::new(nats.clone());
    let kv = js.get_key_value(BUCKET).await.ok()?;
    let key = format!("unit.{}", unit.replace(' ', "=20"));
    let value = kv.get(key).await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
    v.get("instance")?.as_str().map(str::to_string)
}

async fn wait_owner(nats: &async_nats::Client, unit: &str, not: Option<&str>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(o) = owner(nats, unit).await {
            if Some(o.as_str()) != not {
                return Ok(o);
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("no new owner of {unit} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `n` replicas have a heartbeat in the lease bucket; on failure the logs say why a
/// replica is missing (a replica that died at start would silently leave the test with fewer
/// standbys than it counts on).
async fn wait_members(
    nats: &async_nats::Client,
    n: usize,
    logs: &dyn Fn() -> String,
) -> Result<()> {
    let js = async_nats::jetstream::new(nats.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut members = Vec::new();
        if let Ok(kv) = js.get_key_value(BUCKET).await {
            for key in ["r1", "r2", "r3", "r4"] {
                if let Ok(Some(_)) = kv.get(format!("member.{key}")).await {
                    members.push(key);
                }
            }
        }
        if members.len() == n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {members:?} of {n} replicas joined within 60 s\nlogs:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The owner once it has not changed for 2 s (at start the first replica up takes every unit,
/// then hands the others' share over as they join).
async fn settled_owner(nats: &async_nats::Client, unit: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut current = wait_owner(nats, unit, None).await?;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        anyhow::ensure!(Instant::now() < deadline, "{unit}: ownership never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = owner(nats, unit).await.unwrap_or_default();
        if now != current {
            current = now;
            since = Instant::now();
        }
    }
    Ok(current)
}

/// SIGTERM: the replica drains, hands its units over and exits 0 (its log on failure).
async fn stop_ok(bridge: Bridge) -> Result<()> {
    let log = bridge.log();
    let code = bridge.stop().await?;
    assert_eq!(code, 0, "replica exited {code}:\n{log}");
    Ok(())
}

async fn verify_exactly_once(
    pg: &PgCluster,
    nats: &async_nats::Client,
    db: &str,
    stream: &str,
    expected: usize,
    logs: &dyn Fn() -> String,
) -> Result<()> {
    wait_for_messages(nats, stream, expected as u64, Duration::from_secs(300))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nlogs:\n{}", logs()))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = read_stream(nats, stream).await?;
    assert_eq!(
        received.len(),
        expected,
        "{stream}: every change exactly once"
    );
    check_stream_invariants(&received)?;
    let c = pg.connect(db).await?;
    let replayed = replay(&received, "orders")?;
    let actual = table_state(&c, ORDERS_STATE_SQL).await?;
    assert!(
        replayed == actual,
        "{stream}: replayed state differs from the table"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_sigkilled_five_times_lose_and_duplicate_nothing() -> Result<()> {
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    setup_db(&pg, "erp").await?;
    setup_db(&pg, "pos").await?;
    let sources = [SourceSpec::new("erp", "erp"), SourceSpec::new("pos", "pos")];
    let dir = tempfile::tempdir()?;
    let mut replicas: BTreeMap<String, (PathBuf, Bridge)> = BTreeMap::new();
    for r in ["r1", "r2", "r3"] {
        let config = replica_config(dir.path(), &pg, &cluster, &sources, r)?;
        let bridge = Bridge::spawn(&config)?;
        replicas.insert(r.to_string(), (config, bridge));
    }
    let nats = cluster.connect().await?;
    let erp_owner = settled_owner(&nats, "source erp").await?;
    let pos_owner = settled_owner(&nats, "source pos").await?;
    assert_ne!(
        erp_owner, pos_owner,
        "the two sources spread over two replicas"
    );
    eprintln!("owners: erp {erp_owner}, pos {pos_owner}");
    let all_logs = |replicas: &BTreeMap<String, (PathBuf, Bridge)>| {
        replicas
            .iter()
            .map(|(r, (_, b))| format!("--- {r}\n{}", b.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_members(&nats, 3, &|| all_logs(&replicas)).await?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &replicas[&erp_owner].1).await?;

    let per_source = 20_000;
    let erp_writer = pg.connect("erp").await?;
    let pos_writer = pg.connect("pos").await?;
    let erp = tokio::spawn(async move { orders_workload(&erp_writer, per_source, 21, 1).await });
    let pos = tokio::spawn(async move { orders_workload(&pos_writer, per_source, 22, 1).await });
    for round in 0..5 {
        let unit = if round % 2 == 0 {
            "source erp"
        } else {
            "source pos"
        };
        let pause = rand::rng().random_range(500..2500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = wait_owner(&nats, unit, None).await?;
        let (config, bridge) = replicas.remove(&victim).expect("a known replica");
        let killed = Instant::now();
        bridge.kill9().await?;
        let next = wait_owner(&nats, unit, Some(&victim)).await?;
        eprintln!(
            "round {round}: {unit} owner {victim} SIGKILLed after {pause} ms; {next} took over after {:?}",
            killed.elapsed()
        );
        replicas.insert(victim.clone(), (config.clone(), Bridge::spawn(&config)?));
    }
    let erp_written = erp.await??;
    let pos_written = pos.await??;
    let logs = || all_logs(&replicas);
    verify_exactly_once(&pg, &nats, "erp", "CDC_ERP", erp_written, &logs).await?;
    verify_exactly_once(&pg, &nats, "pos", "CDC_POS", pos_written, &logs).await?;
    // `tributary status` lists the replicas and who owns each source (the last replica
    // restarted may still be joining: ask until it has).
    let (_, config) = replicas
        .iter()
        .next()
        .map(|(r, (c, _))| (r.clone(), c.clone()))
        .expect("a replica");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["status", "--format", "json", "--config"])
            .arg(&config)
            .output()
            .await?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            anyhow::anyhow!(
                "status output: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let group = &status["replicas"];
        let members = group["members"].as_array().map(Vec::len);
        let units: Vec<&str> = group["leases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["unit"].as_str())
            .collect();
        if members == Some(3) && units == ["source erp", "source pos"] {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "status never showed 3 replicas and both units: {group}\nlogs:\n{}",
            all_logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A replica that found the slot busy waited (and took it over); none crashed.
    for (r, (_, bridge)) in replicas.iter_mut() {
        assert!(
            bridge.child.try_wait()?.is_none(),
            "replica {r} exited:\n{}",
            bridge.log()
        );
    }
    for (_, (_, bridge)) in replicas {
        stop_ok(bridge).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_woken_after_losing_its_lease_stores_nothing_and_steps_down() -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    setup_db(&pg, "erp").await?;
    let sources = [SourceSpec::new("erp", "erp")];
    let dir = tempfile::tempdir()?;
    let mut replicas: BTreeMap<String, Bridge> = BTreeMap::new();
    for r in ["r1", "r2"] {
        let config = replica_config(dir.path(), &pg, &cluster, &sources, r)?;
        replicas.insert(r.to_string(), Bridge::spawn(&config)?);
    }
    let nats = cluster.connect().await?;
    let zombie = settled_owner(&nats, "source erp").await?;
    let all_logs = |replicas: &BTreeMap<String, Bridge>| {
        replicas
            .iter()
            .map(|(r, b)| format!("--- {r}\n{}", b.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_members(&nats, 2, &|| all_logs(&replicas)).await?;
    wait_streaming(&pg, &["slot_erp"], &replicas[&zombie]).await?;
    let writer = pg.connect("erp").await?;
    let first = orders_workload(&writer, 2_000, 31, 1).await?;
    wait_for_messages(&nats, "CDC_ERP", first as u64, Duration::from_secs(60)).await?;

    // Freeze the owner for 2 × TTL while changes keep coming.
    let pid = Pid::from_raw(replicas[&zombie].pid());
    kill(pid, Signal::SIGSTOP)?;
    let frozen = Instant::now();
    let writes = tokio::spawn(async move {
        let n = orders_workload(&writer, 3_000, 32, 100_000).await?;
        Ok::<_, anyhow::Error>((writer, n))
    });
    let standby = wait_owner(&nats, "source erp", Some(&zombie))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nlogs:\n{}", all_logs(&replicas)))?;
    let (writer, second) = writes.await??;
    wait_for_messages(
        &nats,
        "CDC_ERP",
        (first + second) as u64,
        Duration::from_secs(60),
    )
    .await?;
    let remaining = Duration::from_millis(2 * TTL_MS).saturating_sub(frozen.elapsed());
    tokio::time::sleep(remaining).await;
    eprintln!(
        "{standby} took over and published; waking {zombie} after {:?}",
        frozen.elapsed()
    );
    kill(pid, Signal::SIGCONT)?;

    // More changes after the wake-up: only the standby may store them.
    let third = orders_workload(&writer, 1_000, 33, 200_000).await?;
    let total = first + second + third;
    let logs = || all_logs(&replicas);
    verify_exactly_once(&pg, &nats, "erp", "CDC_ERP", total, &logs).await?;
    // The woken replica noticed it had lost the lease and stepped down (it may own the unit
    // again later, by a hand-over under a new lease: the assignment prefers it).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = replicas[&zombie].log();
        if log.contains("self-fenced") || log.contains("lease taken over") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the woken owner never stepped down:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The slot was confirmed only by the standby: its confirmed position covers every change.
    let c = pg.connect("postgres").await?;
    let confirmed = slot_confirmed(&c, "slot_erp").await?.unwrap_or_default();
    let current: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    assert!(lsn(&confirmed) > 0 && lsn(&confirmed) <= lsn(&current));
    for (_, bridge) in replicas {
        stop_ok(bridge).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_node_leading_the_source_stream_dies_mid_workload() -> Result<()> {
    let mut cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    setup_db(&pg, "erp").await?;
    let sources = [SourceSpec::new("erp", "erp")];
    let dir = tempfile::tempdir()?;
    let mut replicas = Vec::new();
    for r in ["r1", "r2"] {
        let config = replica_config(dir.path(), &pg, &cluster, &sources, r)?;
        replicas.push(Bridge::spawn(&config)?);
    }
    let nats = cluster.connect().await?;
    settled_owner(&nats, "source erp").await?;
    wait_streaming(&pg, &["slot_erp"], &replicas[0]).await?;
    let writer = pg.connect("erp").await?;
    let workload = tokio::spawn(async move { orders_workload(&writer, 15_000, 41, 1).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let js = async_nats::jetstream::new(nats.clone());
    let leader = cluster
        .wait_stream_leader(&js, "CDC_ERP", Duration::from_secs(30))
        .await?;
    cluster.node(leader).kill().await?;
    eprintln!("killed n{} (leader of CDC_ERP)", leader + 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.node(leader).start_again().await?;
    let written = workload.await??;
    let logs = || {
        replicas
            .iter()
            .map(|b| b.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    verify_exactly_once(&pg, &nats, "erp", "CDC_ERP", written, &logs).await?;
    for bridge in replicas {
        stop_ok(bridge).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() -> Result<()> {
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start().await?;
    setup_db(&pg, "erp").await?;
    setup_db(&pg, "pos").await?;
    let sources = [SourceSpec::new("erp", "erp"), SourceSpec::new("pos", "pos")];
    let dir = tempfile::tempdir()?;
    let mut replicas: BTreeMap<String, (PathBuf, Bridge)> = BTreeMap::new();
    for r in ["r1", "r2", "r3"] {
        let config = replica_config(dir.path(), &pg, &cluster, &sources, r)?;
        replicas.insert(r.to_string(), (config.clone(), Bridge::spawn(&config)?));
    }
    let nats = cluster.connect().await?;
    settled_owner(&nats, "source erp").await?;
    settled_owner(&nats, "source pos").await?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &replicas["r1"].1).await?;

    // Watch ownership every 25 ms: the longest time each unit had no owner.
    let watch_nats = nats.clone();
    let watching = tokio::spawn(async move {
        let mut longest: BTreeMap<&str, Duration> = BTreeMap::new();
        let mut gap_since: BTreeMap<&str, Instant> = BTreeMap::new();
        let end = Instant::now() + Duration::from_secs(45);
        while Instant::now() < end {
            for unit in ["source erp", "source pos"] {
                if owner(&watch_nats, unit).await.is_some() {
                    if let Some(since) = gap_since.remove(unit) {
                        let gap = since.elapsed();
                        let l = longest.entry(unit).or_default();
                        *l = (*l).max(gap);
                    }
                } else {
                    gap_since.entry(unit).or_insert_with(Instant::now);
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        longest
    });
    let erp_writer = pg.connect("erp").await?;
    let pos_writer = pg.connect("pos").await?;
    let erp = tokio::spawn(async move { orders_workload(&erp_writer, 12_000, 51, 1).await });
    let pos = tokio::spawn(async move { orders_workload(&pos_writer, 12_000, 52, 1).await });
    for r in ["r1", "r2", "r3"] {
        let (config, bridge) = replicas.remove(r).expect("replica");
        let stopped = Instant::now();
        let code = bridge.stop().await?;
        assert_eq!(code, 0, "{r} stops cleanly on SIGTERM");
        eprintln!("{r}: SIGTERM → exited in {:?}", stopped.elapsed());
        replicas.insert(r.to_string(), (config.clone(), Bridge::spawn(&config)?));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let erp_written = erp.await??;
    let pos_written = pos.await??;
    let logs = || {
        replicas
            .iter()
            .map(|(r, (_, b))| format!("--- {r}\n{}", b.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    verify_exactly_once(&pg, &nats, "erp", "CDC_ERP", erp_written, &logs).await?;
    verify_exactly_once(&pg, &nats, "pos", "CDC_POS", pos_written, &logs).await?;
    let longest = watching.await?;
    eprintln!("longest time without an owner during the rolling restart: {longest:?}");
    for (_, (_, bridge)) in replicas {
        stop_ok(bridge).await?;
    }
    Ok(())
}

//! `failover`: how long a source has no owner when its replica dies (SIGKILL) or is stopped
//! (SIGTERM), as distributions over many trials. Two replicas share one source on a local
//! 3-node JetStream cluster (R3 streams and leases); a writer commits a row every 10 ms; a trial
//! ends when the stream holds a change published by the new owner.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tributary_testkit::{NatsCluster, PgCluster, PgOptions};

use crate::bridge::{find_bridge_binary, signal, Bridge};
use crate::env::toml_string;

pub struct Args {
    pub trials: usize,
    pub ttl_ms: u64,
    pub bridge_binary: Option<PathBuf>,
}

const UNIT: &str = "source erp";
const STREAM: &str = "CDC_ERP";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match &args.bridge_binary {
        Some(b) => b.clone(),
        None => find_bridge_binary()?,
    };
    let cluster = NatsCluster::start(3).await?;
    let pg = PgCluster::start_with(PgOptions::default()).await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(
        "CREATE TABLE beats (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
         CREATE PUBLICATION pub_erp FOR TABLE beats;",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut replicas = Vec::new();
    for r in ["r1", "r2"] {
        let config = write_config(dir.path(), &pg, &cluster, r, args.ttl_ms)?;
        let bridge = Bridge::spawn(&binary, &config, dir.path().join(format!("{r}.log")))?;
        replicas.push((r.to_string(), config, Some(bridge)));
    }
    let nats = cluster.connect().await?;
    let js = async_nats::jetstream::new(nats);
    let writer = tokio::spawn(async move {
        loop {
            if db
                .execute("INSERT INTO beats DEFAULT VALUES", &[])
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    settle(&js).await?;
    let mut kill = Vec::new();
    let mut term = Vec::new();
    for trial in 0..args.trials * 2 {
        let graceful = trial % 2 == 1;
        let owner = settle(&js).await?;
        let slot = replicas
            .iter_mut()
            .find(|(r, _, _)| *r == owner)
            .context("the owner is one of ours")?;
        let bridge = slot.2.take().context("the owner is running")?;
        let began = Instant::now();
        if graceful {
            let stopping = tokio::spawn(bridge.stop());
            let took = first_change_by_new_owner(&js, &owner, began).await?;
            stopping.await??;
            term.push(took);
        } else {
            signal(bridge.pid(), nix::sys::signal::Signal::SIGKILL)?;
            drop(bridge);
            kill.push(first_change_by_new_owner(&js, &owner, began).await?);
        }
        eprintln!(
            "trial {trial} ({}): {owner} -> first change by the new owner after {:?}",
            if graceful { "SIGTERM" } else { "SIGKILL" },
            if graceful { term.last() } else { kill.last() }
        );
        slot.2 = Some(Bridge::spawn(
            &binary,
            &slot.1,
            dir.path().join(format!("{owner}-{trial}.log")),
        )?);
    }
    writer.abort();
    println!(
        "failover with lease_ttl_ms = {} ({} trials each):",
        args.ttl_ms, args.trials
    );
    println!(
        "  SIGKILL -> first change by the new owner: {}",
        summary(&mut kill)
    );
    println!(
        "  SIGTERM -> first change by the new owner: {}",
        summary(&mut term)
    );
    for (_, _, bridge) in replicas {
        if let Some(b) = bridge {
            b.stop().await?;
        }
    }
    Ok(())
}

fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64();
    if v.is_empty() {
        return "no trials".into();
    }
    format!(
        "min {:.2} s, median {:.2} s, p90 {:.2} s, max {:.2} s",
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

async fn owner(js: &async_nats::jetstream::Context) -> Option<String> {
    let kv = js.get_key_value("tributary_leases").await.ok()?;
    let value = kv.get("unit.source=20erp").await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&value).ok()?;
    v.get("instance")?.as_str().map(str::to_string)
}

/// The owner once it has not changed for 3 s and the stream grows.
async fn settle(js: &async_nats::jetstream::Context) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let a = owner(js).await;
        let before = last_sequence(js).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let b = owner(js).await;
        if a.is_some() && a == b && last_sequence(js).await > before {
            return Ok(b.unwrap_or_default());
        }
        anyhow::ensure!(Instant::now() < deadline, "ownership never settled");
    }
}

async fn last_sequence(js: &async_nats::jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
        Err(_) => 0,
    }
}

/// From `began` until a change is stored after another replica acquired the lease.
async fn first_change_by_new_owner(
    js: &async_nats::jetstream::Context,
    old: &str,
    began: Instant,
) -> anyhow::Result<Duration> {
    let deadline = began + Duration::from_secs(120);
    let baseline = loop {
        if let Some(o) = owner(js).await {
            if o != old {
                break last_sequence(js).await;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "{UNIT}: no new owner");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    loop {
        if last_sequence(js).await > baseline {
            return Ok(began.elapsed());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{UNIT}: the new owner published nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn write_config(
    dir: &Path,
    pg: &PgCluster,
    cluster: &NatsCluster,
    instance: &str,
    ttl_ms: u64,
) -> anyhow::Result<PathBuf> {
    let servers: Vec<String> = cluster.urls().iter().map(|u| toml_string(u)).collect();
    let text = format!(
        r#"# Written by tributary-bench failover.
http_listen = "127.0.0.1:{http}"
[log]
level = "info"
[durability]
confirm_delay_ms = 0
[nats]
servers = [{servers}]
[nats.stream]
replicas = 3
[ha]
instance_id = "{instance}"
lease_ttl_ms = {ttl_ms}
replicas = 3
[[sources]]
name = "erp"
publication = "pub_erp"
slot = "slot_erp"
heartbeat_interval_secs = 10
status_interval_ms = 200
[sources.connection]
host = "127.0.0.1"
port = {port}
user = {user}
password = {password}
dbname = "erp"
"#,
        http = tributary_testkit::try_free_port()?,
        servers = servers.join(", "),
        port = pg.port(),
        user = toml_string(pg.user()),
        password = toml_string(pg.password()),
    );
    tributary_config::parse(&text).context("the generated configuration is invalid")?;
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

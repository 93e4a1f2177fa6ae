//! A local JetStream cluster for `e2e --replicas N`: N nats-servers (tributary-testkit's
//! `NatsCluster`) with the durability set-up of `--durability`, their pids for CPU accounting,
//! and the bridge's view of them (R N streams, no confirmation delay).

use anyhow::Context as _;
use tributary_testkit::NatsCluster;

use crate::env::{nats_options, nats_server_pid, Durability, NatsTarget};
use crate::procfs;

/// The cluster, a JetStream context on it, and each node's pid.
pub struct Cluster {
    cluster: NatsCluster,
    pub js: async_nats::jetstream::Context,
    pids: Vec<Option<u32>>,
}

impl Cluster {
    /// Starts `nodes` nodes and connects a client that knows all of them.
    pub async fn start(nodes: usize, durability: Durability) -> anyhow::Result<Cluster> {
        let mut cluster = NatsCluster::start_with(nodes, nats_options(durability))
            .await
            .with_context(|| {
                format!("starting a {nodes}-node JetStream cluster (tributary-testkit)")
            })?;
        let pids = (0..nodes)
            .map(|i| nats_server_pid(cluster.node(i)))
            .collect();
        let client = cluster
            .connect()
            .await
            .context("connecting to the JetStream cluster")?;
        Ok(Cluster {
            cluster,
            js: async_nats::jetstream::new(client),
            pids,
        })
    }

    /// The bridge's NATS settings: every node, R`nodes` streams, and `confirm_delay_ms = 0`
    /// because an acknowledgement is on a quorum (the shipped HA combination,
    /// docs/durability.md).
    pub fn target(&self, ha: bool) -> NatsTarget {
        NatsTarget {
            servers: self.cluster.urls(),
            stream_replicas: self.cluster.len(),
            confirm_delay_ms: 0,
            ha,
        }
    }

    /// Each node's CPU seconds (user + system); None where a node's pid is unknown.
    pub fn cpu_secs(&self) -> Vec<Option<f64>> {
        self.pids
            .iter()
            .map(|pid| pid.and_then(procfs::cpu_secs))
            .collect()
    }
}

//! A throwaway JetStream cluster: N nats-servers on 127.0.0.1, each with its own client port,
//! route port and store, routed to each other.

use std::time::{Duration, Instant};

use crate::nats::{lost_port_race, ClusterNode, PORT_ATTEMPTS};
use crate::{ports, NatsOptions, NatsServer, TestkitError};

const CLUSTER_NAME: &str = "tributary-test";

/// The nodes of a cluster; dropping it kills every node and removes their stores.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes with [`NatsOptions::default`] and returns once each answers the
    /// JetStream API (a meta leader is elected).
    pub async fn start(size: usize) -> Result<NatsCluster, TestkitError> {
        Self::start_with(size, NatsOptions::default()).await
    }

    /// Starts `size` nodes sharing `opts` (credentials, sync); `opts.cluster` is set per node.
    /// A start that lost one of its ports to another process is retried on fresh ports.
    pub async fn start_with(size: usize, opts: NatsOptions) -> Result<NatsCluster, TestkitError> {
        let mut attempt = 1;
        loop {
            match Self::try_start(size, &opts).await {
                Err(e) if lost_port_race(&e) && attempt < PORT_ATTEMPTS => attempt += 1,
                started => return started,
            }
        }
    }

    async fn try_start(size: usize, opts: &NatsOptions) -> Result<NatsCluster, TestkitError> {
        if size == 0 {
            return Err(TestkitError::InvalidOptions(
                "a cluster needs at least one node".into(),
            ));
        }
        let client_ports = (0..size)
            .map(|_| ports::try_free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let route_ports = (0..size)
            .map(|_| ports::try_free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for i in 0..size {
            let mut node_opts = opts.clone();
            node_opts.cluster = Some(ClusterNode {
                cluster_name: CLUSTER_NAME.into(),
                server_name: format!("n{}", i + 1),
                route_port: route_ports[i],
                peer_route_ports: route_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| *p)
                    .collect(),
            });
            nodes.push(NatsServer::prepare(node_opts, client_ports[i])?);
        }
        // All spawned before any is waited for: JetStream answers only once a quorum is up.
        for node in &mut nodes {
            node.spawn()?;
        }
        for node in &mut nodes {
            node.wait_ready().await?;
        }
        Ok(NatsCluster { nodes })
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (0-based); its server name is `n{i+1}`.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The server name of node `i` (`n1`, `n2`, …), as JetStream reports leaders.
    pub fn server_name(i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// The index of the node named `name` (`n2` → 1).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1 && *n <= self.nodes.len())
            .map(|n| n - 1)
    }

    /// Client URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Connects a client that knows every node (and fails over between them).
    pub async fn connect(&self) -> Result<async_nats::Client, TestkitError> {
        self.nodes[0]
            .connect_options()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(self.urls())
            .await
            .map_err(|e| TestkitError::Nats(e.to_string()))
    }

    /// Waits until the stream `name` has a leader and all its replicas are current; returns the
    /// leader's node index.
    pub async fn wait_stream_leader(
        &self,
        js: &async_nats::jetstream::Context,
        name: &str,
        timeout: Duration,
    ) -> Result<usize, TestkitError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match js.get_stream(name).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => {
                        if let Some(cluster) = &info.cluster {
                            let current = cluster.replicas.iter().all(|r| r.current);
                            if let Some(i) =
                                cluster.leader.as_deref().and_then(|l| self.index_of(l))
                            {
                                if current {
                                    return Ok(i);
                                }
                            }
                            last =
                                format!("leader {:?}, replicas current {current}", cluster.leader);
                        } else {
                            last = "no cluster info".into();
                        }
                    }
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(TestkitError::NotReady {
            what: format!("stream {name}"),
            reason: format!("no settled leader within {timeout:?}: {last}"),
            log_tail: String::new(),
        })
    }
}

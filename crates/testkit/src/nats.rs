//! Throwaway nats-servers with JetStream enabled, each with its own store.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::process::{self, ScratchDir};
use crate::{ports, TestkitError};

/// Environment variable overriding the `nats-server` executable.
const BINARY_ENV: &str = "TRIBUTARY_NATS_SERVER";
const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 30;
/// Name of [`NatsOptions::include`]'s copy next to the server's configuration.
const INCLUDED: &str = "included.conf";

/// How to set up a [`NatsServer`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `sync_interval: always` (fsync after every JetStream write); default `false`: an fsync
    /// per message turns message-heavy tests into disk benchmarks that other processes'
    /// fsyncs stretch past their timeouts. No test cuts the power, so syncing is not what
    /// they check.
    pub sync_always: bool,
    /// With `sync_always` false: JetStream's `sync_interval`; default `"1s"`, the shipped
    /// set-up (deploy/, docs/durability.md). None keeps the server's default (two minutes).
    pub sync_interval: Option<String>,
    /// Require this user and password (exclusive with `token`).
    pub user: Option<(String, String)>,
    /// Require this token (exclusive with `user`).
    pub token: Option<String>,
    /// Serve TLS only, with this certificate chain, key and the CA that signed it (PEM files).
    pub tls: Option<NatsTls>,
    /// Join a cluster (see [`crate::NatsCluster`]); None: a standalone server.
    pub cluster: Option<ClusterNode>,
    /// A file included at the top level of the server's configuration, e.g. an
    /// `authorization { users = [...] }` block such as deploy/nats/permissions.conf. With it,
    /// `user` / `token` write no authorization block of their own: they are only what the
    /// test's clients connect with (a user the included file defines).
    pub include: Option<PathBuf>,
}

/// One node's place in a cluster: its name, its route port and the other nodes' route ports.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub cluster_name: String,
    pub server_name: String,
    pub route_port: u16,
    pub peer_route_ports: Vec<u16>,
}

/// TLS material for [`NatsOptions::tls`].
#[derive(Debug, Clone)]
pub struct NatsTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            sync_always: false,
            sync_interval: Some("1s".into()),
            user: None,
            token: None,
            tls: None,
            cluster: None,
            include: None,
        }
    }
}

/// A nats-server with JetStream on 127.0.0.1, storing in a temporary
/// directory.
///
/// Dropping it kills the server (by PID) and removes the directory (see
/// `TRIBUTARY_KEEP_TEST_DIRS`).
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    config_path: PathBuf,
    store_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    opts: NatsOptions,
    scratch: ScratchDir,
}

impl NatsServer {
    /// Starts a server with [`NatsOptions::default`].
    pub async fn start() -> Result<NatsServer, TestkitError> {
        Self::start_with(NatsOptions::default()).await
    }

    /// Starts a server and returns once JetStream answers.
    pub async fn start_with(opts: NatsOptions) -> Result<NatsServer, TestkitError> {
        let mut attempt = 1;
        loop {
            let mut server = Self::prepare(opts.clone(), ports::try_free_port()?)?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) if lost_port_race(&e) && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the config of a server on `port` without starting it (a cluster starts its nodes
    /// together: JetStream answers only once a quorum of them is up).
    pub(crate) fn prepare(opts: NatsOptions, port: u16) -> Result<NatsServer, TestkitError> {
        if opts.user.is_some() && opts.token.is_some() {
            return Err(TestkitError::InvalidOptions(
                "NatsOptions: set either `user` or `token`, not both".to_owned(),
            ));
        }
        let binary = find_binary()?;
        let scratch = ScratchDir::new("tributary-nats-")?;
        let server = NatsServer {
            child: None,
            binary,
            config_path: scratch.path().join("nats-server.conf"),
            store_dir: scratch.path().join("store"),
            log_path: scratch.path().join("nats-server.log"),
            port,
            opts,
            scratch,
        };
        if let Some(include) = &server.opts.include {
            std::fs::copy(include, server.scratch.path().join(INCLUDED))
                .map_err(|e| TestkitError::io("copying the included nats-server config", e))?;
        }
        std::fs::write(&server.config_path, server.config())
            .map_err(|e| TestkitError::io("writing the nats-server config", e))?;
        Ok(server)
    }

    /// TCP port of the client listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{HOST}:{}", self.port)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server log file (stdout and stderr of `nats-server`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The options the server was started with (credentials included).
    pub fn options(&self) -> &NatsOptions {
        &self.opts
    }

    /// Connection options carrying the configured credentials, if any.
    pub fn connect_options(&self) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(tls) = &self.opts.tls {
            options = options
                .require_tls(true)
                .add_root_certificates(tls.ca_file.clone());
        }
        match (&self.opts.user, &self.opts.token) {
            (Some((user, password)), _) => {
                options.user_and_password(user.clone(), password.clone())
            }
            (None, Some(token)) => options.token(token.clone()),
            (None, None) => options,
        }
    }

    /// Connects a client (with the configured credentials).
    pub async fn connect(&self) -> Result<async_nats::Client, TestkitError> {
        self.connect_options()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url())
            .await
            .map_err(|e| TestkitError::Nats(e.to_string()))
    }

    /// Graceful stop (`SIGTERM`), waits for the exit; keeps the store.
    /// Does nothing if the server is not running.
    pub async fn stop(&mut self) -> Result<(), TestkitError> {
        let port = self.port;
        process::stop_server(&mut self.child, Signal::SIGTERM, STOP_TIMEOUT, || {
            format!("nats-server on port {port}")
        })
        .await
    }

    /// `SIGKILL`, waits for the exit; keeps the store. Does nothing if the server is not running.
    pub async fn kill(&mut self) -> Result<(), TestkitError> {
        let port = self.port;
        process::stop_server(&mut self.child, Signal::SIGKILL, STOP_TIMEOUT, || {
            format!("nats-server on port {port}")
        })
        .await
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        process::needs_spawn(&mut self.child).is_ok_and(|needs| !needs)
    }

    /// Starts the server again with the same port and store; waits until
    /// JetStream answers. Does nothing if it is running.
    pub async fn start_again(&mut self) -> Result<(), TestkitError> {
        if !process::needs_spawn(&mut self.child)? {
            return Ok(());
        }
        self.spawn_and_wait().await
    }

    /// [`stop`](Self::stop) followed by [`start_again`](Self::start_again).
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.stop().await?;
        self.start_again().await
    }

    fn config(&self) -> String {
        let mut conf = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(conf, "port: {}", self.port);
        let _ = writeln!(conf, "host: {}", quote(HOST));
        let _ = writeln!(conf, "jetstream {{");
        let _ = writeln!(
            conf,
            "  store_dir: {}",
            quote(&self.store_dir.display().to_string())
        );
        if self.opts.sync_always {
            let _ = writeln!(conf, "  sync_interval: always");
        } else if let Some(interval) = &self.opts.sync_interval {
            let _ = writeln!(conf, "  sync_interval: {}", quote(interval));
        }
        let _ = writeln!(conf, "}}");
        if let Some(node) = &self.opts.cluster {
            let _ = writeln!(conf, "server_name: {}", quote(&node.server_name));
            let routes: Vec<String> = node
                .peer_route_ports
                .iter()
                .map(|p| quote(&format!("nats-route://{HOST}:{p}")))
                .collect();
            let _ = writeln!(
                conf,
                "cluster {{\n  name: {}\n  listen: {}\n  routes: [{}]\n}}",
                quote(&node.cluster_name),
                quote(&format!("{HOST}:{}", node.route_port)),
                routes.join(", ")
            );
        }
        if let Some(tls) = &self.opts.tls {
            let _ = writeln!(
                conf,
                "tls {{\n  cert_file: {}\n  key_file: {}\n}}",
                quote(&tls.cert_file.display().to_string()),
                quote(&tls.key_file.display().to_string())
            );
        }
        if self.opts.include.is_some() {
            // nats-server resolves includes relative to the including file: `prepare` copies
            // the file next to it.
            let _ = writeln!(conf, "include {}", quote(INCLUDED));
        } else if let Some((user, password)) = &self.opts.user {
            let _ = writeln!(
                conf,
                "authorization {{\n  user: {}\n  password: {}\n}}",
                quote(user),
                quote(password)
            );
        } else if let Some(token) = &self.opts.token {
            let _ = writeln!(conf, "authorization {{\n  token: {}\n}}", quote(token));
        }
        conf
    }

    async fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        self.spawn()?;
        self.wait_ready().await
    }

    pub(crate) fn spawn(&mut self) -> Result<(), TestkitError> {
        let (stdout, stderr) = process::log_stdio(&self.log_path)?;
        let child = std::process::Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config_path)
            .current_dir(self.scratch.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {}", self.binary.display()), e))?;
        tracing::debug!(pid = child.id(), port = self.port, "nats-server spawned");
        self.child = Some(child);
        Ok(())
    }

    pub(crate) async fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = process::exited(child)? {
                    self.child = None;
                    return Err(self.not_ready(format!("nats-server exited ({status})")));
                }
            }
            let last_error = match tokio::time::timeout(Duration::from_secs(5), self.probe()).await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "probe timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                if let Some(mut child) = self.child.take() {
                    process::terminate(&mut child, Signal::SIGKILL, Duration::from_secs(10))
                        .await?;
                }
                return Err(self.not_ready(format!(
                    "JetStream not ready within {READY_TIMEOUT:?}; last error: {last_error}"
                )));
            }
            tokio::time::sleep(process::POLL_INTERVAL).await;
        }
    }

    async fn probe(&self) -> Result<(), TestkitError> {
        // Cheap check first so that the client does not log connect errors.
        tokio::net::TcpStream::connect((HOST, self.port))
            .await
            .map_err(|e| TestkitError::io("connecting to nats-server", e))?;
        let client = self.connect().await?;
        async_nats::jetstream::new(client)
            .query_account()
            .await
            .map_err(|e| TestkitError::Nats(format!("JetStream account info: {e}")))?;
        Ok(())
    }

    fn not_ready(&self, reason: String) -> TestkitError {
        TestkitError::NotReady {
            what: format!("nats-server on port {}", self.port),
            reason,
            log_tail: process::log_tail(&self.log_path, LOG_TAIL_LINES),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::terminate_blocking(&mut child, Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}

/// Quotes a string for the nats-server config format.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Finds `nats-server`: `$TRIBUTARY_NATS_SERVER` (a path, or a name looked up
/// in `PATH`), else `nats-server` on `PATH`. A pyenv shim is resolved to the
/// real executable so that the PID we hold is the server's own.
fn find_binary() -> Result<PathBuf, TestkitError> {
    if let Some(value) = std::env::var_os(BINARY_ENV) {
        let path = PathBuf::from(&value);
        let found = if path.components().count() > 1 {
            Some(path).filter(|p| process::is_executable(p))
        } else {
            process::find_in_path(&path.to_string_lossy())
        };
        return found.ok_or_else(|| {
            TestkitError::BinaryNotFound(format!("{BINARY_ENV}={}", value.to_string_lossy()))
        });
    }
    let found = process::find_in_path("nats-server").ok_or_else(|| {
        TestkitError::BinaryNotFound(format!("nats-server on PATH (or set {BINARY_ENV})"))
    })?;
    if found.to_string_lossy().contains("/shims/") {
        if let Ok(out) = std::process::Command::new("pyenv")
            .args(["which", "nats-server"])
            .stderr(Stdio::null())
            .output()
        {
            let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && process::is_executable(&real) {
                return Ok(real);
            }
        }
    }
    Ok(found)
}

/// Starts tried before giving up when the port picked was taken meanwhile.
pub(crate) const PORT_ATTEMPTS: u32 = 3;

/// True when a server could not start because another process bound its port between
/// [`ports::try_free_port`] and the server's own bind (tests start servers in parallel).
pub(crate) fn lost_port_race(error: &TestkitError) -> bool {
    error.to_string().contains("address already in use")
}

//! Throwaway PostgreSQL clusters: `initdb` into a temporary directory, run
//! `postgres` as a child process (as the `postgres` user when we are root).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt as _;

use crate::process::{self, RunAs, ScratchDir};
use crate::{ports, TestkitError};

/// Environment variable overriding the directory with the server binaries.
const BINDIR_ENV: &str = "TRIBUTARY_PG_BINDIR";
const SUPERUSER: &str = "postgres";
const HOST: &str = "127.0.0.1";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 30;

/// Authentication method required for TCP (`host`) connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgAuth {
    /// No password needed.
    #[default]
    Trust,
    /// MD5 password authentication (the password is stored MD5-hashed).
    Md5,
    /// SCRAM-SHA-256 password authentication.
    ScramSha256,
}

impl PgAuth {
    fn hba_method(self) -> &'static str {
        match self {
            Self::Trust => "trust",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
        }
    }
}

/// How to set up a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `wal_level`; default `logical`.
    pub wal_level: String,
    /// Method for TCP connections in `pg_hba.conf`; default [`PgAuth::Trust`].
    pub auth: PgAuth,
    /// Password of the `postgres` superuser (always set); default `postgres`.
    pub superuser_password: String,
    /// Extra `postgresql.conf` settings, written after the defaults as
    /// `key = 'value'` (the value is quoted for you).
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            wal_level: "logical".to_owned(),
            auth: PgAuth::Trust,
            superuser_password: "postgres".to_owned(),
            settings: Vec::new(),
        }
    }
}

/// A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1.
///
/// Dropping it shuts the server down (immediate mode) and removes the
/// directory (see `TRIBUTARY_KEEP_TEST_DIRS`).
#[derive(Debug)]
pub struct PgCluster {
    // `Drop::drop` stops the child before the fields (and so `scratch`) drop.
    child: Option<Child>,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    password: String,
    run_as: Option<RunAs>,
    scratch: ScratchDir,
}

impl PgCluster {
    /// Starts a cluster with [`PgOptions::default`].
    pub async fn start() -> Result<PgCluster, TestkitError> {
        Self::start_with(PgOptions::default()).await
    }

    /// Creates (`initdb`) and starts a cluster; returns once it accepts
    /// TCP connections.
    pub async fn start_with(opts: PgOptions) -> Result<PgCluster, TestkitError> {
        let bin_dir = find_bin_dir()?;
        let run_as = RunAs::when_root(SUPERUSER)?;
        let scratch = ScratchDir::new("tributary-pg-")?;
        if let Some(user) = &run_as {
            user.chown(scratch.path())?;
        }
        let data_dir = scratch.path().join("data");
        let log_path = scratch.path().join("postgres.log");
        let mut cluster = PgCluster {
            child: None,
            bin_dir,
            data_dir,
            log_path,
            port: ports::try_free_port()?,
            password: opts.superuser_password.clone(),
            run_as,
            scratch,
        };
        cluster.initdb(&opts).await?;
        cluster.spawn_and_wait().await?;
        if opts.auth == PgAuth::Md5 {
            // initdb stored a SCRAM secret; re-set the password now that
            // password_encryption = md5 is in effect.
            cluster.set_password_over_socket().await?;
        }
        Ok(cluster)
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The superuser name, `postgres`.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// The superuser password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Directory holding `initdb`, `postgres`, `pg_recvlogical`, ...
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log file (stdout and stderr of `postgres`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Directory of the server's unix socket (trust authentication).
    pub fn socket_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// `key=value` connection string for tokio-postgres (TCP, with password).
    pub fn conn_string(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} password={} dbname={}",
            self.port,
            quote_conn_value(&self.password),
            quote_conn_value(dbname)
        )
    }

    /// Connects over TCP and spawns the connection task on the current
    /// tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, TestkitError> {
        connect_str(&self.conn_string(dbname)).await
    }

    /// `CREATE DATABASE name`.
    pub async fn create_database(&self, name: &str) -> Result<(), TestkitError> {
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await?;
        Ok(())
    }

    /// Fast shutdown (`SIGINT`, like `pg_ctl stop -m fast`); keeps the data.
    /// Does nothing if the server is not running.
    pub async fn stop(&mut self) -> Result<(), TestkitError> {
        let port = self.port;
        process::stop_server(&mut self.child, Signal::SIGINT, STOP_TIMEOUT, || {
            format!("postgres on port {port}")
        })
        .await
    }

    /// Starts the server again on the same port and data directory and waits
    /// until it is ready. Does nothing if it is running.
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

    async fn initdb(&self, opts: &PgOptions) -> Result<(), TestkitError> {
        let pwfile = self.scratch.path().join("pwfile");
        write_file(&pwfile, &format!("{}\n", opts.superuser_password))?;
        if let Some(user) = &self.run_as {
            user.chown(&pwfile)?;
        }
        let mut cmd = tokio::process::Command::new(self.bin_dir.join("initdb"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth-local=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--auth-host={}", opts.auth.hba_method()))
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(self.scratch.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        let output = cmd
            .output()
            .await
            .map_err(|e| TestkitError::io("running initdb", e))?;
        // The password file is no longer needed whatever the outcome.
        let _ = std::fs::remove_file(&pwfile);
        if !output.status.success() {
            return Err(TestkitError::CommandFailed {
                command: format!("{:?}", cmd.as_std()),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        self.write_config(opts)
    }

    fn write_config(&self, opts: &PgOptions) -> Result<(), TestkitError> {
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", HOST.to_owned()),
            ("port", self.port.to_string()),
            (
                "unix_socket_directories",
                self.scratch.path().display().to_string(),
            ),
            ("wal_level", opts.wal_level.clone()),
            ("max_replication_slots", "20".to_owned()),
            ("max_wal_senders", "20".to_owned()),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            ("shared_buffers", "128MB".to_owned()),
            ("logical_decoding_work_mem", "64MB".to_owned()),
            ("max_connections", "100".to_owned()),
        ];
        if opts.auth == PgAuth::Md5 {
            settings.push(("password_encryption", "md5".to_owned()));
        }
        settings.extend(opts.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));

        let mut conf = String::from("\n# --- tributary-testkit ---\n");
        for (key, value) in &settings {
            // Writing to a String cannot fail.
            let _ = writeln!(conf, "{key} = '{}'", value.replace('\'', "''"));
        }
        append_file(&self.data_dir.join("postgresql.conf"), &conf)?;

        let method = opts.auth.hba_method();
        let hba = format!(
            "# written by tributary-testkit\n\
             local all all trust\n\
             local replication all trust\n\
             host all all 127.0.0.1/32 {method}\n\
             host replication all 127.0.0.1/32 {method}\n"
        );
        write_file(&self.data_dir.join("pg_hba.conf"), &hba)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), TestkitError> {
        let (stdout, stderr) = process::log_stdio(&self.log_path)?;
        let mut cmd = std::process::Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .current_dir(self.scratch.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| TestkitError::io("spawning postgres", e))?;
        tracing::debug!(pid = child.id(), port = self.port, "postgres spawned");
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let conn = self.conn_string("postgres");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = process::exited(child)? {
                    self.child = None;
                    return Err(self.not_ready(format!("postgres exited ({status})")));
                }
            }
            let last_error = match tokio::time::timeout(Duration::from_secs(5), probe(&conn)).await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connection attempt timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                if let Some(mut child) = self.child.take() {
                    process::terminate(&mut child, Signal::SIGQUIT, Duration::from_secs(10))
                        .await?;
                }
                return Err(self.not_ready(format!(
                    "no successful `SELECT 1` within {READY_TIMEOUT:?}; last error: {last_error}"
                )));
            }
            tokio::time::sleep(process::POLL_INTERVAL).await;
        }
    }

    fn not_ready(&self, reason: String) -> TestkitError {
        TestkitError::NotReady {
            what: format!("postgres on port {}", self.port),
            reason,
            log_tail: process::log_tail(&self.log_path, LOG_TAIL_LINES),
        }
    }

    async fn set_password_over_socket(&self) -> Result<(), TestkitError> {
        let conn = format!(
            "host={} port={} user={SUPERUSER} dbname=postgres",
            quote_conn_value(&self.scratch.path().display().to_string()),
            self.port
        );
        let client = connect_str(&conn).await?;
        client
            .batch_execute(&format!(
                "ALTER USER {SUPERUSER} PASSWORD '{}'",
                self.password.replace('\'', "''")
            ))
            .await?;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT = immediate shutdown: the postmaster takes its
            // backends down with it, so nothing is left behind.
            process::terminate_blocking(&mut child, Signal::SIGQUIT, Duration::from_secs(10));
        }
    }
}

async fn probe(conn: &str) -> Result<(), TestkitError> {
    let client = connect_str(conn).await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

async fn connect_str(conn: &str) -> Result<tokio_postgres::Client, TestkitError> {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "testkit postgres connection ended with an error");
        }
    });
    Ok(client)
}

/// Quotes a value for a libpq-style `key=value` connection string.
fn quote_conn_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn write_file(path: &Path, contents: &str) -> Result<(), TestkitError> {
    std::fs::write(path, contents)
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
}

fn append_file(path: &Path, contents: &str) -> Result<(), TestkitError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|e| TestkitError::io(format!("appending to {}", path.display()), e))
}

/// Finds the directory with the PostgreSQL server binaries.
///
/// Order: `$TRIBUTARY_PG_BINDIR`, `pg_config --bindir` (if it has `initdb`),
/// the highest `/usr/lib/postgresql/*/bin`, then `initdb` on `PATH`.
fn find_bin_dir() -> Result<PathBuf, TestkitError> {
    let has_server = |dir: &Path| {
        process::is_executable(&dir.join("initdb")) && process::is_executable(&dir.join("postgres"))
    };
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(TestkitError::BinaryNotFound(format!(
                "initdb/postgres in {BINDIR_ENV}={}",
                dir.display()
            )))
        };
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let dir = entry.path().join("bin");
            Some((version?, dir)).filter(|(_, dir)| has_server(dir))
        })
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    process::find_in_path("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|dir| has_server(dir))
        .ok_or_else(|| {
            TestkitError::BinaryNotFound(format!(
                "PostgreSQL server binaries (initdb, postgres); set {BINDIR_ENV}"
            ))
        })
}

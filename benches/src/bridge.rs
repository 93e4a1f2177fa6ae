//! The bridge as a child process: finding the release binary, spawning `tributary run`,
//! reading its log, stopping it; and signalling processes this benchmark started.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// The release `tributary` binary: `$TRIBUTARY_BIN`, `$CARGO_TARGET_DIR/release/tributary`,
/// next to this executable, or the workspace's `target/release/tributary`.
pub fn find_bridge_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TRIBUTARY_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("TRIBUTARY_BIN={} is not a file", path.display());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release").join("tributary"));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("tributary"));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("release")
            .join("tributary"),
    );
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot find the release `tributary` binary: build it with \
             `cargo build --release -p tributary` (same CARGO_TARGET_DIR) or set TRIBUTARY_BIN"
        )
    })
}

/// The bridge as a child process (`tributary run --config …`).
pub struct Bridge {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    started: Instant,
}

impl Bridge {
    pub fn spawn(binary: &Path, config: &Path, log: PathBuf) -> anyhow::Result<Bridge> {
        let age = std::fs::metadata(binary)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or_else(String::new, |d| {
                format!(", built {} min ago", d.as_secs() / 60)
            });
        eprintln!("bridge binary: {}{age}", binary.display());
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating the bridge log {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log handle")?;
        let started = Instant::now();
        let child = tokio::process::Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            // Plain log lines in the file (and in error messages quoting its tail).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the bridge exited at once"))?;
        Ok(Bridge {
            child,
            pid,
            log,
            started,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Errors (with the log's tail) if the bridge is no longer running.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("waiting for the bridge")? {
            None => Ok(()),
            Some(status) => bail!(
                "the bridge exited early ({status})\n--- bridge log ---\n{}",
                self.log_tail()
            ),
        }
    }

    /// Where the bridge logs.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// The bridge's whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the bridge's log.
    pub fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            }
            Err(e) => format!("<cannot read {}: {e}>", self.log.display()),
        }
    }

    /// SIGTERM, then waits up to a minute for the drain (SIGKILL after that).
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        signal(self.pid, nix::sys::signal::Signal::SIGTERM)?;
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => status.context("waiting for the bridge to exit"),
            Err(_) => {
                self.child
                    .kill()
                    .await
                    .context("killing the bridge after a minute")?;
                bail!("the bridge did not stop within 60 s of SIGTERM and was killed")
            }
        }
    }
}

/// Sends `sig` to a process this benchmark started.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
    let raw = i32::try_from(pid).with_context(|| format!("pid {pid} out of range"))?;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => bail!("sending {sig} to pid {pid}: {e}"),
    }
}

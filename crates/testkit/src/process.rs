//! Helpers shared by the PostgreSQL and NATS launchers: scratch directories,
//! executable lookup, running as another user, signalling and waiting for
//! child processes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::TestkitError;

/// How often exit/readiness conditions are polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Environment variable that, when set to anything but `0`/empty, keeps the
/// scratch directories around after drop.
pub(crate) const KEEP_DIRS_ENV: &str = "TRIBUTARY_KEEP_TEST_DIRS";

fn keep_dirs() -> bool {
    std::env::var(KEEP_DIRS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A temporary directory removed on drop unless [`KEEP_DIRS_ENV`] is set.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(prefix: &str) -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| TestkitError::io("creating a temporary directory", e))?;
        let path = dir.path().to_path_buf();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if keep_dirs() {
                let path = dir.keep();
                tracing::info!(path = %path.display(), "keeping test directory");
            } else if let Err(e) = dir.close() {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove test directory");
            }
        }
    }
}

/// The unprivileged user a server has to run as (we are root).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl RunAs {
    /// `Some(user)` when the current process is root, `None` otherwise.
    pub(crate) fn when_root(user: &str) -> Result<Option<Self>, TestkitError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let found = nix::unistd::User::from_name(user)
            .map_err(|e| TestkitError::System(format!("looking up user {user}: {e}")))?
            .ok_or_else(|| {
                TestkitError::System(format!(
                    "running as root but there is no `{user}` system user to run the server as"
                ))
            })?;
        Ok(Some(Self {
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
        }))
    }

    /// Makes `path` owned by this user.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), TestkitError> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| TestkitError::io(format!("chown {}", path.display()), e))
    }
}

/// Looks `name` up in `PATH`.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Opens (appending, creating if needed) a log file and returns two handles
/// for a child's stdout and stderr.
pub(crate) fn log_stdio(path: &Path) -> Result<(File, File), TestkitError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TestkitError::io(format!("opening {}", path.display()), e))?;
    let clone = file
        .try_clone()
        .map_err(|e| TestkitError::io("duplicating a log file handle", e))?;
    Ok((file, clone))
}

/// The last `lines` lines of a log file (best effort; never fails).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Sends `signal` to the child by PID. A child that is already gone is not
/// an error.
pub(crate) fn signal(child: &Child, signal: Signal) -> Result<(), TestkitError> {
    let pid = i32::try_from(child.id())
        .map_err(|_| TestkitError::System(format!("pid {} out of range", child.id())))?;
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(TestkitError::System(format!(
            "sending {signal} to pid {pid}: {e}"
        ))),
    }
}

/// Non-blocking check whether the child exited.
pub(crate) fn exited(child: &mut Child) -> Result<Option<ExitStatus>, TestkitError> {
    child
        .try_wait()
        .map_err(|e| TestkitError::io(format!("waiting for pid {}", child.id()), e))
}

/// Waits (asynchronously) up to `timeout` for the child to exit.
pub(crate) async fn wait_exit(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<ExitStatus>, TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = exited(child)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Stops the child with `first`, escalating to SIGKILL after `timeout`.
/// Returns `Ok(true)` if it exited by itself, `Ok(false)` if it was killed.
pub(crate) async fn terminate(
    child: &mut Child,
    first: Signal,
    timeout: Duration,
) -> Result<bool, TestkitError> {
    signal(child, first)?;
    if wait_exit(child, timeout).await?.is_some() {
        return Ok(true);
    }
    signal(child, Signal::SIGKILL)?;
    wait_exit(child, Duration::from_secs(10)).await?;
    Ok(false)
}

/// Blocking variant of [`terminate`] for `Drop` impls; never fails, only logs.
pub(crate) fn terminate_blocking(child: &mut Child, first: Signal, timeout: Duration) {
    let wait = |child: &mut Child, timeout: Duration| {
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(pid = child.id(), error = %e, "cannot wait for child");
                    return false;
                }
            }
        }
    };
    if let Err(e) = signal(child, first) {
        tracing::warn!(error = %e, "cannot signal child");
    }
    if !wait(child, timeout) {
        if let Err(e) = signal(child, Signal::SIGKILL) {
            tracing::warn!(error = %e, "cannot kill child");
        }
        wait(child, Duration::from_secs(5));
    }
}

/// Stops a launcher's server with `signal` and waits up to `timeout` for it to exit;
/// `what` names it in the timeout error. Nothing to do when it is not running.
pub(crate) async fn stop_server(
    child: &mut Option<Child>,
    signal: Signal,
    timeout: Duration,
    what: impl FnOnce() -> String,
) -> Result<(), TestkitError> {
    let Some(mut running) = child.take() else {
        return Ok(());
    };
    if terminate(&mut running, signal, timeout).await? {
        Ok(())
    } else {
        Err(TestkitError::ShutdownTimeout(what()))
    }
}

/// Whether a launcher's server has to be spawned again: true when there is no process or
/// it has exited (and forgets the exited one).
pub(crate) fn needs_spawn(child: &mut Option<Child>) -> Result<bool, TestkitError> {
    if let Some(running) = child.as_mut() {
        if exited(running)?.is_none() {
            return Ok(false);
        }
        *child = None;
    }
    Ok(true)
}

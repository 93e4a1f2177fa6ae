//! Memory and CPU of a process from /proc: VmRSS/VmHWM and utime+stime, sampled periodically.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// What a [`Sampler`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Highest VmRSS sampled, kB.
    pub max_rss_kb: u64,
    /// Highest VmHWM read (the kernel's own peak RSS), kB.
    pub hwm_kb: u64,
    /// CPU time (user + system) at the last successful sample, seconds.
    pub cpu_secs: f64,
    pub samples: u64,
}

impl ProcStats {
    /// Peak resident memory in MB (max of VmHWM and the sampled VmRSS).
    pub fn peak_rss_mb(&self) -> f64 {
        self.max_rss_kb.max(self.hwm_kb) as f64 / 1024.0
    }

    fn update(&mut self, pid: u32) -> bool {
        let mut alive = false;
        if let Some((rss, hwm)) = memory_kb(pid) {
            self.max_rss_kb = self.max_rss_kb.max(rss);
            self.hwm_kb = self.hwm_kb.max(hwm);
            alive = true;
        }
        if let Some(cpu) = cpu_secs(pid) {
            self.cpu_secs = cpu;
            alive = true;
        }
        if alive {
            self.samples += 1;
        }
        alive
    }
}

/// Samples one process every `every` until [`Sampler::finish`].
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<ProcStats>,
}

impl Sampler {
    pub fn spawn(pid: u32, every: Duration) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stats = ProcStats::default();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => { stats.update(pid); }
                    _ = stopped.changed() => break,
                }
            }
            stats.update(pid);
            stats
        });
        Sampler { stop, task }
    }

    /// Takes a last sample and returns the totals.
    pub async fn finish(self) -> ProcStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Samples the walsender serving `slot` (its pid is looked up in pg_replication_slots until
/// it appears) every `every`; returns the walsender's CPU seconds at the last sample.
pub struct WalsenderSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<ProcStats>,
}

impl WalsenderSampler {
    pub fn spawn(client: tokio_postgres::Client, slot: String, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut stats = ProcStats::default();
            let mut pid: Option<u32> = None;
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                match pid {
                    Some(p) => {
                        stats.update(p);
                    }
                    None => {
                        pid = client
                            .query_opt(
                                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                                &[&slot],
                            )
                            .await
                            .ok()
                            .flatten()
                            .and_then(|row| row.get::<_, Option<i32>>(0))
                            .and_then(|p| u32::try_from(p).ok());
                    }
                }
            }
            if let Some(p) = pid {
                stats.update(p);
            }
            stats
        });
        WalsenderSampler { stop, task }
    }

    pub async fn finish(self) -> ProcStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// (VmRSS, VmHWM) in kB.
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let t = stat_times(pid)?;
    Some(t.own as f64 / USER_HZ)
}

/// CPU seconds of a PostgreSQL cluster: the postmaster, its live children (backends,
/// walsenders, background processes) and the children it has already reaped (`cutime` +
/// `cstime`), so that connections closed between two readings still count. The difference of
/// two readings is the cluster's CPU time in between.
pub fn cluster_cpu_secs(postmaster: u32) -> Option<f64> {
    let root = stat_times(postmaster)?;
    let mut ticks = root.own + root.children;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(t) = stat_times(pid).filter(|t| t.ppid == postmaster) {
            ticks += t.own + t.children;
        }
    }
    Some(ticks as f64 / USER_HZ)
}

/// Times of /proc/<pid>/stat, in clock ticks.
struct StatTimes {
    ppid: u32,
    /// utime + stime.
    own: u64,
    /// cutime + cstime: children waited for.
    children: u64,
}

fn stat_times(pid: u32) -> Option<StatTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // Field 3 (state) is fields[0]; ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    Some(StatTimes {
        ppid: u32::try_from(field(1)?).ok()?,
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
    })
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

//! `tributary slots`: each source's replication slot (position, lag, WAL retention), and
//! `tributary slots drop`: remove one, after a confirmation (docs/operations.md).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;
use tributary_config::{Config, SourceConfig};
use tributary_postgres::PgError;

use super::{Format, StreamReport, QUERY_BUDGET};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG", required = true)]
    pub config: Option<PathBuf>,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// `table` for a terminal, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Drop a source's replication slot. Refuses while the slot is in use; asks to type the
    /// slot's name unless --yes.
    Drop(DropArgs),
}

#[derive(clap::Args, Debug)]
pub struct DropArgs {
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// The source whose slot to drop.
    #[arg(long)]
    pub source: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// A source's slot as `slots` and `status` report it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct SlotReport {
    pub source: String,
    pub slot: String,
    /// `host:port/dbname` of the source.
    pub endpoint: String,
    pub exists: bool,
    pub active: Option<bool>,
    pub active_pid: Option<i32>,
    /// The process holding the slot, as pg_stat_activity describes it.
    pub held_by: Option<String>,
    pub plugin: Option<String>,
    pub slot_type: Option<String>,
    pub database: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    pub restart_lsn: Option<String>,
    pub current_wal_lsn: Option<String>,
    /// pg_current_wal_insert_lsn() - confirmed_flush_lsn: WAL the bridge has not confirmed.
    pub lag_bytes: Option<u64>,
    /// 0 when the slot has no WAL left to read; otherwise the time since the commit of the
    /// newest change in the stream (an upper bound); null when that is unknown.
    pub lag_seconds: Option<f64>,
    pub wal_status: Option<String>,
    /// Bytes of WAL that may still be written before the slot is invalidated (PostgreSQL 13+,
    /// null when unlimited); 0 for a slot already invalidated (`wal_status` lost).
    pub safe_wal_size: Option<i64>,
    /// Why the slot could not be read.
    pub error: Option<String>,
}

/// Reads `source`'s slot; a connection or query failure is reported in `error`.
pub(crate) async fn read_slot(source: &SourceConfig, command: &str) -> SlotReport {
    let mut report = SlotReport {
        source: source.name.clone(),
        slot: source.slot.clone(),
        endpoint: format!(
            "{}:{}/{}",
            source.connection.host, source.connection.port, source.connection.dbname
        ),
        ..Default::default()
    };
    let read = async {
        let params = super::params_for(source, command)?;
        let control = super::connect_control(&params).await?;
        let details = tokio::time::timeout(QUERY_BUDGET, control.slot_details(&source.slot))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {}s", QUERY_BUDGET.as_secs()))??;
        let holder = match details.as_ref().and_then(|d| d.active_pid) {
            Some(pid) => control.backend_info(pid).await.ok().flatten(),
            None => None,
        };
        anyhow::Ok((details, holder))
    };
    match read.await {
        Err(e) => report.error = Some(format!("{e:#}")),
        Ok((None, _)) => {}
        Ok((Some(d), holder)) => {
            report.exists = true;
            report.active = Some(d.active);
            report.active_pid = d.active_pid;
            report.held_by = holder
                .as_ref()
                .map(super::preflight::describe_backend)
                .or_else(|| d.active_pid.map(|p| format!("pid {p}")));
            report.plugin = d.plugin.clone();
            report.slot_type = Some(d.slot_type.clone());
            report.database = d.database.clone();
            report.confirmed_flush_lsn = d.confirmed_flush.map(|l| l.to_string());
            report.restart_lsn = d.restart_lsn.map(|l| l.to_string());
            report.current_wal_lsn = Some(d.current_wal.to_string());
            report.lag_bytes = d.lag_bytes();
            report.wal_status = d.wal_status.clone();
            // PostgreSQL reports NULL for a lost slot as for an unlimited one: nothing is safe
            // for a slot whose WAL is already gone.
            report.safe_wal_size = match d.wal_status.as_deref() {
                Some("lost") => Some(0),
                _ => d.safe_wal_size,
            };
        }
    }
    report
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Action::Drop(drop)) = args.action {
        return drop_slot(drop).await;
    }
    let path = args
        .config
        .context("--config is required (or set TRIBUTARY_CONFIG)")?;
    let config = tributary_config::load(&path)?;
    let sources = super::select_sources(&config, args.source.as_deref())?;
    let reports = list(&config, &sources).await;
    match args.format {
        Format::Json => super::print_json(&reports)?,
        Format::Table => print!("{}", render(&reports)),
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.source.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("could not read the slot of {}", failed.join(", "));
    }
    Ok(())
}

async fn list(config: &Config, sources: &[&SourceConfig]) -> Vec<SlotReport> {
    let mut reports = Vec::new();
    for source in sources {
        reports.push(read_slot(source, "slots").await);
    }
    // Lag in time: from the newest change in each stream, when NATS answers.
    if reports.iter().any(|r| r.lag_bytes.is_some_and(|b| b > 0)) {
        if let Ok(js) = super::connect_jetstream(config).await {
            for (report, source) in reports.iter_mut().zip(sources) {
                if report.lag_bytes.is_some_and(|b| b > 0) {
                    let stream = config.nats.resolved_stream(source).name;
                    let s = super::stream_report(&js, &stream).await;
                    report.lag_seconds = super::lag_seconds(report.lag_bytes, s.last_commit_micros);
                }
            }
        }
    }
    for r in reports.iter_mut() {
        if r.lag_bytes == Some(0) {
            r.lag_seconds = Some(0.0);
        }
    }
    reports
}

fn render(reports: &[SlotReport]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let state = if r.error.is_some() {
                "unreachable".to_string()
            } else if !r.exists {
                "missing".to_string()
            } else if r.active == Some(true) {
                match r.active_pid {
                    Some(pid) => format!("active (pid {pid})"),
                    None => "active".to_string(),
                }
            } else {
                "inactive".to_string()
            };
            vec![
                r.source.clone(),
                r.slot.clone(),
                state,
                r.plugin.clone().unwrap_or_else(dash),
                r.confirmed_flush_lsn.clone().unwrap_or_else(dash),
                r.restart_lsn.clone().unwrap_or_else(dash),
                r.lag_bytes.map(super::human_bytes).unwrap_or_else(dash),
                match (r.exists, r.lag_seconds) {
                    (true, Some(s)) => super::human_seconds(s),
                    (true, None) => "n/a".to_string(),
                    (false, _) => dash(),
                },
                r.wal_status.clone().unwrap_or_else(dash),
                match (r.exists, r.safe_wal_size) {
                    (true, Some(b)) if b >= 0 => super::human_bytes(b as u64),
                    (true, Some(_)) => "0 B".to_string(),
                    (true, None) if r.wal_status.is_some() => "unlimited".to_string(),
                    _ => dash(),
                },
            ]
        })
        .collect();
    let mut out = super::render_table(
        &[
            "SOURCE",
            "SLOT",
            "STATE",
            "PLUGIN",
            "CONFIRMED",
            "RESTART",
            "LAG",
            "LAG TIME",
            "WAL STATUS",
            "SAFE WAL SIZE",
        ],
        &rows,
    );
    let mut notes = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            notes.push(format!("{}: cannot read slot {}: {e}", r.source, r.slot));
        } else if !r.exists {
            notes.push(format!(
                "{}: slot {} does not exist on {} (created by the bridge's first start)",
                r.source, r.slot, r.endpoint
            ));
        } else if let Some(h) = &r.held_by {
            notes.push(format!("{}: slot {} is held by {h}", r.source, r.slot));
        }
        if r.wal_status.as_deref() == Some("lost") {
            notes.push(format!(
                "{}: slot {} is invalidated (wal_status lost): the WAL after its position is gone",
                r.source, r.slot
            ));
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

async fn drop_slot(args: DropArgs) -> anyhow::Result<()> {
    let config = tributary_config::load(&args.config)?;
    let source = *super::select_sources(&config, Some(&args.source))?
        .first()
        .context("no such source")?;
    let slot = &source.slot;
    let params = super::params_for(source, "slots-drop")?;
    let endpoint = params.endpoint();
    let control = super::connect_control(&params).await?;
    let Some(details) = control.slot_details(slot).await? else {
        anyhow::bail!("replication slot {slot} does not exist on {endpoint}: nothing to drop");
    };
    if details.active {
        let holder = match details.active_pid {
            Some(pid) => control
                .backend_info(pid)
                .await
                .ok()
                .flatten()
                .map(|b| super::preflight::describe_backend(&b))
                .unwrap_or_else(|| format!("pid {pid}")),
            None => "an unknown process".into(),
        };
        anyhow::bail!(
            "replication slot {slot} is active: held by {holder}. Stop that reader first (a running \
             `tributary run` for source {}: SIGTERM and let it drain), then drop the slot",
            source.name
        );
    }

    let stream_name = config.nats.resolved_stream(source).name;
    let stream = match super::connect_jetstream(&config).await {
        Ok(js) => Some(super::stream_report(&js, &stream_name).await),
        Err(_) => None,
    };
    eprintln!(
        "{}",
        explain(source, &details, &endpoint, stream.as_ref(), &stream_name)
    );

    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not dropped: confirmation needed but stdin is not a terminal (pass --yes to drop without asking)"
            );
        }
        eprint!("Type the slot name ({slot}) to drop it: ");
        let _ = std::io::stderr().flush();
        let typed = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .context("reading the confirmation")?
        .context("reading the confirmation")?;
        if typed.trim() != slot {
            anyhow::bail!("not dropped: {:?} is not the slot name", typed.trim());
        }
    }

    if let Err(e) = control
        .client()
        .execute("SELECT pg_drop_replication_slot($1)", &[slot])
        .await
    {
        let (code, message) = e
            .as_db_error()
            .map(|d| (d.code().code().to_string(), d.message().to_string()))
            .unwrap_or_else(|| (String::new(), e.to_string()));
        match code.as_str() {
            "55006" => anyhow::bail!(
                "not dropped: slot {slot} became active in the meantime ({message}); stop its reader and try again"
            ),
            "42704" => anyhow::bail!("slot {slot} no longer exists (dropped in the meantime)"),
            "42501" => anyhow::bail!(
                "not dropped: {message}; dropping a slot needs superuser or REPLICATION (ALTER ROLE {} WITH REPLICATION)",
                params.user
            ),
            _ => return Err(anyhow::Error::new(PgError::Control(e)).context(format!("dropping slot {slot}"))),
        }
    }
    println!(
        "dropped replication slot {slot} (source {}) on {endpoint}",
        source.name
    );
    Ok(())
}

/// What dropping the slot means for the source, shown before the confirmation.
fn explain(
    source: &SourceConfig,
    d: &tributary_postgres::control::SlotDetails,
    endpoint: &str,
    stream: Option<&StreamReport>,
    stream_name: &str,
) -> String {
    let slot = &source.slot;
    let mut text = format!(
        "About to drop replication slot {slot} of source {} on {endpoint}\n",
        source.name
    );
    text.push_str(&format!(
        "  confirmed position {}, {} of WAL behind, wal_status {}\n",
        d.confirmed_flush
            .map(|l| l.to_string())
            .unwrap_or_else(|| "n/a".into()),
        d.lag_bytes()
            .map(super::human_bytes)
            .unwrap_or_else(|| "n/a".into()),
        d.wal_status.as_deref().unwrap_or("n/a")
    ));
    text.push_str(
        "  PostgreSQL releases the WAL it keeps for the slot; changes committed after the confirmed\n  \
         position that are not in the stream yet will never reach it.\n",
    );
    let next = match stream {
        // Never advise deleting a stream another application owns.
        Some(s) if s.owned == Some(false) => format!(
            "  Next start: stream {stream_name} is not Tributary's (it has no tributary.owner mark), so \
             `tributary run` refuses it and leaves it untouched.\n  Give source {} its own stream \
             (`sources.stream.name`); do not delete {stream_name}, it holds another application's data.",
            source.name
        ),
        Some(s) if s.error.is_none() && s.messages.unwrap_or(0) > 0 => format!(
            "  Next start: stream {stream_name} holds {}, so `tributary run` refuses to start source {}\n  \
             (its slot is gone while the stream has data). Consumers need a new snapshot: once they are\n  \
             prepared, delete the stream (nats stream rm {stream_name}); the next start then creates a new\n  \
             slot at the then-current WAL position and a new history.",
            super::count(s.messages.unwrap_or(0) as usize, "message"),
            source.name
        ),
        Some(s) if s.error.is_none() => format!(
            "  Next start: stream {stream_name} is empty, so `tributary run` creates a new slot at the then-current\n  \
             WAL position; changes committed in between are not captured (a new snapshot covers them)."
        ),
        _ => format!(
            "  Next start: if stream {stream_name} holds messages, `tributary run` refuses to start source {} until the\n  \
             stream is deleted (consumers then need a new snapshot); if it is empty, the bridge creates a new slot at\n  \
             the then-current WAL position. (NATS could not be asked.)",
            source.name
        ),
    };
    text.push_str(&next);
    text
}

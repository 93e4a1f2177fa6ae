//! What the bridge meets at run time: its replication slot, the spool directory on this
//! machine, its JetStream stream and the NATS server itself.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use tributary_config::{Config, SourceConfig};

use super::report::describe_backend;
use super::{Check, Facts};

pub(super) fn check_slot(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "slot";
    let name = &source.slot;
    let Some(s) = &f.slot else {
        return Check::pass(
            CHECK,
            format!("slot {name} does not exist yet; created at first start, from the then-current WAL position"),
        );
    };
    if s.slot_type != "logical" || s.plugin.as_deref() != Some("pgoutput") {
        return Check::fail(
            CHECK,
            format!(
                "slot {name} is a {} slot with plugin {}, not a pgoutput logical slot",
                s.slot_type,
                s.plugin.as_deref().unwrap_or("none")
            ),
            "configure another `slot` name; or, if nothing uses this one, drop it (tributary slots drop --source …)",
        );
    }
    if s.database.as_deref() != Some(f.role.database.as_str()) {
        return Check::fail(
            CHECK,
            format!(
                "slot {name} belongs to database {}, not {}",
                s.database.as_deref().unwrap_or("?"),
                f.role.database
            ),
            format!(
                "give this source its own `slot` name (slot names are per server, not per database); \
                 or, if nothing uses it, drop slot {name} from database {}",
                s.database.as_deref().unwrap_or("?")
            ),
        );
    }
    match s.wal_status.as_deref() {
        Some("lost") => {
            return Check::fail(
                CHECK,
                format!("slot {name} is invalidated (wal_status lost): the WAL after its position is gone"),
                format!(
                    "changes were lost for this source: drop the slot (tributary slots drop --source {}) and start a new history (see docs/operations.md)",
                    source.name
                ),
            )
        }
        Some("unreserved") => {
            return Check::warn(
                CHECK,
                format!("slot {name} is about to be invalidated (wal_status unreserved)"),
                "start the bridge now so that it catches up, or raise max_slot_wal_keep_size",
            )
        }
        _ => {}
    }
    if s.active {
        let holder = f
            .slot_holder
            .as_ref()
            .map(describe_backend)
            .or_else(|| s.active_pid.map(|p| format!("pid {p}")))
            .unwrap_or_else(|| "another process".into());
        return Check::warn(
            CHECK,
            format!("slot {name} is in use by {holder}"),
            "one reader per slot: if that is not this bridge, stop it or configure another `slot`",
        );
    }
    let lag = s
        .lag_bytes()
        .map(crate::ops::human_bytes)
        .unwrap_or_else(|| "n/a".into());
    Check::pass(
        CHECK,
        format!(
            "slot {name} exists (pgoutput, confirmed {}, {lag} behind, wal_status {})",
            s.confirmed_flush
                .map(|l| l.to_string())
                .unwrap_or_else(|| "n/a".into()),
            s.wal_status.as_deref().unwrap_or("n/a")
        ),
    )
}

/// The spool of streamed transactions (protocol 2 only): a writable directory on the bridge's
/// machine. Probed in the nearest existing directory, never inside a running bridge's spool.
pub(super) fn check_spool(source: &SourceConfig, f: &Facts) -> Option<Check> {
    const CHECK: &str = "spool_dir";
    if !source.streaming || f.version_num < 140_000 {
        return None;
    }
    let base = source
        .spool_dir
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tributary-spool"));
    let mut probe = base.clone();
    while !probe.exists() {
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p.to_path_buf(),
            _ => break,
        }
    }
    let fix = "set `sources.spool_dir` to a writable directory with room for the largest transaction, or streaming = false";
    if !probe.is_dir() {
        return Some(Check::fail(
            CHECK,
            format!("{} is not a directory", probe.display()),
            fix,
        ));
    }
    let file = probe.join(format!(".tributary-preflight-{}", std::process::id()));
    Some(match std::fs::File::create(&file) {
        Ok(_) => {
            let _ = std::fs::remove_file(&file);
            Check::pass(
                CHECK,
                format!(
                    "{} is writable on this machine (large transactions are spooled there while they run)",
                    base.join(&source.name).display()
                ),
            )
        }
        Err(e) => Check::fail(
            CHECK,
            format!("cannot write in {}: {e}", probe.display()),
            fix,
        ),
    })
}

pub(super) async fn check_stream(
    config: &Config,
    source: &SourceConfig,
    facts: &Facts,
    js: &jetstream::Context,
) -> Check {
    const CHECK: &str = "stream";
    let spec = tributary_pipeline::source_stream(
        config.nats.resolved_stream(source),
        &config.nats.subject_prefix,
        &source.name,
    );
    let name = spec.settings.name.clone();
    // Whose the stream is comes first: the advice below deletes it, which is only ever
    // right for the bridge's own stream.
    let owned = super::checks_streams::check_spec(js, &spec).await;
    if owned.status == super::Status::Fail {
        return owned;
    }
    let report = crate::ops::stream_report(js, &name).await;
    if let Some(e) = report.error {
        return Check::fail(
            CHECK,
            e,
            "let the NATS user read stream info ($JS.API.STREAM.INFO.*) and create the stream",
        );
    }
    if !report.exists {
        return Check::pass(
            CHECK,
            format!("{name} does not exist yet; created at first start"),
        );
    }
    let messages = report.messages.unwrap_or(0);
    if messages > 0 && facts.slot.is_none() {
        return Check::fail(
            CHECK,
            format!(
                "{name} holds {messages} messages but slot {} does not exist: `tributary run` refuses to start this source, \
                 because changes made since the slot was lost are missing from the stream",
                source.slot
            ),
            format!(
                "consumers must re-sync: once they are prepared, delete the stream (nats stream rm {name}) so that the next \
                 start creates a new slot and begins a new history"
            ),
        );
    }
    if owned.status != super::Status::Pass {
        return owned;
    }
    Check::pass(
        CHECK,
        format!(
            "{}: {messages} messages, last sequence {}",
            owned.detail,
            report.last_sequence.unwrap_or(0)
        ),
    )
}

pub(super) async fn check_nats(
    config: &Config,
    out: &mut Vec<Check>,
) -> Option<jetstream::Context> {
    let servers = config.nats.servers.join(", ");
    let timeout = Duration::from_millis(config.nats.connect_timeout_ms) + Duration::from_secs(5);
    let client = match tokio::time::timeout(
        timeout,
        tributary_nats::connect(&config.nats, "tributary-preflight"),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            out.push(Check::fail(
                "reachable",
                e.to_string(),
                "check `nats.servers`, the credentials in [nats] and that nats-server runs and is reachable from here",
            ));
            return None;
        }
        Err(_) => {
            out.push(Check::fail(
                "reachable",
                format!("no answer from {servers} within {}s", timeout.as_secs()),
                "check `nats.servers`, firewalls and that nats-server runs",
            ));
            return None;
        }
    };
    let version = client.server_info().version;
    out.push(Check::pass(
        "reachable",
        format!("connected to {servers} (nats-server {version})"),
    ));
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client);
    match js.query_account().await {
        Ok(account) => {
            out.push(Check::pass(
                "jetstream",
                format!(
                    "JetStream enabled: {} streams, {} stored",
                    account.streams,
                    crate::ops::human_bytes(account.storage)
                ),
            ));
            Some(js)
        }
        Err(e) => {
            out.push(Check::fail(
                "jetstream",
                format!("JetStream does not answer: {e}"),
                "enable JetStream on the server (`nats-server -js`, or a `jetstream { store_dir: … }` block) and for this account",
            ));
            None
        }
    }
}

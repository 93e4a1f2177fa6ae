//! `tributary preflight`: checks that every source's PostgreSQL and the NATS server are ready
//! for the bridge, that the SaaS feeds' and sinks' credentials get in, and prints what to
//! change where they are not (docs/operations.md).
//!
//! Catalog facts are gathered first (read-only queries), then [`evaluate`] turns them into
//! pass / warn / fail rows, so that the rules are plain functions of what the server said.
//!
//! Layout: this module gathers the facts and runs the checks in order; the rules live in
//! `checks_server` (version, WAL and replication limits), `checks_access` (connections and
//! privileges), `checks_tables` (publication and tables) and `checks_runtime` (slot, spool,
//! stream and NATS), `checks_streams` (whose each stream is), `checks_saas` (Shopify, Salesforce and WMS credentials); `report` holds the report lines and their rendering, `sql` the quoting
//! of identifiers in the suggested fixes.

mod checks_access;
mod checks_runtime;
mod checks_saas;
mod checks_server;
mod checks_streams;
mod checks_tables;
mod report;
mod sql;
#[cfg(test)]
mod test_support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use tributary_config::{Config, SourceConfig};
use tributary_postgres::control::{
    BackendInfo, PublicationInfo, ReplicationUsage, RoleInfo, SettingValue, SlotDetails, TableInfo,
};
use tributary_postgres::{ControlConnection, PgError};

use super::{Format, QUERY_BUDGET};
use checks_access::{check_replication_connection, check_replication_privilege, connect_failure};
use checks_runtime::{check_nats, check_slot, check_spool, check_stream};
use checks_server::{
    check_senders_headroom, check_slots_headroom, check_version, check_wal_keep, check_wal_level,
};
use checks_tables::{check_publication, check_tables};
pub(crate) use report::describe_backend;
pub use report::{render, Check, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// `table` for a terminal, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = tributary_config::load(&args.config)?;
    let checks = preflight(&config).await;
    match args.format {
        Format::Json => super::print_json(&checks)?,
        Format::Table => print!("{}", render(&checks)),
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        return Err(crate::exit::check_failed(anyhow::anyhow!(
            "preflight: {failed} of {} checks failed; fix them before starting the bridge (warnings do not stop it)",
            checks.len()
        )));
    }
    Ok(())
}

/// Runs every check: each source (a source that cannot be reached is a failed check, and the
/// others still run), then NATS.
pub async fn preflight(config: &Config) -> Vec<Check> {
    let mut nats_checks = Vec::new();
    let js = check_nats(config, &mut nats_checks).await;
    if let Some(js) = &js {
        nats_checks.extend(checks_streams::check_other_streams(config, js).await);
    }
    let mut all = Vec::new();
    let mut servers: Vec<(&SourceConfig, String)> = Vec::new();
    for source in &config.sources {
        let mut rows = Vec::new();
        let mut server = None;
        let budget = Duration::from_millis(source.connection.connect_timeout_ms) * 2 + QUERY_BUDGET;
        let checked = tokio::time::timeout(
            budget,
            check_source(config, source, js.as_ref(), &mut rows, &mut server),
        )
        .await;
        if let Some(server) = server {
            if let Some(row) = check_shared_slot(source, &server, &servers) {
                rows.push(row);
            }
            servers.push((source, server));
        }
        if checked.is_err() {
            rows.push(Check::fail(
                "timeout",
                format!("the checks did not finish within {}s", budget.as_secs()),
                "check that the server answers queries (locks, load, network) and run preflight again",
            ));
        }
        all.extend(rows.into_iter().map(|mut c| {
            c.source = source.name.clone();
            c
        }));
    }
    all.extend(nats_checks.into_iter().map(|mut c| {
        c.source = "nats".into();
        c
    }));
    all.extend(
        checks_saas::check_saas(config)
            .await
            .into_iter()
            .map(|(label, mut c)| {
                c.source = label;
                c
            }),
    );
    all
}

/// What the catalog says, gathered before any rule is applied.
#[derive(Debug, Clone)]
pub struct Facts {
    pub version: String,
    pub version_num: i32,
    pub wal_level: String,
    pub role: RoleInfo,
    pub usage: ReplicationUsage,
    pub slot: Option<SlotDetails>,
    pub slot_holder: Option<BackendInfo>,
    pub publication: Option<PublicationInfo>,
    pub publication_tables: Vec<(String, String)>,
    /// Every table of the configuration and the publication, configured ones first.
    pub tables: Vec<TableInfo>,
    /// `max_slot_wal_keep_size` (None before PostgreSQL 13).
    pub max_slot_wal_keep_size: Option<SettingValue>,
}

async fn gather(control: &ControlConnection, source: &SourceConfig) -> Result<Facts, PgError> {
    let (version, version_num) = control.server_version().await?;
    let wal_level = control.setting("wal_level").await?;
    let role = control.current_role_info().await?;
    let usage = control.replication_usage().await?;
    let slot = control.slot_details(&source.slot).await?;
    let slot_holder = match slot.as_ref().and_then(|s| s.active_pid) {
        Some(pid) => control.backend_info(pid).await?,
        None => None,
    };
    let publication = control.publication_info(&source.publication).await?;
    let publication_tables = if publication.is_some() {
        control.publication_table_names(&source.publication).await?
    } else {
        Vec::new()
    };
    let mut names = configured_tables(source);
    let mut seen: HashSet<(String, String)> = names.iter().cloned().collect();
    for t in &publication_tables {
        if seen.insert(t.clone()) {
            names.push(t.clone());
        }
    }
    let tables = control.table_info(&names).await?;
    let max_slot_wal_keep_size = control.setting_opt("max_slot_wal_keep_size").await?;
    Ok(Facts {
        version,
        version_num,
        wal_level,
        role,
        usage,
        slot,
        slot_holder,
        publication,
        publication_tables,
        tables,
        max_slot_wal_keep_size,
    })
}

fn configured_tables(source: &SourceConfig) -> Vec<(String, String)> {
    source
        .tables
        .iter()
        .filter_map(|t| t.split_once('.'))
        .map(|(s, t)| (s.to_string(), t.to_string()))
        .collect()
}

async fn check_source(
    config: &Config,
    source: &SourceConfig,
    js: Option<&jetstream::Context>,
    out: &mut Vec<Check>,
    server: &mut Option<String>,
) {
    let params = match super::params_for(source, "preflight") {
        Ok(p) => p,
        Err(e) => {
            out.push(Check::fail(
                "connect",
                format!("{e:#}"),
                "fix the [sources.connection] settings (password source, sslrootcert)",
            ));
            return;
        }
    };
    let control = match super::connect_control(&params).await {
        Ok(c) => c,
        Err(e) => {
            out.push(connect_failure(&e, source));
            return;
        }
    };
    out.push(Check::pass(
        "connect",
        format!("connected to {} as {}", params.endpoint(), params.user),
    ));
    // Best effort: without it, two host names of one server go unnoticed (as at config load).
    *server = control.server_identity().await.ok().flatten();
    let facts = match gather(&control, source).await {
        Ok(f) => f,
        Err(e) => {
            out.push(Check::fail(
                "catalog",
                format!("reading the catalog failed: {e}"),
                "let the user read pg_settings, pg_roles, pg_replication_slots, pg_publication and pg_class (the defaults allow it)",
            ));
            return;
        }
    };
    let mut rows = evaluate(source, &facts);
    rows.extend(check_spool(source, &facts));
    // The replication connection itself: pg_hba.conf and the walsender limit, as the bridge
    // will meet them. Skipped when the role cannot replicate (already a failure).
    if facts.role.superuser || facts.role.replication {
        let at = rows
            .iter()
            .position(|c| c.check == "replication_privilege")
            .map_or(rows.len(), |i| i + 1);
        rows.insert(at, check_replication_connection(&params, source).await);
    }
    if let Some(js) = js {
        rows.push(check_stream(config, source, &facts, js).await);
    }
    out.extend(rows);
}

/// Two sources that reach one server (by its identity, whatever the host names) on one slot
/// name: `run` refuses them too.
fn check_shared_slot(
    source: &SourceConfig,
    server: &str,
    earlier: &[(&SourceConfig, String)],
) -> Option<Check> {
    let (other, _) = earlier
        .iter()
        .find(|(o, s)| s == server && o.slot == source.slot)?;
    Some(Check::fail(
        "shared_slot",
        format!(
            "slot {} is also the slot of source {}, on the same PostgreSQL server (system {server}) under another host name",
            source.slot, other.name
        ),
        "give each source its own `slot` name: a slot has one reader and one history",
    ))
}

/// The rules: catalog facts to report lines.
pub fn evaluate(source: &SourceConfig, f: &Facts) -> Vec<Check> {
    let mut out = vec![
        check_version(source, f),
        check_wal_level(f),
        check_slots_headroom(source, f),
        check_senders_headroom(f),
        check_replication_privilege(f),
        check_publication(source, f),
    ];
    out.extend(check_tables(source, f));
    out.push(check_wal_keep(f));
    out.push(check_slot(source, f));
    out
}

#[cfg(test)]
mod tests {
    use super::test_support::{facts, source, status, table};
    use super::*;
    use tributary_core::Lsn;

    #[test]
    fn a_correct_setup_passes() {
        let rows = evaluate(
            &source(&["public.orders"], false),
            &facts(vec![table("orders", "d", true, &[])]),
        );
        assert!(rows.iter().all(|c| c.status == Status::Pass), "{rows:#?}");
        assert!(rows.iter().all(|c| c.fix.is_none()));
    }

    #[test]
    fn identity_toast_and_wal_keep_rules() {
        let mut f = facts(vec![
            table("orders", "d", true, &["note"]),
            table("notes", "d", false, &[]),
            table("blobs", "f", false, &["data"]),
            table("audit", "n", false, &[]),
        ]);
        f.max_slot_wal_keep_size = Some(SettingValue {
            raw: "-1".into(),
            display: "-1".into(),
        });
        let rows = evaluate(&source(&[], false), &f);
        let identity = rows
            .iter()
            .find(|c| c.check == "replica_identity")
            .expect("row");
        assert_eq!(identity.status, Status::Fail);
        assert!(
            identity.detail.contains("public.notes (no primary key"),
            "{}",
            identity.detail
        );
        assert!(identity
            .detail
            .contains("public.audit (REPLICA IDENTITY NOTHING)"));
        assert!(!identity.detail.contains("blobs"));
        let toast = rows
            .iter()
            .find(|c| c.check == "toast_columns")
            .expect("row");
        assert_eq!(toast.status, Status::Warn);
        assert!(toast.detail.contains("public.orders (note)") && !toast.detail.contains("blobs"));
        assert_eq!(status(&rows, "max_slot_wal_keep_size"), Status::Warn);
    }

    #[test]
    fn slot_headroom_and_privileges() {
        let mut f = facts(vec![table("orders", "d", true, &[])]);
        f.usage.slots_used = 10;
        f.usage.wal_senders_active = 10;
        f.role.replication = false;
        f.tables[0].select = false;
        let rows = evaluate(&source(&["public.orders"], false), &f);
        assert_eq!(status(&rows, "max_replication_slots"), Status::Fail);
        assert_eq!(status(&rows, "max_wal_senders"), Status::Fail);
        assert_eq!(status(&rows, "replication_privilege"), Status::Fail);
        assert_eq!(status(&rows, "select_privilege"), Status::Fail);
        // The slot exists already: no new slot is needed.
        f.slot = Some(SlotDetails {
            name: "slot_erp".into(),
            slot_type: "logical".into(),
            plugin: Some("pgoutput".into()),
            database: Some("erp".into()),
            active: false,
            active_pid: None,
            restart_lsn: Some(Lsn(10)),
            confirmed_flush: Some(Lsn(20)),
            wal_status: Some("lost".into()),
            safe_wal_size: None,
            current_wal: Lsn(100),
        });
        let rows = evaluate(&source(&["public.orders"], false), &f);
        assert_eq!(status(&rows, "max_replication_slots"), Status::Pass);
        assert_eq!(status(&rows, "slot"), Status::Fail);
    }
}

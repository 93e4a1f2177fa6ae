//! `tributary preflight`: checks that every source's PostgreSQL and the NATS server are ready
//! for the bridge, and prints what to change where they are not (docs/operations.md).
//!
//! Catalog facts are gathered first (read-only queries), then [`evaluate`] turns them into
//! pass / warn / fail rows, so that the rules are plain functions of what the server said.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use serde::Serialize;
use tributary_config::{Config, SourceConfig};
use tributary_postgres::control::{
    BackendInfo, PublicationInfo, ReplicationUsage, RoleInfo, SettingValue, SlotDetails, TableInfo,
};
use tributary_postgres::replication::ReplicationConnection;
use tributary_postgres::{ControlConnection, PgError};

use super::{Format, QUERY_BUDGET};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// `table` for a terminal, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The source's name, or `nats`.
    pub source: String,
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or a failure; None when the check passed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(check: &str, detail: impl Into<String>) -> Self {
        Self::new(check, Status::Pass, detail.into(), None)
    }
    fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Status::Warn, detail.into(), Some(fix.into()))
    }
    fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Status::Fail, detail.into(), Some(fix.into()))
    }
    fn new(check: &str, status: Status, detail: String, fix: Option<String>) -> Self {
        Check {
            source: String::new(),
            check: check.to_string(),
            status,
            detail,
            fix,
        }
    }
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
        anyhow::bail!(
            "preflight: {failed} of {} checks failed; the bridge will not start until they are fixed",
            checks.len()
        );
    }
    Ok(())
}

/// Runs every check: each source (a source that cannot be reached is a failed check, and the
/// others still run), then NATS.
pub async fn preflight(config: &Config) -> Vec<Check> {
    let mut nats_checks = Vec::new();
    let js = check_nats(config, &mut nats_checks).await;
    let mut all = Vec::new();
    for source in &config.sources {
        let mut rows = Vec::new();
        let budget = Duration::from_millis(source.connection.connect_timeout_ms) * 2 + QUERY_BUDGET;
        let checked =
            tokio::time::timeout(budget, check_source(config, source, js.as_ref(), &mut rows))
                .await;
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
    all
}

async fn check_nats(config: &Config, out: &mut Vec<Check>) -> Option<jetstream::Context> {
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
                    super::human_bytes(account.storage)
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

fn connect_failure(e: &PgError, source: &SourceConfig) -> Check {
    let c = &source.connection;
    let fix = match e {
        PgError::Auth { .. } => format!(
            "check the user and password in [sources.connection] and the pg_hba.conf line for database {} and user {}",
            c.dbname, c.user
        ),
        PgError::Server { code, .. } if code == "3D000" => format!(
            "create database {} or fix `sources.connection.dbname`",
            c.dbname
        ),
        PgError::Server { code, .. } if code == "28000" => format!(
            "add a pg_hba.conf line allowing user {} to database {} from this host, then SELECT pg_reload_conf()",
            c.user, c.dbname
        ),
        PgError::Server { code, .. } if code == "53300" => {
            "the server has no free connection: raise max_connections or close idle sessions".into()
        }
        PgError::Tls(_) => "check `sslmode` and `sslrootcert` against the server's TLS setup".into(),
        _ => format!(
            "check that PostgreSQL runs and listens on {}:{} (listen_addresses, port, firewalls)",
            c.host, c.port
        ),
    };
    Check::fail("connect", e.to_string(), fix)
}

async fn check_replication_connection(
    params: &tributary_postgres::ConnectParams,
    source: &SourceConfig,
) -> Check {
    const CHECK: &str = "replication_connection";
    let attempt = async {
        let mut conn = ReplicationConnection::connect(params).await?;
        let identity = conn.identify_system().await;
        conn.close().await;
        identity
    };
    let budget = params.connect_timeout + Duration::from_secs(10);
    let result = match tokio::time::timeout(budget, attempt).await {
        Ok(r) => r,
        Err(_) => Err(PgError::ConnectTimeout(params.endpoint())),
    };
    match result {
        Ok(identity) => Check::pass(
            CHECK,
            format!(
                "replication connection accepted (system {}, timeline {}, WAL at {})",
                identity.system_id, identity.timeline, identity.xlog_pos
            ),
        ),
        Err(e) => {
            let text = e.to_string();
            let fix = if text.contains("max_wal_senders") || text.contains("53300") {
                "raise max_wal_senders (ALTER SYSTEM SET max_wal_senders = …; restart PostgreSQL) or stop an unused replication client".to_string()
            } else if text.contains("pg_hba") || matches!(e, PgError::Auth { .. }) {
                format!(
                    "allow it in pg_hba.conf: logical replication matches the database column by name, e.g. `host {} {} <client-address>/32 scram-sha-256`",
                    source.connection.dbname, source.connection.user
                )
            } else {
                "see the error; the bridge opens the same connection (replication=database)"
                    .to_string()
            };
            Check::fail(CHECK, text, fix)
        }
    }
}

async fn check_stream(
    config: &Config,
    source: &SourceConfig,
    facts: &Facts,
    js: &jetstream::Context,
) -> Check {
    const CHECK: &str = "stream";
    let name = config.nats.resolved_stream(source).name;
    let report = super::stream_report(js, &name).await;
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
    Check::pass(
        CHECK,
        format!(
            "{name} exists: {messages} messages, last sequence {}",
            report.last_sequence.unwrap_or(0)
        ),
    )
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

fn check_version(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "server_version";
    if f.version_num < 100_000 {
        return Check::fail(
            CHECK,
            format!(
                "PostgreSQL {} is too old: logical replication with pgoutput needs 10 or newer",
                f.version
            ),
            "upgrade PostgreSQL to 10 or newer (14+ recommended)",
        );
    }
    let note = match (f.version_num >= 140_000, source.streaming) {
        (true, true) => "pgoutput protocol 2: large transactions stream while they run (streaming = true)",
        (true, false) => "pgoutput protocol 1 (streaming = false): the server spills large transactions and sends them after their commit",
        (false, _) => "pgoutput protocol 1: protocol 2 (streaming of in-progress transactions) needs 14+, so the server spills large transactions and sends them after their commit",
    };
    Check::pass(CHECK, format!("PostgreSQL {}: {note}", f.version))
}

/// The spool of streamed transactions (protocol 2 only): a writable directory on the bridge's
/// machine. Probed in the nearest existing directory, never inside a running bridge's spool.
fn check_spool(source: &SourceConfig, f: &Facts) -> Option<Check> {
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

fn check_wal_level(f: &Facts) -> Check {
    const CHECK: &str = "wal_level";
    if f.wal_level == "logical" {
        Check::pass(CHECK, "wal_level = logical")
    } else {
        Check::fail(
            CHECK,
            format!(
                "wal_level = {}: logical decoding needs wal_level = logical",
                f.wal_level
            ),
            "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
        )
    }
}

fn check_slots_headroom(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "max_replication_slots";
    let u = &f.usage;
    let free = u.max_replication_slots - u.slots_used;
    if f.slot.is_some() {
        return Check::pass(
            CHECK,
            format!(
                "{} of {} slots used, including this source's slot {}",
                u.slots_used, u.max_replication_slots, source.slot
            ),
        );
    }
    if free <= 0 {
        return Check::fail(
            CHECK,
            format!(
                "all {} replication slots are in use and slot {} does not exist yet",
                u.max_replication_slots, source.slot
            ),
            format!(
                "ALTER SYSTEM SET max_replication_slots = {} (then restart PostgreSQL), or drop an unused slot (SELECT pg_drop_replication_slot('…'))",
                u.max_replication_slots.max(u.slots_used) + 1
            ),
        );
    }
    Check::pass(
        CHECK,
        format!(
            "{} of {} slots used; {free} free for slot {}",
            u.slots_used, u.max_replication_slots, source.slot
        ),
    )
}

fn check_senders_headroom(f: &Facts) -> Check {
    const CHECK: &str = "max_wal_senders";
    let u = &f.usage;
    let detail = format!(
        "{} of {} WAL senders active",
        u.wal_senders_active, u.max_wal_senders
    );
    let slot_held = f.slot.as_ref().is_some_and(|s| s.active);
    if u.wal_senders_active >= u.max_wal_senders && !slot_held {
        return Check::fail(
            CHECK,
            format!("{detail}: no WAL sender is free for the bridge"),
            format!(
                "ALTER SYSTEM SET max_wal_senders = {} (then restart PostgreSQL), or stop an unused replication client",
                u.max_wal_senders.max(u.wal_senders_active) + 1
            ),
        );
    }
    Check::pass(CHECK, detail)
}

fn check_replication_privilege(f: &Facts) -> Check {
    const CHECK: &str = "replication_privilege";
    let r = &f.role;
    if r.superuser {
        Check::pass(CHECK, format!("role {} is a superuser", r.name))
    } else if r.replication {
        Check::pass(CHECK, format!("role {} has REPLICATION", r.name))
    } else {
        Check::fail(
            CHECK,
            format!("role {} has neither REPLICATION nor superuser: it cannot open a replication connection", r.name),
            format!("ALTER ROLE {} WITH REPLICATION;", sql_ident(&r.name)),
        )
    }
}

fn check_publication(source: &SourceConfig, f: &Facts) -> Check {
    const CHECK: &str = "publication";
    let name = &source.publication;
    let configured = configured_tables(source);
    let Some(p) = &f.publication else {
        if !source.create_publication {
            let list = if configured.is_empty() {
                "<schema.table>, …".to_string()
            } else {
                table_list_sql(&configured)
            };
            return Check::fail(
                CHECK,
                format!("publication {name} does not exist in database {}", f.role.database),
                format!(
                    "CREATE PUBLICATION {} FOR TABLE {list}; (or set create_publication = true with `tables`)",
                    sql_ident(name)
                ),
            );
        }
        let mut problems = Vec::new();
        if !f.role.superuser && !f.role.create_on_database {
            problems.push(format!(
                "role {} lacks CREATE on database {}",
                f.role.name, f.role.database
            ));
        }
        let not_owned: Vec<String> = f
            .tables
            .iter()
            .filter(|t| {
                t.exists && !t.owned && configured.contains(&(t.schema.clone(), t.name.clone()))
            })
            .map(TableInfo::qualified)
            .collect();
        if !not_owned.is_empty() {
            problems.push(format!(
                "role {} does not own {}",
                f.role.name,
                short_list(&not_owned)
            ));
        }
        if problems.is_empty() {
            return Check::pass(
                CHECK,
                format!(
                    "publication {name} does not exist yet; created at first start (create_publication = true) for {}",
                    short_list(&source.tables)
                ),
            );
        }
        return Check::fail(
            CHECK,
            format!("publication {name} does not exist and cannot be created by the bridge: {}", problems.join("; ")),
            format!(
                "have the tables' owner run CREATE PUBLICATION {} FOR TABLE {}; (or GRANT CREATE ON DATABASE {} TO {} and make it the owner)",
                sql_ident(name),
                table_list_sql(&configured),
                sql_ident(&f.role.database),
                sql_ident(&f.role.name)
            ),
        );
    };
    let covered: HashSet<&(String, String)> = f.publication_tables.iter().collect();
    let missing: Vec<(String, String)> = configured
        .iter()
        .filter(|t| !covered.contains(t))
        .cloned()
        .collect();
    let scope = if p.all_tables {
        "FOR ALL TABLES".to_string()
    } else {
        super::count(f.publication_tables.len(), "table")
    };
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|(s, t)| format!("{s}.{t}")).collect();
        return Check::fail(
            CHECK,
            format!(
                "publication {name} ({scope}) does not cover {} (config key `tables`)",
                short_list(&names)
            ),
            format!(
                "ALTER PUBLICATION {} ADD TABLE {};",
                sql_ident(name),
                table_list_sql(&missing)
            ),
        );
    }
    let mut skipped = Vec::new();
    for (on, op) in [
        (p.insert, "insert"),
        (p.update, "update"),
        (p.delete, "delete"),
        (p.truncate, "truncate"),
    ] {
        if !on {
            skipped.push(op);
        }
    }
    if skipped.iter().any(|op| *op != "truncate")
        || (f.version_num >= 110_000 && !skipped.is_empty())
    {
        return Check::warn(
            CHECK,
            format!("publication {name} ({scope}) does not publish {}: those changes never reach the stream", skipped.join(", ")),
            format!("ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate');", sql_ident(name)),
        );
    }
    Check::pass(CHECK, format!("publication {name} exists ({scope})"))
}

/// Existence, SELECT privilege, replica identity and TOAST-able columns of the tables.
fn check_tables(source: &SourceConfig, f: &Facts) -> Vec<Check> {
    let configured = configured_tables(source);
    // The tables whose changes the bridge publishes; the publication's others are skipped.
    let processed: Vec<&TableInfo> = if configured.is_empty() {
        f.tables.iter().collect()
    } else {
        f.tables
            .iter()
            .filter(|t| configured.contains(&(t.schema.clone(), t.name.clone())))
            .collect()
    };
    if f.tables.is_empty() {
        if f.publication.is_some() {
            return vec![Check::warn(
                "tables",
                format!("publication {} has no tables and `tables` is empty: nothing will be replicated", source.publication),
                format!("ALTER PUBLICATION {} ADD TABLE <schema.table>, …;", sql_ident(&source.publication)),
            )];
        }
        // No publication and no configured tables: the publication check already failed.
        return Vec::new();
    }
    let mut out = Vec::new();

    let absent: Vec<String> = processed
        .iter()
        .filter(|t| !t.exists)
        .map(|t| t.qualified())
        .collect();
    let present: Vec<&TableInfo> = processed.iter().copied().filter(|t| t.exists).collect();
    if absent.is_empty() {
        let names: Vec<String> = present.iter().map(|t| t.qualified()).collect();
        out.push(Check::pass(
            "tables",
            format!(
                "{}: {}",
                super::count(names.len(), "table"),
                short_list(&names)
            ),
        ));
    } else {
        out.push(Check::fail(
            "tables",
            format!("{} do not exist in database {}", short_list(&absent), f.role.database),
            "create them, or remove them from `tables` (names are schema.table, case-sensitive as in pg_class)",
        ));
    }

    let no_select: Vec<&TableInfo> = present.iter().copied().filter(|t| !t.select).collect();
    if no_select.is_empty() {
        out.push(Check::pass(
            "select_privilege",
            format!("role {} may SELECT every table", f.role.name),
        ));
    } else {
        let names: Vec<String> = no_select.iter().map(|t| t.qualified()).collect();
        let pairs: Vec<(String, String)> = no_select
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        let schemas: Vec<String> = {
            let mut s: Vec<String> = no_select.iter().map(|t| sql_ident(&t.schema)).collect();
            s.dedup();
            s
        };
        out.push(Check::fail(
            "select_privilege",
            format!(
                "role {} may not SELECT {} (needed for snapshots and backfills)",
                f.role.name,
                short_list(&names)
            ),
            format!(
                "GRANT USAGE ON SCHEMA {} TO {role}; GRANT SELECT ON {} TO {role};",
                schemas.join(", "),
                table_list_sql(&pairs),
                role = sql_ident(&f.role.name)
            ),
        ));
    }

    // Replica identity matters for every table of the publication: PostgreSQL itself
    // rejects UPDATE and DELETE on a published table without one.
    let mut bad = Vec::new();
    for t in f.tables.iter().filter(|t| t.exists) {
        let problem = match t.replica_identity.as_deref() {
            Some("n") => Some("REPLICA IDENTITY NOTHING"),
            Some("d") if !t.has_primary_key => Some("no primary key and REPLICA IDENTITY DEFAULT"),
            Some("i") if !t.has_identity_index => {
                Some("REPLICA IDENTITY USING INDEX, but the index is gone")
            }
            _ => None,
        };
        if let Some(p) = problem {
            bad.push((t, p));
        }
    }
    if bad.is_empty() {
        out.push(Check::pass(
            "replica_identity",
            "every table has a primary key or REPLICA IDENTITY FULL / USING INDEX",
        ));
    } else {
        let detail: Vec<String> = bad
            .iter()
            .map(|(t, p)| format!("{} ({p})", t.qualified()))
            .collect();
        let first = bad[0].0;
        out.push(Check::fail(
            "replica_identity",
            format!(
                "{}: PostgreSQL rejects their UPDATEs and DELETEs while the publication publishes them, and events would carry no key",
                detail.join(", ")
            ),
            format!(
                "give each a primary key (ALTER TABLE {t} ADD PRIMARY KEY (…);) or ALTER TABLE {t} REPLICA IDENTITY FULL;",
                t = table_sql(&first.schema, &first.name)
            ),
        ));
    }

    let toasty: Vec<String> = present
        .iter()
        .filter(|t| t.replica_identity.as_deref() != Some("f") && !t.toastable_columns.is_empty())
        .map(|t| format!("{} ({})", t.qualified(), t.toastable_columns.join(", ")))
        .collect();
    if toasty.is_empty() {
        out.push(Check::pass(
            "toast_columns",
            "no TOAST-able columns outside REPLICA IDENTITY FULL tables",
        ));
    } else {
        out.push(Check::warn(
            "toast_columns",
            format!(
                "{}: an UPDATE that leaves a large (TOASTed) value of these columns alone sends it as an `unchanged` marker, not the value",
                short_list(&toasty)
            ),
            "fine for consumers that keep the previous value; otherwise ALTER TABLE … REPLICA IDENTITY FULL (more WAL per update)",
        ));
    }
    out
}

fn check_wal_keep(f: &Facts) -> Check {
    const CHECK: &str = "max_slot_wal_keep_size";
    match &f.max_slot_wal_keep_size {
        None => Check::warn(
            CHECK,
            format!("PostgreSQL {} has no max_slot_wal_keep_size (13+): an abandoned slot retains WAL until the disk fills", f.version),
            "watch slot lag (tributary slots) and drop abandoned slots; upgrade to 13+ to cap it",
        ),
        Some(v) if v.raw == "-1" => Check::warn(
            CHECK,
            "max_slot_wal_keep_size = -1 (unlimited): an abandoned or stalled slot retains WAL until the disk fills",
            "ALTER SYSTEM SET max_slot_wal_keep_size = '<well below the free WAL disk>'; SELECT pg_reload_conf();",
        ),
        Some(v) => Check::pass(
            CHECK,
            format!(
                "max_slot_wal_keep_size = {}: a slot further behind is invalidated (wal_status lost) instead of filling the disk",
                v.display
            ),
        ),
    }
}

fn check_slot(source: &SourceConfig, f: &Facts) -> Check {
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
            "configure another `slot` name (slot names are per server, not per database)",
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
        .map(super::human_bytes)
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

/// `pid 123 (tributary-erp, user app, from 10.0.0.5, since …)`.
pub(crate) fn describe_backend(b: &BackendInfo) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &b.application_name {
        parts.push(a.clone());
    }
    if let Some(u) = &b.user {
        parts.push(format!("user {u}"));
    }
    if let Some(c) = &b.client_addr {
        parts.push(format!("from {c}"));
    }
    if let Some(s) = &b.backend_start {
        parts.push(format!("since {s}"));
    }
    if parts.is_empty() {
        format!("pid {}", b.pid)
    } else {
        format!("pid {} ({})", b.pid, parts.join(", "))
    }
}

/// An identifier as SQL: bare when that reads back the same, double-quoted otherwise.
fn sql_ident(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_date",
        "current_role",
        "current_time",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    ];
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if simple {
        name.to_string()
    } else {
        tributary_postgres::quote_ident(name)
    }
}

fn table_sql(schema: &str, table: &str) -> String {
    format!("{}.{}", sql_ident(schema), sql_ident(table))
}

fn table_list_sql(tables: &[(String, String)]) -> String {
    tables
        .iter()
        .map(|(s, t)| table_sql(s, t))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a, b, c` or `a, b, c, … and 7 more`.
fn short_list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{}, … and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

/// The report as an aligned table, a `fix:` line under each warning and failure, and a summary.
pub fn render(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.source.clone(),
                c.check.clone(),
                match c.status {
                    Status::Pass => "pass",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                }
                .to_string(),
                c.detail.clone(),
            ]
        })
        .collect();
    let table = super::render_table(&["SOURCE", "CHECK", "STATUS", "DETAIL"], &rows);
    let indent = {
        let w = |f: fn(&Check) -> usize, h: usize| checks.iter().map(f).max().unwrap_or(0).max(h);
        w(|c| c.source.chars().count(), 6) + 2 + w(|c| c.check.chars().count(), 5) + 2 + 6 + 2
    };
    let mut out = String::new();
    for (line, check) in table
        .lines()
        .zip(std::iter::once(None).chain(checks.iter().map(Some)))
    {
        out.push_str(line);
        out.push('\n');
        if let Some(fix) = check.and_then(|c| c.fix.as_ref()) {
            out.push_str(&format!("{:indent$}fix: {fix}\n", ""));
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{}: {} passed, {}, {} failed\n",
        super::count(checks.len(), "check"),
        count(Status::Pass),
        super::count(count(Status::Warn), "warning"),
        count(Status::Fail)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::Lsn;

    fn source(tables: &[&str], create_publication: bool) -> SourceConfig {
        let text = format!(
            "[nats]\nservers = [\"nats://127.0.0.1:4222\"]\n[[sources]]\nname = \"erp\"\npublication = \"pub_erp\"\n\
             slot = \"slot_erp\"\ncreate_publication = {create_publication}\ntables = [{}]\n\
             [sources.connection]\nhost = \"localhost\"\nuser = \"app\"\ndbname = \"erp\"\n",
            tables.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
        );
        let dir = std::env::temp_dir().join(format!(
            "tributary-preflight-unit-{}",
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, text).expect("write config");
        let config = tributary_config::load(&path).expect("valid config");
        let _ = std::fs::remove_dir_all(&dir);
        config.sources[0].clone()
    }

    fn table(name: &str, identity: &str, pk: bool, toast: &[&str]) -> TableInfo {
        TableInfo {
            schema: "public".into(),
            name: name.into(),
            exists: true,
            relkind: Some("r".into()),
            select: true,
            owned: true,
            replica_identity: Some(identity.into()),
            has_primary_key: pk,
            has_identity_index: false,
            toastable_columns: toast.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn facts(tables: Vec<TableInfo>) -> Facts {
        Facts {
            version: "16.2".into(),
            version_num: 160_002,
            wal_level: "logical".into(),
            role: RoleInfo {
                name: "app".into(),
                superuser: false,
                replication: true,
                create_on_database: false,
                database: "erp".into(),
            },
            usage: ReplicationUsage {
                slots_used: 1,
                max_replication_slots: 10,
                wal_senders_active: 0,
                max_wal_senders: 10,
            },
            slot: None,
            slot_holder: None,
            publication: Some(PublicationInfo {
                all_tables: false,
                insert: true,
                update: true,
                delete: true,
                truncate: true,
            }),
            publication_tables: tables
                .iter()
                .map(|t| (t.schema.clone(), t.name.clone()))
                .collect(),
            tables,
            max_slot_wal_keep_size: Some(SettingValue {
                raw: "10240".into(),
                display: "10GB".into(),
            }),
        }
    }

    fn status(rows: &[Check], check: &str) -> Status {
        rows.iter()
            .find(|c| c.check == check)
            .unwrap_or_else(|| panic!("no {check} row in {rows:?}"))
            .status
    }

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

    #[test]
    fn publication_rules() {
        let mut f = facts(vec![table("orders", "d", true, &[])]);
        let rows = evaluate(&source(&["public.orders", "public.stock"], false), &f);
        let p = rows.iter().find(|c| c.check == "publication").expect("row");
        assert_eq!(p.status, Status::Fail);
        assert_eq!(
            p.fix.as_deref(),
            Some("ALTER PUBLICATION pub_erp ADD TABLE public.stock;")
        );
        f.publication = None;
        f.publication_tables.clear();
        let rows = evaluate(&source(&["public.orders"], false), &f);
        assert_eq!(status(&rows, "publication"), Status::Fail);
        // create_publication: needs CREATE on the database.
        let rows = evaluate(&source(&["public.orders"], true), &f);
        assert_eq!(status(&rows, "publication"), Status::Fail);
        f.role.create_on_database = true;
        let rows = evaluate(&source(&["public.orders"], true), &f);
        assert_eq!(status(&rows, "publication"), Status::Pass);
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(sql_ident("orders"), "orders");
        assert_eq!(sql_ident("Orders"), "\"Orders\"");
        assert_eq!(sql_ident("order"), "\"order\"");
        assert_eq!(sql_ident("my table"), "\"my table\"");
    }

    #[test]
    fn render_puts_fixes_under_failures() {
        let mut c = Check::fail(
            "wal_level",
            "wal_level = replica",
            "ALTER SYSTEM SET wal_level = logical",
        );
        c.source = "erp".into();
        let text = render(&[c]);
        assert!(
            text.contains("erp     wal_level  FAIL    wal_level = replica\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n                           fix: ALTER SYSTEM SET wal_level = logical\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("1 check: 0 passed, 0 warnings, 1 failed"),
            "{text}"
        );
    }
}

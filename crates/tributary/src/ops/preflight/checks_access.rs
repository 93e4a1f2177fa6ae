//! Whether the configured user gets in and may do what the bridge does: the control
//! connection, the REPLICATION privilege, a replication connection and SELECT on the tables.

use std::time::Duration;

use tributary_config::SourceConfig;
use tributary_postgres::control::TableInfo;
use tributary_postgres::replication::ReplicationConnection;
use tributary_postgres::PgError;

use super::report::short_list;
use super::sql::{sql_ident, table_list_sql};
use super::{Check, Facts};

pub(super) fn connect_failure(e: &PgError, source: &SourceConfig) -> Check {
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

pub(super) async fn check_replication_connection(
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

pub(super) fn check_replication_privilege(f: &Facts) -> Check {
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

/// SELECT on every existing table the bridge processes (snapshots and backfills read them).
pub(super) fn check_select_privilege(f: &Facts, present: &[&TableInfo]) -> Check {
    let no_select: Vec<&TableInfo> = present.iter().copied().filter(|t| !t.select).collect();
    if no_select.is_empty() {
        return Check::pass(
            "select_privilege",
            format!("role {} may SELECT every table", f.role.name),
        );
    }
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
    Check::fail(
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
    )
}

//! Control plane over `tokio-postgres`: server checks, publications, slots, catalog look-ups.

use tokio_postgres::Client;
use tributary_core::Lsn;

use crate::values::TypeKind;
use crate::{quote_ident, ConnectParams, PgError, TlsMode};

mod catalog;
pub use catalog::{
    BackendInfo, PublicationInfo, ReplicationUsage, RoleInfo, SettingValue, SlotDetails, TableInfo,
};

pub const HEARTBEAT_PREFIX: &str = "tributary.heartbeat";

/// A regular (non-replication) connection for catalog queries and housekeeping.
pub struct ControlConnection {
    client: Client,
}

#[derive(Debug, Clone)]
pub struct SlotInfo {
    /// `logical` or `physical`.
    pub slot_type: String,
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush: Option<Lsn>,
    pub wal_status: Option<String>,
}

fn tokio_config(params: &ConnectParams) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&params.host)
        .port(params.port)
        .user(&params.user)
        .dbname(&params.dbname)
        .application_name(&params.application_name)
        .connect_timeout(params.connect_timeout)
        .ssl_mode(match params.tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
    if let Some(p) = &params.password {
        config.password(p);
    }
    config
}

impl ControlConnection {
    pub async fn connect(params: &ConnectParams) -> Result<Self, PgError> {
        let config = tokio_config(params);
        let endpoint = params.endpoint();
        let map_err = |e: tokio_postgres::Error| classify_connect_error(e, params);
        let client = if params.tls == TlsMode::Disable {
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(map_err)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
            client
        } else {
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new((*params.rustls_config()?).clone());
            let (client, conn) = config.connect(tls).await.map_err(map_err)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
            client
        };
        tracing::debug!(%endpoint, "control connection open");
        Ok(ControlConnection { client })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn setting(&self, name: &str) -> Result<String, PgError> {
        let row = self
            .client
            .query_one("SELECT setting FROM pg_settings WHERE name = $1", &[&name])
            .await?;
        Ok(row.get(0))
    }

    /// Checks what logical replication needs before anything is created.
    pub async fn check_server(&self) -> Result<(), PgError> {
        let wal_level = self.setting("wal_level").await?;
        if wal_level != "logical" {
            return Err(PgError::Precondition(format!(
                "wal_level is {wal_level:?} on this server; logical replication needs wal_level = logical \
                 (ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL)"
            )));
        }
        let version: i32 = self
            .setting("server_version_num")
            .await?
            .parse()
            .unwrap_or(0);
        if version < 100_000 {
            return Err(PgError::Precondition(format!(
                "PostgreSQL {version} is too old: logical replication with pgoutput needs 10 or newer"
            )));
        }
        Ok(())
    }

    pub async fn server_version_num(&self) -> Result<i32, PgError> {
        Ok(self
            .setting("server_version_num")
            .await?
            .parse()
            .unwrap_or(0))
    }

    pub async fn publication_exists(&self, name: &str) -> Result<bool, PgError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_publication WHERE pubname = $1",
                &[&name],
            )
            .await?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Tables of a publication as `schema.table`.
    pub async fn publication_tables(&self, name: &str) -> Result<Vec<String>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
                &[&name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn create_publication(&self, name: &str, tables: &[String]) -> Result<(), PgError> {
        let list: Vec<String> = tables
            .iter()
            .map(|t| match t.split_once('.') {
                Some((s, n)) => format!("{}.{}", quote_ident(s), quote_ident(n)),
                None => quote_ident(t),
            })
            .collect();
        self.client
            .batch_execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(name),
                list.join(", ")
            ))
            .await?;
        Ok(())
    }

    pub async fn slot(&self, name: &str) -> Result<Option<SlotInfo>, PgError> {
        let version = self.server_version_num().await?;
        let wal_status = if version >= 130_000 {
            "wal_status"
        } else {
            "NULL::text"
        };
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT plugin::text, database::text, active, active_pid, confirmed_flush_lsn::text, {wal_status}, slot_type::text \
                     FROM pg_replication_slots WHERE slot_name = $1"
                ),
                &[&name],
            )
            .await?;
        Ok(row.map(|r| SlotInfo {
            plugin: r.get(0),
            database: r.get(1),
            active: r.get(2),
            active_pid: r.get(3),
            confirmed_flush: r.get::<_, Option<String>>(4).and_then(|s| s.parse().ok()),
            wal_status: r.get(5),
            slot_type: r.get(6),
        }))
    }

    pub async fn current_wal_lsn(&self) -> Result<Lsn, PgError> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?;
        let text: String = row.get(0);
        text.parse()
            .map_err(|e| PgError::Protocol(format!("pg_current_wal_lsn: {e}")))
    }

    /// Writes a transactional logical message so that an idle database's slot can advance.
    pub async fn emit_heartbeat(&self) -> Result<Lsn, PgError> {
        let row = self
            .client
            .query_one(
                "SELECT pg_logical_emit_message(true, $1, now()::text)::text",
                &[&HEARTBEAT_PREFIX],
            )
            .await?;
        let text: String = row.get(0);
        text.parse()
            .map_err(|e| PgError::Protocol(format!("pg_logical_emit_message: {e}")))
    }

    /// Terminates a walsender still holding `slot` (left over by a killed predecessor).
    pub async fn terminate_slot_holder(&self, pid: i32) -> Result<(), PgError> {
        self.client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await?;
        Ok(())
    }

    /// Resolves a non-built-in type: enums, arrays of enums, domains over built-ins; others by name.
    pub async fn resolve_type(&self, oid: u32) -> Result<TypeKind, PgError> {
        let row = self
            .client
            .query_opt(
                "SELECT t.typname::text, t.typtype::text, t.typelem, t.typbasetype, e.typtype::text \
                 FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = $1",
                &[&oid],
            )
            .await?;
        let Some(row) = row else {
            return Ok(TypeKind::Other(format!("oid {oid}")));
        };
        let name: String = row.get(0);
        let typtype: String = row.get(1);
        let elem: u32 = row.get(2);
        let base: u32 = row.get(3);
        let elem_typtype: Option<String> = row.get(4);
        Ok(match typtype.as_str() {
            "e" => TypeKind::Enum,
            "d" => TypeKind::from_builtin_oid(base).unwrap_or(TypeKind::Other(name)),
            _ if elem != 0 => match (TypeKind::from_builtin_oid(elem), elem_typtype.as_deref()) {
                (Some(k), _) => TypeKind::Array(Box::new(k)),
                (None, Some("e")) => TypeKind::Array(Box::new(TypeKind::Enum)),
                _ => TypeKind::Other(name),
            },
            _ => TypeKind::Other(name),
        })
    }

    /// The name of a type as in pg_type, for events' column descriptions.
    pub async fn type_name(&self, oid: u32) -> Result<String, PgError> {
        let row = self
            .client
            .query_opt("SELECT typname::text FROM pg_type WHERE oid = $1", &[&oid])
            .await?;
        Ok(row
            .map(|r| r.get(0))
            .unwrap_or_else(|| format!("oid {oid}")))
    }
}

fn classify_connect_error(e: tokio_postgres::Error, params: &ConnectParams) -> PgError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code == "28P01" || code == "28000" {
            return PgError::Auth {
                user: params.user.clone(),
                endpoint: params.endpoint(),
                message: db.message().to_string(),
            };
        }
        return PgError::Server {
            code: code.to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
        };
    }
    // A refused certificate (unknown issuer, wrong host name) fails every attempt the same
    // way: a configuration error, not a server that is still starting.
    if let Some(tls) = rustls_failure(&e) {
        return PgError::Tls(format!("{}: {tls}", params.endpoint()));
    }
    let text = e.to_string();
    PgError::Connect {
        endpoint: params.endpoint(),
        source: std::io::Error::other(text),
    }
}

/// The rustls error somewhere in `e`'s source chain (directly or inside an `io::Error`).
fn rustls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(r) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r.to_string());
        }
        next = err.source();
    }
    None
}

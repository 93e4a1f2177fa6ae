//! Read-only catalog queries for the operator commands (`preflight`, `slots`, `status`).

use tributary_core::Lsn;

use super::ControlConnection;
use crate::PgError;

/// A replication slot as `pg_replication_slots` describes it, with the server's WAL position.
#[derive(Debug, Clone)]
pub struct SlotDetails {
    pub name: String,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// None for a physical slot.
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub restart_lsn: Option<Lsn>,
    pub confirmed_flush: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before the slot is invalidated (PostgreSQL 13+;
    /// None when `max_slot_wal_keep_size` is -1 or the slot is lost).
    pub safe_wal_size: Option<i64>,
    /// The server's current WAL position: the insert position, which includes commits whose
    /// WAL is not written out yet (`synchronous_commit = off`); the replay position on a standby.
    pub current_wal: Lsn,
}

impl SlotDetails {
    /// Bytes of WAL between the server's current position and the slot's confirmed position.
    pub fn lag_bytes(&self) -> Option<u64> {
        self.confirmed_flush
            .map(|c| self.current_wal.0.saturating_sub(c.0))
    }
}

/// Slot and WAL sender usage against their limits.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationUsage {
    pub slots_used: i64,
    pub max_replication_slots: i64,
    pub wal_senders_active: i64,
    pub max_wal_senders: i64,
}

/// The connected role's attributes that logical replication depends on.
#[derive(Debug, Clone)]
pub struct RoleInfo {
    pub name: String,
    pub superuser: bool,
    pub replication: bool,
    /// CREATE on the current database (needed for CREATE PUBLICATION).
    pub create_on_database: bool,
    pub database: String,
}

/// A publication's flags (`pg_publication`).
#[derive(Debug, Clone, Copy)]
pub struct PublicationInfo {
    pub all_tables: bool,
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
    /// Always false before PostgreSQL 11 (no TRUNCATE replication).
    pub truncate: bool,
}

/// What the catalog says about one table named in the configuration or a publication.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub exists: bool,
    /// `r` table, `p` partitioned table, `v` view, ... (None when it does not exist).
    pub relkind: Option<String>,
    /// SELECT on the table and USAGE on its schema for the connected role.
    pub select: bool,
    /// The connected role owns the table (directly or through a role it has the privileges of).
    pub owned: bool,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: Option<String>,
    pub has_primary_key: bool,
    /// An index marked as the replica identity exists (`REPLICA IDENTITY USING INDEX`).
    pub has_identity_index: bool,
    /// Columns whose storage is not `plain`: their values may be TOASTed, and then arrive
    /// as "unchanged" in updates that do not touch them (unless REPLICA IDENTITY FULL).
    pub toastable_columns: Vec<String>,
}

impl TableInfo {
    /// `schema.table`, as in the configuration.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Why the table cannot stream its updates and deletes, if it cannot: PostgreSQL rejects
    /// them on a published table without a replica identity. One rule for `preflight`'s
    /// failure and `run`'s refusal.
    pub fn identity_problem(&self) -> Option<&'static str> {
        if !self.exists {
            return None;
        }
        match self.replica_identity.as_deref() {
            Some("n") => Some("REPLICA IDENTITY NOTHING"),
            Some("d") if !self.has_primary_key => {
                Some("no primary key and REPLICA IDENTITY DEFAULT")
            }
            Some("i") if !self.has_identity_index => {
                Some("REPLICA IDENTITY USING INDEX, but the index is gone")
            }
            _ => None,
        }
    }
}

/// A server setting with its raw value (in the setting's base unit) and its display form.
#[derive(Debug, Clone)]
pub struct SettingValue {
    pub raw: String,
    pub display: String,
}

/// A backend (for example the walsender holding a slot) as `pg_stat_activity` shows it.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    pub pid: i32,
    pub user: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub backend_start: Option<String>,
    pub backend_type: Option<String>,
}

impl ControlConnection {
    /// `server_version` (e.g. `15.8`) and `server_version_num` (e.g. `150008`).
    pub async fn server_version(&self) -> Result<(String, i32), PgError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')",
                &[],
            )
            .await?;
        let text: String = row.get(0);
        let num: String = row.get(1);
        Ok((text, num.parse().unwrap_or(0)))
    }

    /// A setting if the server knows it (None for settings newer than the server).
    pub async fn setting_opt(&self, name: &str) -> Result<Option<SettingValue>, PgError> {
        let row = self
            .client
            .query_opt(
                "SELECT setting, current_setting(name) FROM pg_settings WHERE name = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|r| SettingValue {
            raw: r.get(0),
            display: r.get(1),
        }))
    }

    /// The connected role: superuser, REPLICATION, CREATE on the current database.
    pub async fn current_role_info(&self) -> Result<RoleInfo, PgError> {
        let row = self
            .client
            .query_one(
                "SELECT current_user::text, r.rolsuper, r.rolreplication, \
                        has_database_privilege(current_database(), 'CREATE'), current_database()::text \
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await?;
        Ok(RoleInfo {
            name: row.get(0),
            superuser: row.get(1),
            replication: row.get(2),
            create_on_database: row.get(3),
            database: row.get(4),
        })
    }

    /// Slots in use and WAL senders running, against `max_replication_slots` / `max_wal_senders`.
    pub async fn replication_usage(&self) -> Result<ReplicationUsage, PgError> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM pg_replication_slots), \
                        current_setting('max_replication_slots')::bigint, \
                        (SELECT count(*) FROM pg_stat_replication), \
                        current_setting('max_wal_senders')::bigint",
                &[],
            )
            .await?;
        Ok(ReplicationUsage {
            slots_used: row.get(0),
            max_replication_slots: row.get(1),
            wal_senders_active: row.get(2),
            max_wal_senders: row.get(3),
        })
    }

    /// Everything `pg_replication_slots` says about `name`, with the server's WAL position.
    pub async fn slot_details(&self, name: &str) -> Result<Option<SlotDetails>, PgError> {
        let version = self.server_version_num().await?;
        let (wal_status, safe_wal_size) = if version >= 130_000 {
            ("s.wal_status::text", "s.safe_wal_size")
        } else {
            ("NULL::text", "NULL::bigint")
        };
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT s.slot_name::text, s.slot_type::text, s.plugin::text, s.database::text, \
                            s.active, s.active_pid, s.restart_lsn::text, s.confirmed_flush_lsn::text, \
                            {wal_status}, {safe_wal_size}, \
                            (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                                  ELSE pg_current_wal_insert_lsn() END)::text \
                     FROM pg_replication_slots s WHERE s.slot_name = $1"
                ),
                &[&name],
            )
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let lsn = |i: usize| r.get::<_, Option<String>>(i).and_then(|s| s.parse().ok());
        Ok(Some(SlotDetails {
            name: r.get(0),
            slot_type: r.get(1),
            plugin: r.get(2),
            database: r.get(3),
            active: r.get(4),
            active_pid: r.get(5),
            restart_lsn: lsn(6),
            confirmed_flush: lsn(7),
            wal_status: r.get(8),
            safe_wal_size: r.get(9),
            current_wal: lsn(10).unwrap_or_default(),
        }))
    }

    /// `pg_publication`'s flags for `name`, None when it does not exist.
    pub async fn publication_info(&self, name: &str) -> Result<Option<PublicationInfo>, PgError> {
        let truncate = if self.server_version_num().await? >= 110_000 {
            "pubtruncate"
        } else {
            "false"
        };
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT puballtables, pubinsert, pubupdate, pubdelete, {truncate} \
                     FROM pg_publication WHERE pubname = $1"
                ),
                &[&name],
            )
            .await?;
        Ok(row.map(|r| PublicationInfo {
            all_tables: r.get(0),
            insert: r.get(1),
            update: r.get(2),
            delete: r.get(3),
            truncate: r.get(4),
        }))
    }

    /// Tables of a publication as (schema, table).
    pub async fn publication_table_names(
        &self,
        name: &str,
    ) -> Result<Vec<(String, String)>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
                 WHERE pubname = $1 ORDER BY 1, 2",
                &[&name],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Existence, privileges, replica identity and TOAST-able columns of each (schema, table).
    /// Names are matched exactly (no case folding), in the order given.
    pub async fn table_info(&self, tables: &[(String, String)]) -> Result<Vec<TableInfo>, PgError> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let schemas: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
        let names: Vec<&str> = tables.iter().map(|(_, t)| t.as_str()).collect();
        let rows = self
            .client
            .query(
                "SELECT t.schema, t.name, c.oid IS NOT NULL, c.relkind::text, \
                        COALESCE(has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'), false), \
                        COALESCE(pg_has_role(c.relowner, 'USAGE'), false), \
                        c.relreplident::text, \
                        COALESCE((SELECT bool_or(i.indisprimary) FROM pg_index i WHERE i.indrelid = c.oid), false), \
                        COALESCE((SELECT bool_or(i.indisreplident) FROM pg_index i WHERE i.indrelid = c.oid), false), \
                        ARRAY(SELECT a.attname::text FROM pg_attribute a \
                              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                                AND a.attstorage <> 'p' ORDER BY a.attnum) \
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(schema, name, ord) \
                 LEFT JOIN pg_namespace n ON n.nspname = t.schema \
                 LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name \
                 ORDER BY t.ord",
                &[&schemas, &names],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TableInfo {
                schema: r.get(0),
                name: r.get(1),
                exists: r.get(2),
                relkind: r.get(3),
                select: r.get(4),
                owned: r.get(5),
                replica_identity: r.get(6),
                has_primary_key: r.get(7),
                has_identity_index: r.get(8),
                toastable_columns: r.get::<_, Option<Vec<String>>>(9).unwrap_or_default(),
            })
            .collect())
    }

    /// The backend with process id `pid` (for example the walsender holding a slot).
    pub async fn backend_info(&self, pid: i32) -> Result<Option<BackendInfo>, PgError> {
        let row = self
            .client
            .query_opt(
                "SELECT pid, usename::text, application_name, host(client_addr), \
                        to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                        backend_type \
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await?;
        Ok(row.map(|r| BackendInfo {
            pid: r.get(0),
            user: r.get(1),
            application_name: r.get::<_, Option<String>>(2).filter(|s| !s.is_empty()),
            client_addr: r.get(3),
            backend_start: r.get(4),
            backend_type: r.get(5),
        }))
    }
}

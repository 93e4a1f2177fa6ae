//! Replication commands: IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT, START_REPLICATION.

use tributary_core::Lsn;

use super::connection::ReplicationConnection;
use super::stream::ReplicationStream;
use crate::PgError;

#[derive(Debug, Clone)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u32,
    pub xlog_pos: Lsn,
    pub dbname: String,
}

#[derive(Debug, Clone)]
pub struct CreatedSlot {
    pub consistent_point: Lsn,
    /// Exported snapshot name, usable with `SET TRANSACTION SNAPSHOT` until the next command.
    pub snapshot_name: Option<String>,
}

/// Options of `START_REPLICATION … LOGICAL`.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub slot: String,
    pub start: Lsn,
    pub publication: String,
    /// pgoutput protocol version: 1, or 2 for in-progress transaction streaming.
    pub proto_version: u32,
    pub messages: bool,
    pub streaming: bool,
}

fn lsn_field(value: Option<&Option<String>>, what: &str) -> Result<Lsn, PgError> {
    value
        .and_then(|v| v.as_deref())
        .ok_or_else(|| PgError::Protocol(format!("{what} missing")))?
        .parse()
        .map_err(|e| PgError::Protocol(format!("{what}: {e}")))
}

impl ReplicationConnection {
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, PgError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .ok_or_else(|| PgError::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        Ok(SystemIdentity {
            system_id: text(0),
            timeline: text(1).parse().unwrap_or(0),
            xlog_pos: lsn_field(row.get(2), "IDENTIFY_SYSTEM xlogpos")?,
            dbname: text(3),
        })
    }

    /// Creates a pgoutput slot. With `export_snapshot`, the snapshot stays valid until
    /// the next command on this connection.
    pub async fn create_slot(
        &mut self,
        slot: &str,
        export_snapshot: bool,
    ) -> Result<CreatedSlot, PgError> {
        let snapshot = if export_snapshot {
            "EXPORT_SNAPSHOT"
        } else {
            "NOEXPORT_SNAPSHOT"
        };
        let rows = self
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {snapshot}",
                quote_ident(slot)
            ))
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| PgError::Protocol("CREATE_REPLICATION_SLOT returned no row".into()))?;
        Ok(CreatedSlot {
            consistent_point: lsn_field(row.get(1), "consistent_point")?,
            snapshot_name: row.get(2).cloned().flatten(),
        })
    }

    pub async fn start_replication(
        mut self,
        opts: &StartOptions,
    ) -> Result<ReplicationStream, PgError> {
        let mut options = vec![
            format!("proto_version '{}'", opts.proto_version),
            format!(
                "publication_names '{}'",
                quote_literal_inner(&quote_ident(&opts.publication))
            ),
            format!("messages '{}'", opts.messages),
        ];
        if opts.proto_version >= 2 {
            options.push(format!(
                "streaming '{}'",
                if opts.streaming { "on" } else { "off" }
            ));
        }
        let command = format!(
            "START_REPLICATION SLOT {} LOGICAL {} ({})",
            quote_ident(&opts.slot),
            opts.start,
            options.join(", ")
        );
        self.start_copy_both(&command).await?;
        Ok(ReplicationStream::new(self, opts.start))
    }
}

/// Double-quotes an identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Escapes single quotes for use inside a '…' literal.
pub fn quote_literal_inner(s: &str) -> String {
    s.replace('\'', "''")
}

//! Which PostgreSQL server a connection reached, beyond the host name it was given: slot names
//! are per server, and two configured host names (a DNS name and its address, `localhost` and
//! the machine's name) can be one server.

use crate::{ControlConnection, PgError};

impl ControlConnection {
    /// `<system identifier>:<port>:<primary|standby>`: the cluster's identifier (the same on
    /// its physical standbys, hence the role), and the port (several clusters restored from
    /// one base backup share an identifier). None when the role may not read
    /// `pg_control_system()`; the configured host and port are then all there is.
    pub async fn server_identity(&self) -> Result<Option<String>, PgError> {
        let result = self
            .client()
            .query_one(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()) || ':' || \
                        current_setting('port') || ':' || \
                        CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END",
                &[],
            )
            .await;
        match result {
            Ok(row) => Ok(row.get(0)),
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

//! A table's key columns, from the catalog rather than from pgoutput's column flags: under
//! REPLICA IDENTITY FULL those flag every column (the whole old row identifies it), which is
//! no key a consumer can use. The key is the replica identity index when the table has one
//! (`REPLICA IDENTITY USING INDEX`: the index pgoutput's old keys come from), else the primary
//! key, else nothing — whatever the identity setting. Streaming (Relation messages) and
//! snapshots both use [`key_index_sql`], so their events agree.

use crate::{ControlConnection, PgError};

/// SQL for the attribute numbers of the key index of relation `rel` (an SQL expression for its
/// oid), as `int2[]`; empty when the table has neither index. PostgreSQL clears
/// `indisreplident` when the identity is changed away from USING INDEX, so the flag is current.
/// An array expression, not a bare subquery: `= ANY((SELECT …))` would compare with each row.
pub(crate) fn key_index_sql(rel: &str) -> String {
    format!(
        "coalesce((SELECT i.indkey::int2[] FROM pg_index i WHERE i.indrelid = {rel} \
          AND (i.indisreplident OR i.indisprimary) ORDER BY i.indisreplident DESC LIMIT 1), '{{}}'::int2[])"
    )
}

impl ControlConnection {
    /// Names of `oid`'s key columns in column order; empty when it has no primary key and no
    /// replica identity index; None when the relation no longer exists (dropped since the
    /// change was written).
    pub async fn key_columns(&self, oid: u32) -> Result<Option<Vec<String>>, PgError> {
        let row = self
            .client()
            .query_opt(
                &format!(
                    "SELECT ARRAY(SELECT a.attname::text FROM pg_attribute a \
                       WHERE a.attrelid = c.oid AND a.attnum = ANY({}) ORDER BY a.attnum) \
                     FROM pg_class c WHERE c.oid = $1",
                    key_index_sql("c.oid")
                ),
                &[&oid],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }
}

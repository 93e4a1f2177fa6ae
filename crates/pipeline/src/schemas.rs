//! The source side of schema references: each relation version's `RelationSchema` is stored
//! (create-if-absent, acknowledged) before the first event naming it leaves the session, the
//! snapshot or the backfill that described the table.

use std::collections::HashSet;
use std::sync::Mutex;

use async_nats::jetstream::{self, kv};
use prost::Message as _;
use tokio::sync::OnceCell;
use tributary_nats::schemas::{self, SchemaError};
use tributary_proto::cdc::v1::RelationSchema;

/// Remembers which ids this process has stored, so that a Relation message seen again (every
/// session restart, every snapshot chunk's table) costs no KV round trip.
#[derive(Default)]
pub struct SchemaWriter {
    kv: OnceCell<kv::Store>,
    stored: Mutex<HashSet<String>>,
}

impl SchemaWriter {
    /// Stores `schema` unless this process already did; `None` (inline descriptions) is a no-op.
    pub async fn ensure(
        &self,
        js: &jetstream::Context,
        replicas: usize,
        schema: Option<&RelationSchema>,
    ) -> Result<(), SchemaError> {
        let Some(schema) = schema else {
            return Ok(());
        };
        if self
            .stored
            .lock()
            .map(|s| s.contains(&schema.id))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let kv = self
            .kv
            .get_or_try_init(|| schemas::open_bucket(js, replicas))
            .await?;
        schemas::store(kv, schema).await?;
        tracing::info!(schema_id = %schema.id, table = %format!("{}.{}", schema.schema, schema.table), columns = schema.columns.len(), "relation schema stored");
        if let Ok(mut stored) = self.stored.lock() {
            stored.insert(schema.id.clone());
        }
        Ok(())
    }
}

/// The id of a description: the first 128 bits of the SHA-256 of the message encoded with an
/// empty id, in hex. prost encodes fields in number order, so equal descriptions encode alike.
pub fn schema_id(description: &RelationSchema) -> String {
    let mut unnamed = description.clone();
    unnamed.id.clear();
    let digest = ring::digest::digest(&ring::digest::SHA256, &unnamed.encode_to_vec());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use tributary_proto::cdc::v1::{Column, RelationSchema};

    fn orders(columns: &[&str]) -> RelationSchema {
        RelationSchema {
            source: "erp".into(),
            database: "erp".into(),
            schema: "public".into(),
            table: "orders".into(),
            relation_oid: 16384,
            columns: columns
                .iter()
                .map(|n| Column {
                    name: n.to_string(),
                    type_oid: 23,
                    type_name: "int4".into(),
                    type_modifier: -1,
                    key: *n == "id",
                })
                .collect(),
            key_columns: vec!["id".into()],
            ..Default::default()
        }
    }

    #[test]
    fn an_id_depends_on_the_description_only() {
        let a = super::schema_id(&orders(&["id", "qty"]));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut named = orders(&["id", "qty"]);
        named.id = a.clone();
        assert_eq!(super::schema_id(&named), a, "the id itself is not hashed");
        assert_ne!(super::schema_id(&orders(&["id", "qty", "note"])), a);
        let mut other_source = orders(&["id", "qty"]);
        other_source.source = "pos".into();
        assert_ne!(super::schema_id(&other_source), a);
    }
}

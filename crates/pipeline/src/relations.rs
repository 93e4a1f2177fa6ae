//! Relation cache: what a Relation message said about a table, and what that implies for
//! its events (subjects, value kinds, pre-encoded static fields).
//!
//! PostgreSQL sends a Relation message before a table's first change in a session and again
//! after its schema changes, so replacing the entry is all an `ALTER TABLE` needs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_nats::Subject;
use bytes::Bytes;
use prost::Message as _;
use tributary_config::SchemaMode;
use tributary_postgres::values::TypeKind;
use tributary_proto::cdc::v1::{ChangeEvent, Column, RelationSchema};

/// Operations that have a subject per table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert = 0,
    Update = 1,
    Delete = 2,
    Truncate = 3,
    /// A row copied by a snapshot.
    Read = 4,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Insert, Op::Update, Op::Delete, Op::Truncate, Op::Read];
    pub fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Read => "read",
        }
    }
}

pub struct RelationInfo {
    pub schema: String,
    pub table: String,
    /// False for tables of the publication that the config does not list.
    pub included: bool,
    pub kinds: Vec<TypeKind>,
    pub names: Vec<String>,
    pub type_names: Vec<String>,
    /// Column indexes of the key: the replica identity index, else the primary key; empty for
    /// a table with neither (whatever the REPLICA IDENTITY setting).
    pub key_indexes: Vec<usize>,
    /// ChangeEvent fields that are the same for every event of this relation, encoded once
    /// and appended to each event's own fields (protobuf merges concatenated messages).
    pub static_fields: Bytes,
    /// `schema = "reference"`: the description the events name by `schema_id`, to be stored
    /// before the first of them is published.
    pub description: Option<Arc<RelationSchema>>,
    pub subjects: [Subject; 5],
    pub counters: [metrics::Counter; 5],
}

impl RelationInfo {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

pub struct RelationSpec<'a> {
    pub oid: u32,
    pub schema: &'a str,
    pub table: &'a str,
    pub columns: Vec<ColumnSpec>,
}

pub struct ColumnSpec {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    pub type_name: String,
    pub kind: TypeKind,
    /// Part of the key as the catalog defines it, not pgoutput's identity flag.
    pub key: bool,
}

pub struct RelationContext<'a> {
    pub source: &'a str,
    pub database: &'a str,
    pub subject_prefix: &'a str,
    /// `schema.table` names to publish; empty means every table of the publication.
    pub tables: &'a HashSet<String>,
    pub schema_mode: SchemaMode,
}

#[derive(Default)]
pub struct RelationCache {
    map: HashMap<u32, RelationInfo>,
}

impl RelationCache {
    pub fn get(&self, oid: u32) -> Option<&RelationInfo> {
        self.map.get(&oid)
    }

    pub fn insert(&mut self, ctx: &RelationContext<'_>, spec: RelationSpec<'_>) -> &RelationInfo {
        let oid = spec.oid;
        self.map.insert(oid, RelationInfo::build(ctx, spec));
        &self.map[&oid]
    }
}

impl RelationInfo {
    pub fn build(ctx: &RelationContext<'_>, spec: RelationSpec<'_>) -> RelationInfo {
        let qualified = format!("{}.{}", spec.schema, spec.table);
        let included = ctx.tables.is_empty() || ctx.tables.contains(&qualified);
        let columns: Vec<Column> = spec
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                type_oid: c.type_oid,
                type_name: c.type_name.clone(),
                type_modifier: c.type_modifier,
                key: c.key,
            })
            .collect();
        let key_columns: Vec<String> = spec
            .columns
            .iter()
            .filter(|c| c.key)
            .map(|c| c.name.clone())
            .collect();
        let mut description = RelationSchema {
            id: String::new(),
            source: ctx.source.to_string(),
            database: ctx.database.to_string(),
            schema: spec.schema.to_string(),
            table: spec.table.to_string(),
            relation_oid: spec.oid,
            columns,
            key_columns,
        };
        let mut static_event = ChangeEvent {
            source: ctx.source.to_string(),
            database: ctx.database.to_string(),
            schema: spec.schema.to_string(),
            table: spec.table.to_string(),
            relation_oid: spec.oid,
            ..Default::default()
        };
        let by_reference = match ctx.schema_mode {
            SchemaMode::Inline => {
                static_event.columns = description.columns;
                static_event.key_columns = description.key_columns;
                None
            }
            SchemaMode::Reference => {
                description.id = crate::schemas::schema_id(&description);
                static_event.schema_id = description.id.clone();
                Some(Arc::new(description))
            }
        };
        let subject = |op: Op| {
            Subject::from(tributary_nats::subject::change_subject(
                ctx.subject_prefix,
                ctx.source,
                spec.schema,
                spec.table,
                op.name(),
            ))
        };
        let counter = |op: Op| metrics::counter!(crate::metrics::CHANGES, "source" => ctx.source.to_string(), "table" => qualified.clone(), "op" => op.name());
        let info = RelationInfo {
            schema: spec.schema.to_string(),
            table: spec.table.to_string(),
            included,
            kinds: spec.columns.iter().map(|c| c.kind.clone()).collect(),
            names: spec.columns.iter().map(|c| c.name.clone()).collect(),
            type_names: spec.columns.iter().map(|c| c.type_name.clone()).collect(),
            key_indexes: spec
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.key)
                .map(|(i, _)| i)
                .collect(),
            static_fields: Bytes::from(static_event.encode_to_vec()),
            description: by_reference,
            subjects: Op::ALL.map(subject),
            counters: Op::ALL.map(counter),
        };
        info
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message as _;
    use tributary_config::SchemaMode;
    use tributary_postgres::values::TypeKind;
    use tributary_proto::cdc::v1::ChangeEvent;

    use super::{ColumnSpec, Op, RelationContext, RelationInfo, RelationSpec};

    fn orders(mode: SchemaMode) -> RelationInfo {
        let tables = HashSet::new();
        let ctx = RelationContext {
            source: "erp",
            database: "erp",
            subject_prefix: "cdc",
            tables: &tables,
            schema_mode: mode,
        };
        let column = |name: &str, key| ColumnSpec {
            name: name.into(),
            type_oid: 23,
            type_modifier: -1,
            type_name: "int4".into(),
            kind: TypeKind::Int,
            key,
        };
        RelationInfo::build(
            &ctx,
            RelationSpec {
                oid: 16384,
                schema: "public",
                table: "orders",
                columns: vec![column("id", true), column("qty", false)],
            },
        )
    }

    /// Reference mode moves the column list and key columns out of every event into the
    /// schema the event names; inline keeps them in the event and stores nothing.
    #[test]
    fn reference_events_carry_the_id_instead_of_the_columns() {
        let inline = orders(SchemaMode::Inline);
        assert!(inline.description.is_none());
        let event = ChangeEvent::decode(inline.static_fields.clone()).expect("static fields");
        assert_eq!(
            (event.columns.len(), event.key_columns.clone()),
            (2, vec!["id".to_string()])
        );
        assert!(event.schema_id.is_empty());

        let by_ref = orders(SchemaMode::Reference);
        let schema = by_ref.description.clone().expect("a schema to store");
        let event = ChangeEvent::decode(by_ref.static_fields.clone()).expect("static fields");
        assert!(event.columns.is_empty() && event.key_columns.is_empty());
        assert_eq!(event.schema_id, schema.id);
        assert_eq!(schema.columns.len(), 2);
        assert_eq!(schema.key_columns, ["id"]);
        assert_eq!(
            (event.table.as_str(), event.relation_oid),
            ("orders", 16384)
        );
        assert!(by_ref.static_fields.len() < inline.static_fields.len());
    }

    /// The metrics register the `op` label values before any change is decoded.
    #[test]
    fn every_op_has_its_label_registered() {
        let names: Vec<&str> = Op::ALL.iter().map(|op| op.name()).collect();
        assert_eq!(names, crate::metrics::OPS);
    }
}

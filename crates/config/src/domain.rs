//! `[domain]`: the domain stage that maps row changes into canonical retail events.
//!
//! ```toml
//! [[domain.mappings]]
//! name = "erp_order_placed"
//! source = "erp"
//! table = "public.sales_orders"
//! ops = ["insert"]
//! entity = "order"            # subject retail.v1.order.placed
//! event = "placed"
//! key = ["order_no"]
//! [domain.mappings.fields]
//! "order.order_id" = "order_no"                                 # a column
//! "order.total.currency" = { constant = "EUR" }
//! "order.channel" = { template = "store:{store_id}" }
//! "order_line.customer_id" = { parent = "customer_id" }        # from the parent row
//! ```
//!
//! Field paths start with the member of `tributary.retail.v1.DomainEvent.entity` they fill;
//! they are checked against the compiled protobuf descriptors when the stage starts.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Stream of domain events, holding `<subject_prefix>.>`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subjects are `<subject_prefix>.<entity>.<event>`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Partitions of the domain events by entity key (1 – 256). Above 1 every event's subject
    /// gets a partition token, `<subject_prefix>.<entity>.<event>.p07`, so that sinks can run
    /// one consumer per partition (docs/ha.md, "Partitioned sinks"); must equal
    /// `sinks.partitions`. 1: subjects as documented in docs/consumers.md.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Stream of changes that could not be mapped (`dlq.domain.<mapping>`).
    #[serde(default = "default_dead_letter_stream")]
    pub dead_letter_stream: String,
    /// Durable consumer name on each source's CDC stream.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// KV bucket with entity state (versions, owned fields) and parent rows.
    #[serde(default = "default_state_bucket")]
    pub state_bucket: String,
    /// Object store where the protobuf descriptor set is published at start-up.
    #[serde(default = "default_schema_bucket")]
    pub schema_bucket: String,
    /// How long a change waits for a parent row (from another source) before it is
    /// dead-lettered.
    #[serde(default = "default_parent_wait_ms")]
    pub parent_wait_ms: u64,
    /// Which system is authoritative for which fields of an entity.
    #[serde(default)]
    pub ownership: Vec<OwnershipRule>,
    #[serde(default)]
    pub mappings: Vec<Mapping>,
}

/// Fields of `entity` that only `owner` may write; other systems' values for them are
/// ignored once the entity has state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipRule {
    /// Entity token as in the subject, e.g. `customer`.
    pub entity: String,
    /// System of record, e.g. `erp`.
    pub owner: String,
    /// Field paths, e.g. `customer.email`.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Unique; part of every event id and the dead-letter subject.
    pub name: String,
    /// A configured source.
    pub source: String,
    /// `schema.table`.
    pub table: String,
    #[serde(default = "default_ops")]
    pub ops: Vec<MappingOp>,
    /// Subject token of the entity, e.g. `order`, `inventory`.
    pub entity: String,
    /// Subject token of the event, e.g. `placed`, `level_changed`.
    pub event: String,
    /// The entity key: columns (or `{column}` templates) joined with `:`.
    pub key: Vec<String>,
    /// System of record stamped on the events; default: the source's name.
    #[serde(default)]
    pub system: Option<String>,
    /// Every condition must hold for the change to be mapped.
    #[serde(default)]
    pub when: Vec<Condition>,
    /// Updates only: map only when one of these columns changed (needs REPLICA IDENTITY FULL
    /// on the table; without a full before image every update passes).
    #[serde(default)]
    pub changed: Vec<String>,
    /// The parent row this mapping reads `parent` fields from.
    #[serde(default)]
    pub parent: Option<ParentRef>,
    /// Target field path -> where its value comes from. Paths end at a scalar field
    /// (`order.total.amount`); `external_ids[<system>]` fills the id of that system's entry
    /// (`"order.external_ids[shopify]" = "shop_order_id"`; NULL removes the entry);
    /// `<list>[<n>]` fills the n-th element of a list of scalars
    /// (`"order.shipping_address.lines[0]" = "ship_to_line1"`; NULL empties it).
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MappingOp {
    Insert,
    Update,
    Delete,
    /// Snapshot rows.
    Read,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub column: String,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default)]
    pub one_of: Vec<String>,
    #[serde(default)]
    pub not_null: bool,
}

/// A parent table of the same source, looked up by the child's columns. Its rows are kept
/// in the state bucket as they stream by, keyed by `columns`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentRef {
    /// `schema.table`.
    pub table: String,
    /// Child columns holding the parent's key.
    pub key: Vec<String>,
    /// The parent's columns matching `key`, in the same order; default: the same names.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl ParentRef {
    pub fn parent_columns(&self) -> &[String] {
        if self.columns.is_empty() {
            &self.key
        } else {
            &self.columns
        }
    }
}

/// A column name, or a full rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Column(String),
    Rule(FieldRule),
}

/// Exactly one of `column`, `parent`, `constant` and `template`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    #[serde(default)]
    pub column: Option<String>,
    /// A column of the parent row.
    #[serde(default)]
    pub parent: Option<String>,
    /// A constant, converted to the field's type.
    #[serde(default)]
    pub constant: Option<String>,
    /// Text with `{column}` placeholders.
    #[serde(default)]
    pub template: Option<String>,
    /// Applied to text before it is converted.
    #[serde(default)]
    pub transform: Option<Transform>,
    /// A NULL value dead-letters the change instead of leaving the field unset. (A column the
    /// table does not have stops the domain stage whether or not the field is required.)
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    Lower,
    Upper,
    Trim,
}

impl FieldSpec {
    pub fn rule(&self) -> FieldRule {
        match self {
            FieldSpec::Column(c) => FieldRule {
                column: Some(c.clone()),
                ..FieldRule::default()
            },
            FieldSpec::Rule(r) => r.clone(),
        }
    }
}

impl Mapping {
    pub fn system(&self) -> &str {
        self.system.as_deref().unwrap_or(&self.source)
    }
}

fn default_partitions() -> u32 {
    1
}
fn default_stream() -> String {
    "RETAIL".into()
}
fn default_subject_prefix() -> String {
    "retail.v1".into()
}
fn default_dead_letter_stream() -> String {
    "DLQ_DOMAIN".into()
}
fn default_consumer() -> String {
    "tributary-domain".into()
}
fn default_state_bucket() -> String {
    "tributary_domain".into()
}
fn default_schema_bucket() -> String {
    "tributary_schemas".into()
}
fn default_parent_wait_ms() -> u64 {
    2000
}
fn default_ops() -> Vec<MappingOp> {
    vec![MappingOp::Insert, MappingOp::Update]
}

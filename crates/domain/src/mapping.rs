//! A configured mapping, compiled: which changes it takes, the entity key, and one value
//! source per target field. Applying it to a change is pure (no I/O); the parent row, when
//! needed, is looked up by the stage and passed in.

use prost_reflect::{FieldDescriptor, Value};
use tributary_config::{Condition, FieldRule, Mapping, MappingOp, Transform};
use tributary_proto::cdc::v1::{ChangeEvent, Operation, Value as CdcValue};

use crate::convert;
use crate::schema::{FieldPath, Schema};
use crate::{DomainError, MapError};

pub struct CompiledMapping {
    pub config: Mapping,
    /// `DomainEvent.entity` member every field path starts with.
    pub member: FieldDescriptor,
    ops: Vec<Operation>,
    pub fields: Vec<(FieldPath, FieldRule)>,
    /// Columns of the mapped table this mapping reads (key, fields, templates, parent key).
    row_columns: Vec<String>,
}

/// What one change became under one mapping, before state (version, ownership) is applied.
#[derive(Debug)]
pub struct Mapped {
    pub key: String,
    /// Field path and value (None: the source had no value, e.g. NULL).
    pub values: Vec<(FieldPath, Option<Value>)>,
}

/// A row of a change: column names and values.
pub struct RowView<'a> {
    names: Vec<&'a str>,
    values: &'a [CdcValue],
}

impl<'a> RowView<'a> {
    /// The after image, or the before image for deletes.
    pub fn of(change: &'a ChangeEvent) -> Option<RowView<'a>> {
        let row = change.after.as_ref().or(change.before.as_ref())?;
        Some(RowView {
            names: change.columns.iter().map(|c| c.name.as_str()).collect(),
            values: &row.values,
        })
    }

    pub fn get(&self, column: &str) -> Option<&'a CdcValue> {
        let i = self.names.iter().position(|n| *n == column)?;
        self.values.get(i)
    }

    pub fn text(&self, column: &str) -> Option<String> {
        self.get(column).and_then(convert::text)
    }
}

impl CompiledMapping {
    pub fn compile(schema: &Schema, index: usize, m: &Mapping) -> Result<Self, DomainError> {
        let key = |k: &str| format!("domain.mappings[{index}].{k}");
        if m.key.is_empty() {
            return Err(DomainError::config(
                key("key"),
                "at least one key column is required",
            ));
        }
        if !m.table.contains('.') {
            return Err(DomainError::config(key("table"), "must be `schema.table`"));
        }
        for (name, token) in [
            ("entity", &m.entity),
            ("event", &m.event),
            ("name", &m.name),
        ] {
            if token.is_empty()
                || !token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(DomainError::config(
                    key(name),
                    format!("{token:?} must be letters, digits, '_' or '-'"),
                ));
            }
        }
        if let Some(p) = &m.parent {
            if p.key.is_empty() || p.parent_columns().len() != p.key.len() {
                return Err(DomainError::config(
                    key("parent"),
                    "`key` and `columns` name the same number of columns (at least one)",
                ));
            }
        }
        let mut member: Option<FieldDescriptor> = None;
        let mut fields = Vec::new();
        for (path, spec) in &m.fields {
            let field_key = key(&format!("fields.\"{path}\""));
            let resolved = schema.resolve(path, &field_key)?;
            match &member {
                Some(existing) if existing.name() != resolved.member.name() => {
                    return Err(DomainError::config(
                        field_key,
                        format!(
                            "every field of one mapping fills the same entity (`{}`)",
                            existing.name()
                        ),
                    ))
                }
                _ => member = Some(resolved.member.clone()),
            }
            let rule = spec.rule();
            let sources = [
                rule.column.is_some(),
                rule.parent.is_some(),
                rule.constant.is_some(),
                rule.template.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(DomainError::config(
                    field_key,
                    "give exactly one of column, parent, constant and template",
                ));
            }
            if rule.parent.is_some() && m.parent.is_none() {
                return Err(DomainError::config(
                    field_key,
                    "reads the parent row but the mapping has no `parent`",
                ));
            }
            if let Some(c) = &rule.constant {
                let kind = resolved.fields.last().map(|f| f.kind());
                if let Some(kind) = kind {
                    convert::from_text(c, &kind).map_err(|t| {
                        DomainError::config(key(path), format!("constant {c:?} is not a {t}"))
                    })?;
                }
            }
            fields.push((resolved, rule));
        }
        let member =
            member.ok_or_else(|| DomainError::config(key("fields"), "map at least one field"))?;
        let ops = m
            .ops
            .iter()
            .map(|op| match op {
                MappingOp::Insert => Operation::Insert,
                MappingOp::Update => Operation::Update,
                MappingOp::Delete => Operation::Delete,
                MappingOp::Read => Operation::Read,
            })
            .collect();
        let mut row_columns: Vec<String> = Vec::new();
        for k in &m.key {
            row_columns.extend(placeholders(k).unwrap_or_else(|| vec![k.clone()]));
        }
        for (_, rule) in &fields {
            row_columns.extend(rule.column.iter().cloned());
            row_columns.extend(
                rule.template
                    .as_deref()
                    .and_then(placeholders)
                    .unwrap_or_default(),
            );
        }
        row_columns.extend(m.parent.iter().flat_map(|p| p.key.iter().cloned()));
        row_columns.dedup();
        Ok(CompiledMapping {
            config: m.clone(),
            member,
            ops,
            fields,
            row_columns,
        })
    }

    /// A mapping that reads a column the arriving relation does not have (renamed or dropped
    /// by a migration, or left out by the publication's column list) is invalid for every
    /// change of the table, not for this row: a configuration error that stops the stage
    /// (the message is not acked, so it is mapped again once the mapping is fixed). A NULL
    /// in a column that exists stays a dead letter of that change. `index` is the mapping's
    /// position in `domain.mappings`.
    pub fn check_columns(&self, index: usize, change: &ChangeEvent) -> Result<(), DomainError> {
        // Without a column list (no relation known) nothing can be told apart from a NULL.
        if change.columns.is_empty() {
            return Ok(());
        }
        let has = |name: &str| change.columns.iter().any(|c| c.name == name);
        match self.row_columns.iter().find(|c| !has(c)) {
            None => Ok(()),
            Some(column) => Err(DomainError::config(
                format!("domain.mappings[{index}]"),
                format!(
                    "mapping {:?} reads column `{column}`, which {} {}.{} does not have (renamed or dropped, or not published)",
                    self.config.name, change.source, change.schema, change.table
                ),
            )),
        }
    }

    /// Whether this mapping takes the change at all (source, table, op, filters).
    pub fn matches(&self, change: &ChangeEvent) -> bool {
        let m = &self.config;
        if change.source != m.source || format!("{}.{}", change.schema, change.table) != m.table {
            return false;
        }
        let op = Operation::try_from(change.op).unwrap_or(Operation::Unspecified);
        if !self.ops.contains(&op) {
            return false;
        }
        let Some(row) = RowView::of(change) else {
            return false;
        };
        if !m.when.iter().all(|c| condition_holds(c, &row)) {
            return false;
        }
        // A full before image tells which columns an update changed (none, for an update to
        // the same values); without one (REPLICA IDENTITY DEFAULT) we cannot know, and
        // mapping too often beats dropping events.
        let full_before = change.before.is_some() && !change.before_is_key_only;
        if op == Operation::Update && !m.changed.is_empty() && full_before {
            return m.changed.iter().any(|c| change.changed_columns.contains(c));
        }
        true
    }

    /// The parent's key from the child row, when the mapping has a parent.
    pub fn parent_key(&self, row: &RowView<'_>) -> Result<Option<Vec<String>>, MapError> {
        let Some(parent) = &self.config.parent else {
            return Ok(None);
        };
        parent
            .key
            .iter()
            .map(|c| row.text(c).ok_or_else(|| MapError::MissingKey(c.clone())))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn apply(
        &self,
        row: &RowView<'_>,
        parent: Option<&RowView<'_>>,
    ) -> Result<Mapped, MapError> {
        let key = self
            .config
            .key
            .iter()
            .map(|k| {
                if k.contains('{') {
                    render(k, row, None, true)
                } else {
                    row.text(k).ok_or_else(|| MapError::MissingKey(k.clone()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(":");
        let mut values = Vec::with_capacity(self.fields.len());
        for (path, rule) in &self.fields {
            let kind = path
                .fields
                .last()
                .map(|f| f.kind())
                .ok_or(MapError::NoRow)?;
            let unconvertible =
                |column: &str, value: String, target: String| MapError::Unconvertible {
                    column: column.to_string(),
                    value,
                    target,
                    field: path.text.clone(),
                };
            let (column, value) = if let Some(c) = &rule.constant {
                (
                    "(constant)".to_string(),
                    Some(
                        convert::from_text(c, &kind)
                            .map_err(|t| unconvertible("(constant)", c.clone(), t))?,
                    ),
                )
            } else if let Some(t) = &rule.template {
                let text = render(t, row, rule.transform, rule.required)?;
                (
                    t.clone(),
                    Some(
                        convert::from_text(&text, &kind)
                            .map_err(|tn| unconvertible(t, text.clone(), tn))?,
                    ),
                )
            } else {
                let (src, column) = match (&rule.column, &rule.parent) {
                    (Some(c), _) => (Some(row), c),
                    (None, Some(c)) => (parent, c),
                    _ => continue,
                };
                let cdc = src.and_then(|r| r.get(column));
                let value = match cdc {
                    None => None,
                    Some(v) => convert::from_cdc(v, &kind, rule.transform).map_err(|t| {
                        unconvertible(column, convert::text(v).unwrap_or_default(), t)
                    })?,
                };
                (column.clone(), value)
            };
            if value.is_none() && rule.required {
                return Err(MapError::MissingValue(column));
            }
            values.push((path.clone(), value));
        }
        Ok(Mapped { key, values })
    }
}

fn condition_holds(c: &Condition, row: &RowView<'_>) -> bool {
    let value = row.text(&c.column);
    if c.not_null && value.is_none() {
        return false;
    }
    if let Some(expected) = &c.equals {
        if value.as_deref() != Some(expected.as_str()) {
            return false;
        }
    }
    if !c.one_of.is_empty() && !value.as_ref().is_some_and(|v| c.one_of.contains(v)) {
        return false;
    }
    true
}

/// The `{column}` names of a template, None when it has none (then it is a column name).
fn placeholders(template: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    (template.contains('{')).then_some(out)
}

/// Replaces `{column}` with the column's text; a NULL becomes empty unless `required`.
fn render(
    template: &str,
    row: &RowView<'_>,
    t: Option<Transform>,
    required: bool,
) -> Result<String, MapError> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let column = &rest[start + 1..start + len];
        match row.text(column) {
            Some(v) => out.push_str(&v),
            None if required => return Err(MapError::MissingKey(column.to_string())),
            None => {}
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(convert::transform(out, t))
}

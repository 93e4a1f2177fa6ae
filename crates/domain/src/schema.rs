//! Field paths of the configuration, resolved against the compiled descriptors so that a
//! typo or a path into a repeated field is reported at start-up, not per change.
//!
//! A path can select one entry of a list of `ExternalId`s by its system:
//! `order.external_ids[shopify]` fills (or, on NULL, removes) the entry whose `system` is
//! `shopify` with the column's value as its `id`, so that an ERP row can carry the ids other
//! systems know the entity by. A path can also select one element of a list of scalars by
//! its position: `order.shipping_address.lines[0]` (an ERP's address line columns).

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};

use crate::DomainError;

pub const DOMAIN_EVENT: &str = "tributary.retail.v1.DomainEvent";

/// The descriptors of every Tributary message, and `DomainEvent`.
#[derive(Clone)]
pub struct Schema {
    pub event: MessageDescriptor,
}

/// A resolved field path inside one entity message, e.g. `order.total.amount`.
#[derive(Clone, Debug)]
pub struct FieldPath {
    /// As written in the configuration.
    pub text: String,
    /// The `DomainEvent.entity` member (`order`).
    pub member: FieldDescriptor,
    /// From the entity message down to the scalar field (`total`, `amount`); for a keyed
    /// entry, the list field and then the entry's value field (`external_ids`, `id`).
    pub fields: Vec<FieldDescriptor>,
    /// Set when the path selects a list entry by key (`external_ids[shopify]`).
    pub entry: Option<Entry>,
}

/// A list entry: the list is `fields[at]`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub at: usize,
    pub select: Select,
}

#[derive(Clone, Debug)]
pub enum Select {
    /// The entry whose `key_field` equals `key` (a list of messages).
    Keyed {
        key_field: FieldDescriptor,
        key: String,
    },
    /// The element at this position (a list of scalars); filling it pads the list with
    /// empty elements, clearing it empties the element and drops empty ones at the end.
    Index(usize),
}

/// The fields an entry of a keyed list needs: a string key and a value.
const ENTRY_KEY_FIELD: &str = "system";
const ENTRY_VALUE_FIELD: &str = "id";

impl Schema {
    pub fn load() -> Result<Schema, DomainError> {
        let pool = DescriptorPool::decode(tributary_proto::DESCRIPTOR_SET)
            .map_err(|e| DomainError::Descriptors(e.to_string()))?;
        let event = pool
            .get_message_by_name(DOMAIN_EVENT)
            .ok_or_else(|| DomainError::Descriptors(format!("{DOMAIN_EVENT} is missing")))?;
        Ok(Schema { event })
    }

    /// Resolves `member.field.field`; `key` names the configuration key for errors.
    pub fn resolve(&self, text: &str, key: &str) -> Result<FieldPath, DomainError> {
        let mut parts = text.split('.');
        let first = parts.next().unwrap_or_default();
        let member = self
            .event
            .get_field_by_name(first)
            .filter(|f| f.containing_oneof().is_some_and(|o| o.name() == "entity"))
            .ok_or_else(|| {
                DomainError::config(
                    key,
                    format!(
                        "`{text}`: `{first}` is not an entity of {DOMAIN_EVENT} (one of: {})",
                        self.members().join(", ")
                    ),
                )
            })?;
        let mut message = match member.kind() {
            Kind::Message(m) => m,
            _ => {
                return Err(DomainError::config(
                    key,
                    format!("`{first}` is not a message"),
                ))
            }
        };
        let mut fields = Vec::new();
        let mut entry = None;
        for part in parts {
            if entry.is_some() {
                return Err(DomainError::config(
                    key,
                    format!("`{text}`: a list entry `[…]` must end the path"),
                ));
            }
            let (name, selector) = match part.split_once('[') {
                Some((name, rest)) => match rest.strip_suffix(']') {
                    Some(k) if !k.is_empty() => (name, Some(k)),
                    _ => {
                        return Err(DomainError::config(
                            key,
                            format!("`{text}`: `{part}` is not `field[key]`"),
                        ))
                    }
                },
                None => (part, None),
            };
            let field = message.get_field_by_name(name).ok_or_else(|| {
                DomainError::config(
                    key,
                    format!("`{text}`: {} has no field `{name}`", message.full_name()),
                )
            })?;
            if let Some(index) = selector
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|_| field.is_list() && !matches!(field.kind(), Kind::Message(_)))
            {
                entry = Some(Entry {
                    at: fields.len(),
                    select: Select::Index(index),
                });
                fields.push(field);
                continue;
            }
            if let Some(selector) = selector {
                let (key_field, value_field) = keyed_entry_fields(&field).ok_or_else(|| {
                    DomainError::config(
                        key,
                        format!(
                            "`{text}`: `{name}[…]` selects an entry of a list of messages with `{ENTRY_KEY_FIELD}` and `{ENTRY_VALUE_FIELD}` (such as external_ids), or `{name}[<n>]` an element of a list of scalars"
                        ),
                    )
                })?;
                entry = Some(Entry {
                    at: fields.len(),
                    select: Select::Keyed {
                        key_field,
                        key: selector.to_string(),
                    },
                });
                fields.push(field);
                fields.push(value_field);
                continue;
            }
            if field.is_list() || field.is_map() {
                return Err(DomainError::config(
                    key,
                    format!("`{text}`: `{part}` is repeated; mappings fill single fields (or one entry of external_ids: `{part}[system]`)"),
                ));
            }
            if let Kind::Message(m) = field.kind() {
                message = m;
            }
            fields.push(field);
        }
        match fields.last().map(|f| f.kind()) {
            None | Some(Kind::Message(_)) => Err(DomainError::config(
                key,
                format!("`{text}` must end at a scalar field"),
            )),
            Some(_) => Ok(FieldPath {
                text: text.to_string(),
                member,
                fields,
                entry,
            }),
        }
    }

    fn members(&self) -> Vec<String> {
        self.event
            .oneofs()
            .filter(|o| o.name() == "entity")
            .flat_map(|o| o.fields().map(|f| f.name().to_string()).collect::<Vec<_>>())
            .collect()
    }
}

impl Entry {
    fn keyed(&self) -> Option<(&FieldDescriptor, &str)> {
        match &self.select {
            Select::Keyed { key_field, key } => Some((key_field, key)),
            Select::Index(_) => None,
        }
    }
}

/// The key and value fields of a repeated message field usable as a keyed list.
fn keyed_entry_fields(field: &FieldDescriptor) -> Option<(FieldDescriptor, FieldDescriptor)> {
    if !field.is_list() {
        return None;
    }
    let Kind::Message(m) = field.kind() else {
        return None;
    };
    let key = m.get_field_by_name(ENTRY_KEY_FIELD)?;
    let value = m.get_field_by_name(ENTRY_VALUE_FIELD)?;
    (key.kind() == Kind::String && !key.is_list() && !value.is_list()).then_some((key, value))
}

/// Sets (Some) or clears (None) the field at `path` below `msg`, creating parents; for a
/// keyed entry, sets its value (adding the entry) or removes the entry.
pub fn set_path(msg: &mut DynamicMessage, path: &FieldPath, value: Option<Value>) {
    set_at(msg, &path.fields, 0, path.entry.as_ref(), value);
}

fn set_at(
    msg: &mut DynamicMessage,
    path: &[FieldDescriptor],
    depth: usize,
    entry: Option<&Entry>,
    value: Option<Value>,
) {
    if let (Some(Select::Index(n)), [list]) =
        (entry.filter(|e| e.at == depth).map(|e| &e.select), path)
    {
        let empty = Value::default_value(&list.kind());
        let Value::List(items) = msg.get_field_mut(list) else {
            return;
        };
        match value {
            Some(v) => {
                if items.len() <= *n {
                    items.resize(*n + 1, empty.clone());
                }
                items[*n] = v;
            }
            None => {
                if let Some(item) = items.get_mut(*n) {
                    *item = empty.clone();
                }
            }
        }
        while items.last() == Some(&empty) {
            items.pop();
        }
        return;
    }
    if let (Some((key_field, key)), [list, value_field]) =
        (entry.filter(|e| e.at == depth).and_then(Entry::keyed), path)
    {
        let Value::List(items) = msg.get_field_mut(list) else {
            return;
        };
        let key = Value::String(key.to_string());
        let found = items.iter().position(
            |item| matches!(item, Value::Message(m) if m.get_field(key_field).as_ref() == &key),
        );
        match (value, found) {
            (Some(v), Some(i)) => {
                if let Some(Value::Message(m)) = items.get_mut(i) {
                    m.set_field(value_field, v);
                }
            }
            (Some(v), None) => {
                let mut m = DynamicMessage::new(value_field.parent_message().clone());
                m.set_field(key_field, key);
                m.set_field(value_field, v);
                items.push(Value::Message(m));
            }
            (None, Some(i)) => {
                items.remove(i);
            }
            (None, None) => {}
        }
        return;
    }
    match path {
        [] => {}
        [last] => match value {
            Some(v) => msg.set_field(last, v),
            None => msg.clear_field(last),
        },
        [first, rest @ ..] => {
            if let Value::Message(child) = msg.get_field_mut(first) {
                set_at(child, rest, depth + 1, entry, value);
            }
        }
    }
}

/// The value at `path`, None when it (or a parent, or the keyed entry) is not set.
pub fn get_path(msg: &DynamicMessage, path: &FieldPath) -> Option<Value> {
    get_at(msg, &path.fields, 0, path.entry.as_ref())
}

fn get_at(
    msg: &DynamicMessage,
    path: &[FieldDescriptor],
    depth: usize,
    entry: Option<&Entry>,
) -> Option<Value> {
    if let (Some(Select::Index(n)), [list]) =
        (entry.filter(|e| e.at == depth).map(|e| &e.select), path)
    {
        return match msg.get_field(list).as_ref() {
            Value::List(items) => items.get(*n).cloned(),
            _ => None,
        };
    }
    if let (Some((key_field, key)), [list, value_field]) =
        (entry.filter(|e| e.at == depth).and_then(Entry::keyed), path)
    {
        let key = Value::String(key.to_string());
        return match msg.get_field(list).as_ref() {
            Value::List(items) => items.iter().find_map(|item| match item {
                Value::Message(m) if m.get_field(key_field).as_ref() == &key => {
                    Some(m.get_field(value_field).into_owned())
                }
                _ => None,
            }),
            _ => None,
        };
    }
    match path {
        [] => None,
        [last] => msg
            .has_field(last)
            .then(|| msg.get_field(last).into_owned()),
        [first, rest @ ..] => {
            if !msg.has_field(first) {
                return None;
            }
            match msg.get_field(first).as_ref() {
                Value::Message(child) => get_at(child, rest, depth + 1, entry),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_external_id_entries_are_set_replaced_and_removed() {
        let schema = Schema::load().expect("descriptors");
        let path = schema
            .resolve("order.external_ids[shopify]", "k")
            .expect("resolves");
        let other = schema
            .resolve("order.external_ids[salesforce]", "k")
            .expect("resolves");
        let desc = match path.member.kind() {
            Kind::Message(m) => m,
            _ => unreachable!(),
        };
        let mut order = DynamicMessage::new(desc);
        set_path(
            &mut order,
            &path,
            Some(Value::String("gid://shopify/Order/1".into())),
        );
        set_path(&mut order, &other, Some(Value::String("801x".into())));
        set_path(
            &mut order,
            &path,
            Some(Value::String("gid://shopify/Order/2".into())),
        );
        assert_eq!(
            get_path(&order, &path),
            Some(Value::String("gid://shopify/Order/2".into()))
        );
        assert_eq!(get_path(&order, &other), Some(Value::String("801x".into())));
        set_path(&mut order, &path, None);
        assert_eq!(get_path(&order, &path), None);
        assert_eq!(get_path(&order, &other), Some(Value::String("801x".into())));
    }

    #[test]
    fn keyed_selectors_are_checked_at_start_up() {
        let schema = Schema::load().expect("descriptors");
        for bad in [
            "order.lines[x]",
            "order.external_ids[]",
            "order.external_ids[a].id",
            "order.status[x]",
            "order.external_ids",
            "order.lines[0]",
            "order.shipping_address.lines",
            "order.shipping_address.lines[0].x",
        ] {
            assert!(schema.resolve(bad, "k").is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn indexed_scalar_elements_are_set_padded_and_trimmed() {
        let schema = Schema::load().expect("descriptors");
        let first = schema
            .resolve("order.shipping_address.lines[0]", "k")
            .expect("resolves");
        let second = schema
            .resolve("order.shipping_address.lines[1]", "k")
            .expect("resolves");
        let desc = match first.member.kind() {
            Kind::Message(m) => m,
            _ => unreachable!(),
        };
        let text = |s: &str| Some(Value::String(s.into()));
        let mut order = DynamicMessage::new(desc);
        set_path(&mut order, &second, text("Flat 2"));
        assert_eq!(get_path(&order, &first), text(""));
        set_path(&mut order, &first, text("1 Main St"));
        assert_eq!(get_path(&order, &second), text("Flat 2"));
        set_path(&mut order, &second, None);
        assert_eq!(get_path(&order, &second), None);
        assert_eq!(get_path(&order, &first), text("1 Main St"));
    }
}

//! Wire-compatibility check between two descriptor sets (the committed one and the current).
//!
//! A consumer compiled against the old schema must keep decoding what the new one produces,
//! and the other way round. That holds when, for every message and enum of the old set:
//! the message still exists; every old field still exists under the same number with the same
//! type, type name and cardinality (a removed field is only accepted when its number is
//! `reserved`, so it can never be reused); every old enum value keeps its number. Added
//! fields, messages and values are compatible. Renaming a field is wire compatible and
//! allowed (it breaks JSON consumers, which Tributary does not produce).

use std::collections::HashMap;

use prost::Message as _;
use prost_types::{
    field_descriptor_proto::Label, DescriptorProto, EnumDescriptorProto, FileDescriptorSet,
};

#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error("cannot decode the {which} descriptor set: {source}")]
    Decode {
        which: &'static str,
        source: prost::DecodeError,
    },
}

/// One breaking difference, naming the element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Full name, e.g. `tributary.retail.v1.Order.total` or `tributary.retail.v1.Order#5`.
    pub element: String,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.element, self.reason)
    }
}

/// Compares encoded `FileDescriptorSet`s; an empty result means `new` is wire compatible.
pub fn check_encoded(old: &[u8], new: &[u8]) -> Result<Vec<Violation>, CompatError> {
    let old = FileDescriptorSet::decode(old).map_err(|source| CompatError::Decode {
        which: "old",
        source,
    })?;
    let new = FileDescriptorSet::decode(new).map_err(|source| CompatError::Decode {
        which: "new",
        source,
    })?;
    Ok(check(&old, &new))
}

pub fn check(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<Violation> {
    let old_index = index(old);
    let new_index = index(new);
    let mut out = Vec::new();
    let mut names: Vec<&String> = old_index.messages.keys().collect();
    names.sort();
    for name in names {
        let old_msg = old_index.messages[name];
        match new_index.messages.get(name) {
            None => out.push(violation(name, "message removed")),
            Some(new_msg) => check_message(name, old_msg, new_msg, &mut out),
        }
    }
    let mut names: Vec<&String> = old_index.enums.keys().collect();
    names.sort();
    for name in names {
        let old_enum = old_index.enums[name];
        match new_index.enums.get(name) {
            None => out.push(violation(name, "enum removed")),
            Some(new_enum) => check_enum(name, old_enum, new_enum, &mut out),
        }
    }
    out
}

fn violation(element: &str, reason: impl Into<String>) -> Violation {
    Violation {
        element: element.to_string(),
        reason: reason.into(),
    }
}

fn check_message(
    name: &str,
    old: &DescriptorProto,
    new: &DescriptorProto,
    out: &mut Vec<Violation>,
) {
    let by_number: HashMap<i32, &prost_types::FieldDescriptorProto> =
        new.field.iter().map(|f| (f.number(), f)).collect();
    let reserved = |n: i32| {
        new.reserved_range
            .iter()
            .any(|r| r.start() <= n && n < r.end())
    };
    for f in &old.field {
        let element = format!("{name}.{}", f.name());
        let Some(nf) = by_number.get(&f.number()) else {
            if !reserved(f.number()) {
                out.push(violation(
                    &element,
                    format!("field number {} removed without being reserved", f.number()),
                ));
            }
            continue;
        };
        if nf.r#type() != f.r#type() || nf.type_name() != f.type_name() {
            out.push(violation(
                &element,
                format!(
                    "type changed from {:?} {} to {:?} {}",
                    f.r#type(),
                    f.type_name(),
                    nf.r#type(),
                    nf.type_name()
                ),
            ));
        }
        let repeated = |l: Label| l == Label::Repeated;
        if repeated(nf.label()) != repeated(f.label()) {
            out.push(violation(
                &element,
                "cardinality changed (repeated vs single)",
            ));
        }
        if nf.oneof_index.is_some() != f.oneof_index.is_some() {
            out.push(violation(&element, "moved into or out of a oneof"));
        }
        if nf.name() != f.name() {
            // Same number and type under another name: the old name's meaning moved.
            if let Some(other) = new.field.iter().find(|x| x.name() == f.name()) {
                out.push(violation(
                    &element,
                    format!("renumbered from {} to {}", f.number(), other.number()),
                ));
            }
        }
    }
}

fn check_enum(
    name: &str,
    old: &EnumDescriptorProto,
    new: &EnumDescriptorProto,
    out: &mut Vec<Violation>,
) {
    for v in &old.value {
        if !new.value.iter().any(|n| n.number() == v.number()) {
            let reserved = new
                .reserved_range
                .iter()
                .any(|r| r.start() <= v.number() && v.number() <= r.end());
            if !reserved {
                out.push(violation(
                    &format!("{name}.{}", v.name()),
                    format!("enum value {} removed without being reserved", v.number()),
                ));
            }
        }
    }
}

struct Index<'a> {
    messages: HashMap<String, &'a DescriptorProto>,
    enums: HashMap<String, &'a EnumDescriptorProto>,
}

fn index(set: &FileDescriptorSet) -> Index<'_> {
    let mut ix = Index {
        messages: HashMap::new(),
        enums: HashMap::new(),
    };
    for file in &set.file {
        let prefix = file.package().to_string();
        for e in &file.enum_type {
            ix.enums.insert(join(&prefix, e.name()), e);
        }
        for m in &file.message_type {
            index_message(&prefix, m, &mut ix);
        }
    }
    ix
}

fn index_message<'a>(prefix: &str, m: &'a DescriptorProto, ix: &mut Index<'a>) {
    let name = join(prefix, m.name());
    for e in &m.enum_type {
        ix.enums.insert(join(&name, e.name()), e);
    }
    for nested in &m.nested_type {
        index_message(&name, nested, ix);
    }
    ix.messages.insert(name, m);
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

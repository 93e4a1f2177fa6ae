//! Field paths of the configuration, resolved against the compiled descriptors so that a
//! typo or a path into a repeated field is reported at start-up, not per change.

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
    /// From the entity message down to the scalar field (`total`, `amount`).
    pub fields: Vec<FieldDescriptor>,
}

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
        for part in parts {
            let field = message.get_field_by_name(part).ok_or_else(|| {
                DomainError::config(
                    key,
                    format!("`{text}`: {} has no field `{part}`", message.full_name()),
                )
            })?;
            if field.is_list() || field.is_map() {
                return Err(DomainError::config(
                    key,
                    format!("`{text}`: `{part}` is repeated; mappings fill single fields"),
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

/// Sets (Some) or clears (None) the field at `path` below `msg`, creating parents.
pub fn set_path(msg: &mut DynamicMessage, path: &[FieldDescriptor], value: Option<Value>) {
    match path {
        [] => {}
        [last] => match value {
            Some(v) => msg.set_field(last, v),
            None => msg.clear_field(last),
        },
        [first, rest @ ..] => {
            if let Value::Message(child) = msg.get_field_mut(first) {
                set_path(child, rest, value);
            }
        }
    }
}

/// The value at `path`, None when it (or a parent) is not set.
pub fn get_path(msg: &DynamicMessage, path: &[FieldDescriptor]) -> Option<Value> {
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
                Value::Message(child) => get_path(child, rest),
                _ => None,
            }
        }
    }
}

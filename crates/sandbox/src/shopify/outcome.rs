//! What a mutation answers: the entities it changed (for webhooks), its payload or a GraphQL
//! error, and the `userErrors` helpers. A leaf, so that the mutations and the inventory
//! mutations they dispatch to share it without importing each other.

use serde_json::{json, Map, Value};

/// An entity a mutation changed, for the webhook it fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Changed {
    Order(u64),
    InventoryLevel { item: u64, location: u64 },
    Customer { id: u64, created: bool },
    Fulfillment(u64),
    Product(u64),
}

/// A top-level GraphQL error (as opposed to `userErrors`).
#[derive(Debug)]
pub struct GqlError {
    pub message: String,
    pub code: &'static str,
}

pub type Outcome = Result<(Value, Vec<Changed>), GqlError>;

/// `gid://shopify/InventoryLevel/<location>?inventory_item_id=<item>`.
pub fn inventory_level_gid(item: u64, location: u64) -> String {
    format!("gid://shopify/InventoryLevel/{location}?inventory_item_id={item}")
}

pub(super) fn user_error(field: Value, message: impl Into<String>, code: &str) -> Value {
    json!({"field": field, "message": message.into(), "code": code})
}

pub(super) fn rejected(payload_key: &str, errors: Vec<Value>) -> Outcome {
    Ok((
        json!({payload_key: Value::Null, "userErrors": errors}),
        vec![],
    ))
}

pub(super) fn obj<'a>(
    args: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, GqlError> {
    args.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| GqlError {
            message: format!("Variable ${key} of type Input! was provided invalid value"),
            code: "INVALID_VARIABLE",
        })
}

pub(super) fn str_field<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

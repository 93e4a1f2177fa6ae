//! `inventorySetQuantities` (absolute, with the `changeFromQuantity` compare-and-swap) and
//! `inventoryAdjustQuantities` (deltas). Both validate every line before changing anything.

use serde_json::{json, Map, Value};

use super::outcome::{inventory_level_gid, obj, rejected, str_field, user_error, Changed, Outcome};
use super::state::{gid, parse_gid, InventoryChange, ShopState};

struct Target {
    item: u64,
    location: u64,
}

fn inventory_target(
    s: &ShopState,
    q: &Map<String, Value>,
    i: usize,
    errs: &mut Vec<Value>,
) -> Option<Target> {
    let item = str_field(q, "inventoryItemId").and_then(|g| parse_gid(g, "InventoryItem"));
    let location = str_field(q, "locationId").and_then(|g| parse_gid(g, "Location"));
    match (item, location) {
        (Some(item), _) if s.variant_by_item(item).is_none() => {
            errs.push(user_error(
                json!(["input", "quantities", i.to_string(), "inventoryItemId"]),
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            ));
            None
        }
        (None, _) => {
            errs.push(user_error(
                json!(["input", "quantities", i.to_string(), "inventoryItemId"]),
                "The specified inventory item could not be found.",
                "INVALID_INVENTORY_ITEM",
            ));
            None
        }
        (_, Some(loc)) if !s.locations.contains_key(&loc) => {
            errs.push(user_error(
                json!(["input", "quantities", i.to_string(), "locationId"]),
                "The specified location could not be found.",
                "INVALID_LOCATION",
            ));
            None
        }
        (_, None) => {
            errs.push(user_error(
                json!(["input", "quantities", i.to_string(), "locationId"]),
                "The specified location could not be found.",
                "INVALID_LOCATION",
            ));
            None
        }
        (Some(item), Some(location)) => Some(Target { item, location }),
    }
}

fn apply_quantity(
    s: &mut ShopState,
    name: &str,
    t: &Target,
    delta: i64,
    reference: Option<&str>,
) -> Value {
    let now = ShopState::touch();
    // Setting either quantity moves both: available = on_hand - committed, and nothing here
    // changes what is committed.
    let level = s.inventory.entry((t.item, t.location)).or_default();
    level.available += delta;
    level.on_hand += delta;
    level.updated_at = now;
    let after = if name == "available" {
        level.available
    } else {
        level.on_hand
    };
    s.count_write(inventory_level_gid(t.item, t.location));
    s.inventory_history.push(InventoryChange {
        item: t.item,
        location: t.location,
        name: name.to_string(),
        delta,
        quantity_after: after,
        reference_document_uri: reference.map(str::to_string),
    });
    json!({"name": name, "delta": delta, "quantityAfterChange": after,
           "item": {"id": gid("InventoryItem", t.item)}, "location": {"id": gid("Location", t.location)}})
}

pub(super) fn set(s: &mut ShopState, args: &Map<String, Value>) -> Outcome {
    let input = obj(args, "input")?;
    let name = str_field(input, "name").unwrap_or_default().to_string();
    let reference = str_field(input, "referenceDocumentUri");
    let mut errs = Vec::new();
    if name != "available" && name != "on_hand" {
        errs.push(user_error(
            json!(["input", "name"]),
            "The quantity name must be either 'available' or 'on_hand'.",
            "INVALID_NAME",
        ));
    }
    if str_field(input, "reason").is_none_or(str::is_empty) {
        errs.push(user_error(
            json!(["input", "reason"]),
            "The reason is invalid.",
            "INVALID_REASON",
        ));
    }
    let ignore_compare = input
        .get("ignoreCompareQuantity")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let quantities = input
        .get("quantities")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if quantities.is_empty() {
        errs.push(user_error(
            json!(["input", "quantities"]),
            "At least one quantity is required.",
            "INVALID",
        ));
    }
    let mut plan = Vec::new();
    for (i, q) in quantities.iter().enumerate() {
        let Some(q) = q.as_object() else { continue };
        let Some(target) = inventory_target(s, q, i, &mut errs) else {
            continue;
        };
        let Some(quantity) = q.get("quantity").and_then(Value::as_i64) else {
            errs.push(user_error(
                json!(["input", "quantities", i.to_string(), "quantity"]),
                "Quantity is required.",
                "INVALID_QUANTITY",
            ));
            continue;
        };
        let level = s
            .inventory
            .get(&(target.item, target.location))
            .cloned()
            .unwrap_or_default();
        let current = if name == "on_hand" {
            level.on_hand
        } else {
            level.available
        };
        let expected = q.get("changeFromQuantity").or_else(|| {
            if ignore_compare {
                None
            } else {
                q.get("compareQuantity")
            }
        });
        if let Some(expected) = expected.and_then(Value::as_i64) {
            if expected != current {
                errs.push(user_error(json!(["input", "quantities", i.to_string(), "changeFromQuantity"]),
                    format!("The specified compare quantity does not match the current quantity ({current})."), "CHANGE_FROM_QUANTITY_STALE"));
                continue;
            }
        }
        plan.push((target, quantity - current));
    }
    if !errs.is_empty() {
        return rejected("inventoryAdjustmentGroup", errs);
    }
    let mut changes = Vec::new();
    let mut changed = Vec::new();
    for (t, delta) in plan {
        changes.push(apply_quantity(s, &name, &t, delta, reference));
        changed.push(Changed::InventoryLevel {
            item: t.item,
            location: t.location,
        });
    }
    Ok((
        json!({"inventoryAdjustmentGroup": {"createdAt": ShopState::touch(), "reason": input.get("reason"),
        "referenceDocumentUri": input.get("referenceDocumentUri"), "changes": changes}, "userErrors": []}),
        changed,
    ))
}

pub(super) fn adjust(s: &mut ShopState, args: &Map<String, Value>) -> Outcome {
    let input = obj(args, "input")?;
    let name = str_field(input, "name").unwrap_or_default().to_string();
    let reference = str_field(input, "referenceDocumentUri");
    let mut errs = Vec::new();
    if name != "available" && name != "on_hand" {
        errs.push(user_error(
            json!(["input", "name"]),
            "The quantity name must be either 'available' or 'on_hand'.",
            "INVALID_NAME",
        ));
    }
    let mut plan = Vec::new();
    for (i, c) in input
        .get("changes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(c) = c.as_object() else { continue };
        let Some(t) = inventory_target(s, c, i, &mut errs) else {
            continue;
        };
        match c.get("delta").and_then(Value::as_i64) {
            Some(d) => plan.push((t, d)),
            None => errs.push(user_error(
                json!(["input", "changes", i.to_string(), "delta"]),
                "Delta is required.",
                "INVALID_QUANTITY",
            )),
        }
    }
    if !errs.is_empty() || plan.is_empty() {
        return rejected("inventoryAdjustmentGroup", errs);
    }
    let mut changes = Vec::new();
    let mut changed = Vec::new();
    for (t, delta) in plan {
        changes.push(apply_quantity(s, &name, &t, delta, reference));
        changed.push(Changed::InventoryLevel {
            item: t.item,
            location: t.location,
        });
    }
    Ok((
        json!({"inventoryAdjustmentGroup": {"reason": input.get("reason"), "changes": changes}, "userErrors": []}),
        changed,
    ))
}

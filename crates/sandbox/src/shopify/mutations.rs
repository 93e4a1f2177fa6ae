//! The Admin GraphQL mutations the sinks use. Each validates its whole input first and answers
//! `userErrors` without touching state when anything is wrong.

use serde_json::{json, Map, Value};

use super::state::{
    customer_node, fulfillment_node, gid, parse_gid, variant_node, Customer, Fulfillment,
    ShopState, Tracking,
};

use super::outcome::{obj, rejected, str_field, user_error, Changed, Outcome};

fn tags(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .collect(),
        ),
        Value::String(s) => Some(
            s.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
        _ => None,
    }
}

fn valid_email(e: &str) -> bool {
    e.split_once('@')
        .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
}

fn valid_money(p: &str) -> bool {
    p.parse::<f64>().is_ok_and(|v| v.is_finite() && v >= 0.0)
}

/// The mutation fields the emulator knows (what [`execute`] dispatches).
pub const FIELDS: &[&str] = &[
    "inventorySetQuantities",
    "inventoryAdjustQuantities",
    "orderUpdate",
    "orderClose",
    "orderOpen",
    "orderCancel",
    "fulfillmentCreate",
    "productVariantsBulkUpdate",
    "customerCreate",
    "customerUpdate",
];

/// Runs mutation `name`; `None` if the emulator does not know it.
pub fn execute(s: &mut ShopState, name: &str, args: &Map<String, Value>) -> Option<Outcome> {
    Some(match name {
        "inventorySetQuantities" => super::inventory::set(s, args),
        "inventoryAdjustQuantities" => super::inventory::adjust(s, args),
        "orderUpdate" => order_update(s, args),
        "orderClose" | "orderOpen" => order_close_open(s, args, name == "orderClose"),
        "orderCancel" => order_cancel(s, args),
        "fulfillmentCreate" => fulfillment_create(s, args),
        "productVariantsBulkUpdate" => variants_bulk_update(s, args),
        "customerCreate" => customer_upsert(s, args, true),
        "customerUpdate" => customer_upsert(s, args, false),
        _ => return None,
    })
}

fn order_id(s: &ShopState, v: Option<&Value>, field: Value) -> Result<u64, Value> {
    v.and_then(Value::as_str)
        .and_then(|g| parse_gid(g, "Order"))
        .filter(|id| s.orders.contains_key(id))
        .ok_or_else(|| user_error(field, "Order does not exist", "NOT_FOUND"))
}

fn order_payload(s: &ShopState, id: u64) -> Value {
    s.orders
        .get(&id)
        .map(|o| s.order_node(o))
        .unwrap_or(Value::Null)
}

fn order_update(s: &mut ShopState, args: &Map<String, Value>) -> Outcome {
    let input = obj(args, "input")?;
    let id = match order_id(s, input.get("id"), json!(["id"])) {
        Ok(id) => id,
        Err(e) => return rejected("order", vec![e]),
    };
    if let Some(email) = str_field(input, "email") {
        if !valid_email(email) {
            return rejected(
                "order",
                vec![user_error(json!(["email"]), "Email is invalid", "INVALID")],
            );
        }
    }
    let Some(order) = s.orders.get_mut(&id) else {
        return rejected("order", vec![]);
    };
    if let Some(email) = str_field(input, "email") {
        order.email = Some(email.to_string());
    }
    if let Some(note) = input.get("note") {
        order.note = note.as_str().map(str::to_string);
    }
    if let Some(t) = input.get("tags").and_then(tags) {
        order.tags = t;
    }
    if let Some(attrs) = input.get("customAttributes").and_then(Value::as_array) {
        order.custom_attributes = attrs
            .iter()
            .filter_map(|a| {
                Some((
                    a.get("key")?.as_str()?.to_string(),
                    a.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect();
    }
    order.updated_at = ShopState::touch();
    s.count_write(gid("Order", id));
    Ok((
        json!({"order": order_payload(s, id), "userErrors": []}),
        vec![Changed::Order(id)],
    ))
}

fn order_close_open(s: &mut ShopState, args: &Map<String, Value>, close: bool) -> Outcome {
    let input = obj(args, "input")?;
    let id = match order_id(s, input.get("id"), json!(["id"])) {
        Ok(id) => id,
        Err(e) => return rejected("order", vec![e]),
    };
    if let Some(o) = s.orders.get_mut(&id) {
        o.closed = close;
        o.updated_at = ShopState::touch();
    }
    s.count_write(gid("Order", id));
    Ok((
        json!({"order": order_payload(s, id), "userErrors": []}),
        vec![Changed::Order(id)],
    ))
}

fn order_cancel(s: &mut ShopState, args: &Map<String, Value>) -> Outcome {
    let id = match order_id(s, args.get("orderId"), json!(["orderId"])) {
        Ok(id) => id,
        Err(e) => {
            return Ok((
                json!({"job": null, "orderCancelUserErrors": [e.clone()], "userErrors": [e]}),
                vec![],
            ))
        }
    };
    if let Some(o) = s.orders.get_mut(&id) {
        if o.cancelled {
            let e = user_error(
                json!(["orderId"]),
                "Order has already been cancelled",
                "ORDER_ALREADY_CANCELLED",
            );
            return Ok((
                json!({"job": null, "orderCancelUserErrors": [e.clone()], "userErrors": [e]}),
                vec![],
            ));
        }
        o.cancelled = true;
        o.closed = true;
        o.updated_at = ShopState::touch();
    }
    s.count_write(gid("Order", id));
    Ok((
        json!({"job": {"id": gid("Job", id), "done": true}, "orderCancelUserErrors": [], "userErrors": []}),
        vec![Changed::Order(id)],
    ))
}

fn fulfillment_create(s: &mut ShopState, args: &Map<String, Value>) -> Outcome {
    let input = obj(args, "fulfillment")?;
    let groups = input
        .get("lineItemsByFulfillmentOrder")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let fo = groups
        .first()
        .and_then(|g| g.get("fulfillmentOrderId"))
        .and_then(Value::as_str)
        .and_then(|g| parse_gid(g, "FulfillmentOrder"));
    let field = json!([
        "fulfillment",
        "lineItemsByFulfillmentOrder",
        "0",
        "fulfillmentOrderId"
    ]);
    let not_found = |field: Value| {
        rejected(
            "fulfillment",
            vec![user_error(
                field,
                "Fulfillment order does not exist.",
                "NOT_FOUND",
            )],
        )
    };
    let Some(order_id) = fo.and_then(|fo| s.order_by_fulfillment_order(fo)) else {
        return not_found(field);
    };
    if s.orders.get(&order_id).is_some_and(|o| {
        o.fulfillment_status == "FULFILLED"
            || o.cancelled
            || o.line_items.iter().all(|l| l.fulfilled >= l.quantity)
    }) {
        return rejected(
            "fulfillment",
            vec![user_error(
                field,
                "Fulfillment order has an unfulfillable status= closed.",
                "INVALID",
            )],
        );
    }
    // The units shipped: the listed fulfilment order line items, or everything remaining.
    let requested: Option<Vec<(u64, i64)>> = groups
        .first()
        .and_then(|g| g.get("fulfillmentOrderLineItems"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i.get("id")
                            .and_then(Value::as_str)
                            .and_then(|g| parse_gid(g, "FulfillmentOrderLineItem"))
                            .unwrap_or(0),
                        i.get("quantity").and_then(Value::as_i64).unwrap_or(0),
                    )
                })
                .collect()
        });
    let Some(order) = s.orders.get(&order_id) else {
        return not_found(field);
    };
    let shipped: Vec<(u64, i64)> = match requested {
        None => order
            .line_items
            .iter()
            .filter(|l| l.quantity > l.fulfilled)
            .map(|l| (l.id, l.quantity - l.fulfilled))
            .collect(),
        Some(items) => {
            let fits = items.iter().all(|(id, q)| {
                *q > 0
                    && order
                        .line_items
                        .iter()
                        .any(|l| l.id == *id && l.quantity - l.fulfilled >= *q)
            });
            if !fits {
                return rejected(
                    "fulfillment",
                    vec![user_error(
                        json!([
                            "fulfillment",
                            "lineItemsByFulfillmentOrder",
                            "0",
                            "fulfillmentOrderLineItems"
                        ]),
                        "Invalid fulfillment order line item quantity requested.",
                        "INVALID",
                    )],
                );
            }
            items
        }
    };
    let tracking = match input.get("trackingInfo") {
        Some(Value::Object(t)) => vec![Tracking {
            number: str_field(t, "number").map(str::to_string),
            company: str_field(t, "company").map(str::to_string),
            url: str_field(t, "url").map(str::to_string),
        }],
        _ => vec![],
    };
    let id = s.next_id();
    let now = ShopState::touch();
    let f = Fulfillment {
        id,
        order_id,
        lines: shipped.clone(),
        status: "SUCCESS".into(),
        tracking,
        notify_customer: input
            .get("notifyCustomer")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let node = fulfillment_node(&f);
    s.fulfillments.insert(id, f);
    if let Some(o) = s.orders.get_mut(&order_id) {
        for (line, q) in &shipped {
            if let Some(l) = o.line_items.iter_mut().find(|l| l.id == *line) {
                l.fulfilled += q;
            }
        }
        o.fulfillment_status = if o.line_items.iter().all(|l| l.fulfilled >= l.quantity) {
            "FULFILLED"
        } else {
            "PARTIALLY_FULFILLED"
        }
        .into();
        o.updated_at = now;
    }
    s.count_write(gid("Order", order_id));
    s.count_write(gid("Fulfillment", id));
    Ok((
        json!({"fulfillment": node, "userErrors": []}),
        vec![Changed::Fulfillment(id), Changed::Order(order_id)],
    ))
}

fn variants_bulk_update(s: &mut ShopState, args: &Map<String, Value>) -> Outcome {
    let product = args
        .get("productId")
        .and_then(Value::as_str)
        .and_then(|g| parse_gid(g, "Product"));
    let Some(product) = product.filter(|p| s.products.contains_key(p)) else {
        return Ok((
            json!({"product": null, "productVariants": null, "userErrors": [user_error(json!(["productId"]), "Product does not exist", "PRODUCT_DOES_NOT_EXIST")]}),
            vec![],
        ));
    };
    let variants = args
        .get("variants")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut errs = Vec::new();
    let mut plan = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .and_then(|g| parse_gid(g, "ProductVariant"));
        match id.filter(|id| s.variants.get(id).is_some_and(|v| v.product_id == product)) {
            None => errs.push(user_error(
                json!(["variants", i.to_string(), "id"]),
                "Product variant does not exist",
                "PRODUCT_VARIANT_DOES_NOT_EXIST",
            )),
            Some(id) => {
                let price = v.get("price").map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| p.to_string())
                });
                if price.as_deref().is_some_and(|p| !valid_money(p)) {
                    errs.push(user_error(
                        json!(["variants", i.to_string(), "price"]),
                        "Price must be a non-negative decimal",
                        "INVALID",
                    ));
                    continue;
                }
                plan.push((id, price, v.get("compareAtPrice").cloned()));
            }
        }
    }
    if !errs.is_empty() {
        return Ok((
            json!({"product": null, "productVariants": null, "userErrors": errs}),
            vec![],
        ));
    }
    let now = ShopState::touch();
    let mut nodes = Vec::new();
    for (id, price, compare) in plan {
        if let Some(v) = s.variants.get_mut(&id) {
            if let Some(p) = price {
                v.price = p;
            }
            if let Some(c) = compare {
                v.compare_at_price = c.as_str().map(str::to_string);
            }
            v.updated_at = now.clone();
            nodes.push(variant_node(v));
        }
        s.count_write(gid("ProductVariant", id));
    }
    if let Some(p) = s.products.get_mut(&product) {
        p.updated_at = now;
    }
    Ok((
        json!({"product": {"id": gid("Product", product)}, "productVariants": nodes, "userErrors": []}),
        vec![Changed::Product(product)],
    ))
}

fn customer_upsert(s: &mut ShopState, args: &Map<String, Value>, create: bool) -> Outcome {
    let input = obj(args, "input")?;
    let existing = if create {
        None
    } else {
        match input
            .get("id")
            .and_then(Value::as_str)
            .and_then(|g| parse_gid(g, "Customer"))
            .filter(|id| s.customers.contains_key(id))
        {
            Some(id) => Some(id),
            None => {
                return rejected(
                    "customer",
                    vec![user_error(
                        json!(["id"]),
                        "Customer does not exist",
                        "NOT_FOUND",
                    )],
                )
            }
        }
    };
    let email = str_field(input, "email");
    if let Some(e) = email {
        if !valid_email(e) {
            return rejected(
                "customer",
                vec![user_error(json!(["email"]), "Email is invalid", "INVALID")],
            );
        }
        if s.customers
            .values()
            .any(|c| c.email.as_deref() == Some(e) && Some(c.id) != existing)
        {
            return rejected(
                "customer",
                vec![user_error(
                    json!(["email"]),
                    "Email has already been taken",
                    "TAKEN",
                )],
            );
        }
    } else if create
        && str_field(input, "phone").is_none()
        && str_field(input, "lastName").is_none()
    {
        return rejected(
            "customer",
            vec![user_error(
                json!(["input"]),
                "A name, phone number or email address must be present",
                "BLANK",
            )],
        );
    }
    let now = ShopState::touch();
    let id = match existing {
        Some(id) => id,
        None => {
            let id = s.next_id();
            s.customers.insert(
                id,
                Customer {
                    id,
                    created_at: now.clone(),
                    ..Customer::default()
                },
            );
            id
        }
    };
    let Some(c) = s.customers.get_mut(&id) else {
        return rejected("customer", vec![]);
    };
    let set = |slot: &mut Option<String>, key: &str| {
        if let Some(v) = input.get(key) {
            *slot = v.as_str().map(str::to_string);
        }
    };
    set(&mut c.email, "email");
    set(&mut c.first_name, "firstName");
    set(&mut c.last_name, "lastName");
    set(&mut c.phone, "phone");
    set(&mut c.note, "note");
    if let Some(t) = input.get("tags").and_then(tags) {
        c.tags = t;
    }
    c.updated_at = now;
    let node = customer_node(c);
    s.count_write(gid("Customer", id));
    Ok((
        json!({"customer": node, "userErrors": []}),
        vec![Changed::Customer {
            id,
            created: create,
        }],
    ))
}

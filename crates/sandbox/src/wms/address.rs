//! The recipient address check of `POST /orders`, as a warehouse does it before it accepts
//! an order: a country it ships to, a postal code in that country's format, a first address
//! line and a city (and a state where the carriers need one). A refusal names the field.

use serde_json::{json, Map, Value};

/// Countries this warehouse ships to and their postal code formats: `9` a digit, `A` a
/// letter, anything else itself (checked after upper-casing and trimming).
const POSTAL_FORMATS: &[(&str, &[&str])] = &[
    ("AT", &["9999"]),
    ("BE", &["9999"]),
    ("CA", &["A9A 9A9"]),
    ("CH", &["9999"]),
    ("DE", &["99999"]),
    ("DK", &["9999"]),
    ("ES", &["99999"]),
    ("FR", &["99999"]),
    (
        "GB",
        &[
            "A9 9AA", "A99 9AA", "AA9 9AA", "AA99 9AA", "A9A 9AA", "AA9A 9AA",
        ],
    ),
    ("IT", &["99999"]),
    ("NL", &["9999 AA"]),
    ("US", &["99999", "99999-9999"]),
];

/// Where carriers need the state or province.
const NEEDS_REGION: &[&str] = &["US", "CA"];

fn fits(code: &str, format: &str) -> bool {
    code.len() == format.len()
        && code.chars().zip(format.chars()).all(|(c, f)| match f {
            '9' => c.is_ascii_digit(),
            'A' => c.is_ascii_uppercase(),
            other => c == other,
        })
}

/// Field errors of `recipient.address` (empty when it is deliverable). An order without an
/// address is refused only when `required` (the emulator's `require_address`).
pub(super) fn check(recipient: Option<&Value>, required: bool) -> Map<String, Value> {
    let mut errors = Map::new();
    let field = |name: &str| format!("recipient.address.{name}");
    let Some(address) = recipient
        .and_then(|r| r.get("address"))
        .filter(|a| !a.is_null())
    else {
        if required {
            errors.insert(field(""), json!(["is required"]));
        }
        return errors;
    };
    let text = |name: &str| {
        address
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    for required in ["address1", "city"] {
        if text(required).is_empty() {
            errors.insert(field(required), json!(["is required"]));
        }
    }
    let country = text("country").to_uppercase();
    let Some((_, formats)) = POSTAL_FORMATS.iter().find(|(c, _)| *c == country) else {
        let msg = if country.is_empty() {
            "is required".to_string()
        } else {
            format!("{country} is not a country this warehouse ships to")
        };
        errors.insert(field("country"), json!([msg]));
        return errors;
    };
    let zip = text("zip_code").to_uppercase();
    if zip.is_empty() {
        errors.insert(field("zip_code"), json!(["is required"]));
    } else if !formats.iter().any(|f| fits(&zip, f)) {
        errors.insert(
            field("zip_code"),
            json!([format!("{zip} is not a valid postal code for {country}")]),
        );
    }
    if NEEDS_REGION.contains(&country.as_str()) && text("state").is_empty() {
        errors.insert(
            field("state"),
            json!([format!("is required for {country}")]),
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(country: &str, zip: &str, city: &str) -> Value {
        json!({"address": {"address1": "1 Main St", "city": city, "state": "NY",
                           "zip_code": zip, "country": country}})
    }

    #[test]
    fn deliverable_addresses_pass() {
        for (c, z) in [
            ("US", "10001"),
            ("US", "10001-1234"),
            ("GB", "SW1A 1AA"),
            ("GB", "M1 1AE"),
            ("DE", "10115"),
            ("NL", "1012 AB"),
            ("CA", "K1A 0B1"),
            ("de", "80331"),
        ] {
            assert!(
                check(Some(&recipient(c, z, "Town")), true).is_empty(),
                "{c} {z}"
            );
        }
        assert!(check(None, false).is_empty());
        assert!(check(Some(&json!({"customer_id": "1"})), false).is_empty());
    }

    #[test]
    fn refusals_name_the_field() {
        let e = check(Some(&recipient("DE", "1011", "Berlin")), true);
        assert_eq!(
            e["recipient.address.zip_code"],
            json!(["1011 is not a valid postal code for DE"])
        );
        let e = check(Some(&recipient("ZZ", "1", "X")), true);
        assert!(e["recipient.address.country"][0]
            .as_str()
            .is_some_and(|m| m.contains("not a country")));
        let e = check(Some(&recipient("FR", "75001", " ")), true);
        assert_eq!(e["recipient.address.city"], json!(["is required"]));
        assert!(!check(None, true).is_empty());
    }
}

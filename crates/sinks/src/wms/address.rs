//! The ship-to address of a WMS release: kept from the order's events, sent as the
//! recipient's address (ShipBob's shape), and the WMS's refusal of it turned into a dead
//! letter's reason that names the field.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tributary_proto::retail::v1::Address;

use crate::ApplyError;

/// The address as the sink keeps it in the order's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(super) struct ShipTo {
    #[serde(default)]
    pub lines: Vec<String>,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub country: String,
}

impl ShipTo {
    /// None for an event that carries no address (a mapping that fills none, or columns
    /// that are all NULL leave an empty message).
    pub fn of(address: Option<&Address>) -> Option<ShipTo> {
        let a = address?;
        let lines: Vec<String> = a.lines.iter().map(|l| l.trim().to_string()).collect();
        let known = lines.iter().any(|l| !l.is_empty())
            || [&a.city, &a.postal_code, &a.region, &a.country]
                .iter()
                .any(|f| !f.trim().is_empty());
        known.then(|| ShipTo {
            lines,
            city: a.city.trim().to_string(),
            postal_code: a.postal_code.trim().to_string(),
            region: a.region.trim().to_string(),
            country: a.country.trim().to_uppercase(),
        })
    }

    /// `recipient.address` of `POST /orders`.
    pub fn json(&self) -> Value {
        let line = |i: usize| self.lines.get(i).cloned().unwrap_or_default();
        json!({
            "address1": line(0),
            "address2": line(1),
            "city": self.city,
            "state": self.region,
            "zip_code": self.postal_code,
            "country": self.country,
        })
    }
}

/// A WMS validation refusal (422 with `errors` per field) rewritten so that the dead
/// letter's reason says which field the warehouse refused and why; other errors unchanged.
pub(super) fn explain_refusal(order_id: &str, err: ApplyError) -> ApplyError {
    let ApplyError::Definite { reason, body } = err else {
        return err;
    };
    let fields = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b.get("errors").and_then(Value::as_object).cloned())
        .filter(|e| !e.is_empty());
    let Some(fields) = fields else {
        return ApplyError::Definite { reason, body };
    };
    let what = fields
        .iter()
        .map(|(field, msgs)| {
            let msgs = match msgs {
                Value::Array(m) => m
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
            };
            format!("{field} {msgs}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let hint = if fields.keys().any(|f| f.starts_with("recipient")) {
        " (correct the ship-to address in the system of record, then redrive)"
    } else {
        ""
    };
    // Keeps the status ("HTTP 422") the generic reason starts with.
    let status = reason.split(':').next().unwrap_or_default();
    ApplyError::Definite {
        reason: format!("WMS refused order {order_id} ({status}): {what}{hint}"),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_address_is_none_and_a_known_one_is_kept_trimmed() {
        assert_eq!(ShipTo::of(None), None);
        assert_eq!(ShipTo::of(Some(&Address::default())), None);
        let a = Address {
            lines: vec![" 1 Main St ".into()],
            city: "Leeds".into(),
            postal_code: "LS1 4AP".into(),
            country: "gb".into(),
            ..Default::default()
        };
        let s = ShipTo::of(Some(&a)).unwrap_or_default();
        assert_eq!(s.lines, vec!["1 Main St".to_string()]);
        assert_eq!(s.country, "GB");
        assert_eq!(s.json()["zip_code"], "LS1 4AP");
        assert_eq!(s.json()["address2"], "");
    }

    #[test]
    fn a_validation_refusal_names_the_field() {
        let body = r#"{"status":422,"errors":{"recipient.address.zip_code":["is not a valid postal code for DE"]}}"#;
        let err = explain_refusal("SO-W1", ApplyError::definite("HTTP 422: {…}", body));
        let ApplyError::Definite { reason, .. } = err else {
            panic!("still definite")
        };
        assert!(
            reason.contains("recipient.address.zip_code is not a valid postal code for DE"),
            "{reason}"
        );
        assert!(
            reason.starts_with("WMS refused order SO-W1 (HTTP 422): "),
            "{reason}"
        );
        let plain = explain_refusal("SO-W1", ApplyError::definite("HTTP 400: x", "not json"));
        assert!(matches!(plain, ApplyError::Definite { reason, .. } if reason == "HTTP 400: x"));
    }
}

//! Salesforce's error bodies as retry decisions: a record's own errors are definite (the
//! event is parked), the codes Salesforce documents as worth retrying are transient.

use serde_json::Value;

use crate::{http, ApplyError};

/// Per-record error codes Salesforce documents as worth retrying.
const TRANSIENT_RECORD_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_RUNNING_TOO_LONG",
    "SERVER_UNAVAILABLE",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
];

/// The first `errorCode` (single) or `statusCode` (collections) of an error body.
pub(super) fn error_code(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let first = v
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    first["errorCode"]
        .as_str()
        .or(first["statusCode"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The error list of a refused single-record request, if the body is one
/// (`[{message, errorCode, fields}]`).
pub(super) fn single_record_errors(body: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.as_array()?
        .first()?
        .get("errorCode")?
        .as_str()
        .is_some()
        .then_some(v)
}

pub(super) fn record_error(object: &str, errors: &Value, body: &str) -> ApplyError {
    let first = errors
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    let code = first["statusCode"]
        .as_str()
        .or(first["errorCode"].as_str())
        .unwrap_or("UNKNOWN");
    let message = first["message"].as_str().unwrap_or("record refused");
    let reason = format!("{object} {code}: {message}");
    if TRANSIENT_RECORD_CODES.contains(&code) {
        ApplyError::transient(reason)
    } else {
        ApplyError::definite(reason, http::truncate(body, 4000))
    }
}

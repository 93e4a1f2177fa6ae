//! sObject handlers: upsert by external id, sObject Collections upsert, read-back, SOQL subset.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::state::{Record, SfState, WriteRecord};
use super::{sf_error, Caller, Salesforce};
use crate::util::{now_rfc3339, query_pairs};

/// Most records in one sObject Collections request.
pub const MAX_COLLECTION: usize = 200;

/// One failed record: status, code, message, fields.
struct SfErr {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<String>,
}

impl SfErr {
    fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        fields: Vec<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields,
        }
    }
}

/// What an upsert did.
struct Applied {
    id: String,
    created: bool,
}

/// Validates and applies one upsert; `Err` leaves state unchanged.
fn upsert_one(
    s: &mut SfState,
    object: &str,
    field: &str,
    value: &str,
    body: &Map<String, Value>,
    update_only: bool,
    caller: &Caller,
) -> Result<Applied, SfErr> {
    if let Some(schema) = s.schemas.get(object) {
        // `Id` is always a key: the record's own id (an update by id).
        if field != "Id"
            && !schema.external_ids.is_empty()
            && !schema.external_ids.iter().any(|f| f == field)
        {
            return Err(SfErr::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
                vec![],
            ));
        }
    }
    if body.contains_key("Id") {
        return Err(SfErr::new(StatusCode::BAD_REQUEST, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", vec!["Id".into()]));
    }
    let unknown = s.unknown_fields(object, body);
    if let Some(f) = unknown.first() {
        return Err(SfErr::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!("No such column '{f}' on sobject of type {object}"),
            unknown.clone(),
        ));
    }
    // Email-typed fields (the standard `Email` of Contact, Lead, …) are validated like a
    // real org does, so that tests can provoke a per-record refusal from the data alone.
    if let Some((f, bad)) = body.iter().find_map(|(k, v)| match v {
        Value::String(text) if k == "Email" && !valid_email(text) => Some((k, text)),
        _ => None,
    }) {
        return Err(SfErr::new(
            StatusCode::BAD_REQUEST,
            "INVALID_EMAIL_ADDRESS",
            format!("{f}: invalid email address: {bad}"),
            vec![f.clone()],
        ));
    }
    let matches = s.find(object, field, value);
    if matches.len() > 1 {
        return Err(SfErr::new(
            StatusCode::MULTIPLE_CHOICES,
            "MULTIPLE_CHOICES",
            matches.join(","),
            vec![],
        ));
    }
    let now = now_rfc3339();
    let origin = format!(
        "com/salesforce/api/rest/{};client={}",
        caller.version_text,
        caller.client.as_deref().unwrap_or("")
    );
    let fields: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| *k != "attributes")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let written = fields.clone();
    let (id, created, changed, changed_fields) = match matches.first() {
        Some(id) => {
            if !s.records.contains_key(id) {
                return Err(SfErr::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                    vec![],
                ));
            }
            let changed_fields: Vec<String> = s.records.get(id).map_or_else(Vec::new, |rec| {
                fields
                    .iter()
                    .filter(|(k, v)| rec.fields.get(*k) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect()
            });
            let changed = !changed_fields.is_empty();
            // Only the values that change leave and re-enter the lookup index: re-indexing
            // every field of every upserted record was most of the emulator's CPU time.
            let mut touched: Vec<&str> = changed_fields.iter().map(String::as_str).collect();
            touched.extend(["LastModifiedDate", "SystemModstamp"]);
            s.unindex_fields(id, &touched);
            let Some(rec) = s.records.get_mut(id) else {
                unreachable!("checked above");
            };
            for (k, v) in fields {
                rec.fields.insert(k, v);
            }
            rec.fields
                .insert("LastModifiedDate".into(), Value::String(now.clone()));
            rec.fields
                .insert("SystemModstamp".into(), Value::String(now));
            rec.last_change_origin = Some(origin.clone());
            s.index_fields(id, &touched);
            (id.clone(), false, changed, changed_fields)
        }
        None => {
            if update_only {
                return Err(SfErr::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                    vec![],
                ));
            }
            let required: Vec<String> = s
                .schemas
                .get(object)
                .map(|sc| sc.required.clone())
                .unwrap_or_default();
            let missing: Vec<String> = required
                .into_iter()
                .filter(|r| r != field && fields.get(r).is_none_or(Value::is_null))
                .collect();
            if !missing.is_empty() {
                return Err(SfErr::new(
                    StatusCode::BAD_REQUEST,
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", missing.join(", ")),
                    missing,
                ));
            }
            let id = s.new_id(object);
            let mut changed_fields: Vec<String> = fields.keys().cloned().collect();
            changed_fields.push(field.to_string());
            let mut all = fields;
            all.insert(field.to_string(), Value::String(value.to_string()));
            all.insert("Id".into(), Value::String(id.clone()));
            all.insert("CreatedDate".into(), Value::String(now.clone()));
            all.insert("LastModifiedDate".into(), Value::String(now.clone()));
            all.insert("SystemModstamp".into(), Value::String(now));
            s.records.insert(
                id.clone(),
                Record {
                    id: id.clone(),
                    object: object.to_string(),
                    fields: all,
                    last_change_origin: Some(origin.clone()),
                },
            );
            s.index_record(&id);
            (id, true, true, changed_fields)
        }
    };
    s.writes.push(WriteRecord {
        object: object.to_string(),
        id: id.clone(),
        external_id_field: field.to_string(),
        external_id: value.to_string(),
        created,
        changed,
        fields: written,
        client: caller.client.clone(),
        change_origin: origin,
        changed_fields,
        at: SystemTime::now(),
    });
    Ok(Applied { id, created })
}

/// Salesforce's check of an Email field, simplified: one `@`, a non-empty local part and
/// a domain with a dot, no spaces.
fn valid_email(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.contains(char::is_whitespace)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "Expected a JSON object",
            &[],
        )),
        Err(e) => Err(sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            &format!("Unexpected character: {e}"),
            &[],
        )),
    }
}

pub(super) async fn upsert(
    State(sf): State<Salesforce>,
    Path((version, object, field, value)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let update_only = query_pairs(uri.query())
        .iter()
        .any(|(k, v)| k == "updateOnly" && v == "true");
    // Parsed before the state lock is taken; a malformed body is still answered only after
    // the session and version checks, as before.
    let parsed = parse_object(&body);
    sf.api(&headers, &version, |s, caller| {
        let body = match parsed {
            Ok(b) => b,
            Err(r) => return r,
        };
        match upsert_one(s, &object, &field, &value, &body, update_only, caller) {
            Ok(a) if a.created => (
                StatusCode::CREATED,
                Json(json!({"id": a.id, "success": true, "errors": [], "created": true})),
            )
                .into_response(),
            Ok(a) if caller.version >= 46.0 => {
                Json(json!({"id": a.id, "success": true, "errors": [], "created": false}))
                    .into_response()
            }
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) if e.status == StatusCode::MULTIPLE_CHOICES => {
                let urls: Vec<String> = e
                    .message
                    .split(',')
                    .map(|id| format!("/services/data/{version}/sobjects/{object}/{id}"))
                    .collect();
                (StatusCode::MULTIPLE_CHOICES, Json(json!(urls))).into_response()
            }
            Err(e) => sf_error(e.status, e.code, &e.message, &e.fields),
        }
    })
}

pub(super) async fn collection_upsert(
    State(sf): State<Salesforce>,
    Path((version, object, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Parsed before the state lock is taken (a 200-record body is most of the request's
    // work), answered in the same order as before.
    let parsed = parse_object(&body);
    sf.api(&headers, &version, |s, caller| {
        let body = match parsed {
            Ok(b) => b,
            Err(r) => return r,
        };
        let all_or_none = body.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
        let Some(records) = body.get("records").and_then(Value::as_array) else {
            return sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "records is required", &[]);
        };
        if records.len() > MAX_COLLECTION {
            return sf_error(StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT", "Maximum number of records (200) exceeded", &[]);
        }
        let snapshot = all_or_none.then(|| (s.records.clone(), s.writes.len()));
        let mut results: Vec<Result<Applied, SfErr>> = Vec::new();
        for rec in records {
            let result = (|| {
                let rec = rec.as_object().ok_or_else(|| SfErr::new(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "Expected a record object", vec![]))?;
                let ty = rec.get("attributes").and_then(|a| a.get("type")).and_then(Value::as_str);
                if ty != Some(object.as_str()) {
                    return Err(SfErr::new(StatusCode::BAD_REQUEST, "INVALID_TYPE", format!("Record type must be {object}"), vec![]));
                }
                let value = match rec.get(&field) {
                    Some(Value::String(v)) if !v.is_empty() => v.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(SfErr::new(StatusCode::BAD_REQUEST, "MISSING_ARGUMENT", format!("{field} not specified"), vec![field.clone()])),
                };
                let mut fields = rec.clone();
                fields.remove("attributes");
                upsert_one(s, &object, &field, &value, &fields, false, caller).map_err(|e| {
                    if e.status == StatusCode::MULTIPLE_CHOICES {
                        SfErr::new(StatusCode::BAD_REQUEST, "DUPLICATE_EXTERNAL_ID", format!("{field}: more than one record found for external id field: {}", e.message), vec![field.clone()])
                    } else {
                        e
                    }
                })
            })();
            results.push(result);
        }
        let failed = results.iter().any(Result::is_err);
        if let (true, Some((records, writes))) = (failed, snapshot) {
            s.records = records;
            s.rebuild_index();
            s.writes.truncate(writes);
        }
        let rolled_back = failed && all_or_none;
        let out: Vec<Value> = results.iter().map(|r| match r {
            Err(e) => json!({"success": false, "errors": [{"statusCode": e.code, "message": e.message, "fields": e.fields}]}),
            Ok(_) if rolled_back => json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]}),
            Ok(a) => json!({"id": a.id, "success": true, "errors": [], "created": a.created}),
        }).collect();
        Json(Value::Array(out)).into_response()
    })
}

fn render(r: &Record, version: &str) -> Value {
    let mut m = r.fields.clone();
    m.insert("attributes".into(), json!({"type": r.object, "url": format!("/services/data/{version}/sobjects/{}/{}", r.object, r.id)}));
    Value::Object(m)
}

fn not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
        &[],
    )
}

/// `PATCH /sobjects/<Object>/<id>`: an update of an existing record (204), `NOT_FOUND` for
/// an id the org does not have as that object.
pub(super) async fn update_by_id(
    State(sf): State<Salesforce>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = parse_object(&body);
    sf.api(&headers, &version, |s, caller| {
        let body = match parsed {
            Ok(b) => b,
            Err(r) => return r,
        };
        if s.records.get(&id).is_none_or(|r| r.object != object) {
            return not_found();
        }
        match upsert_one(s, &object, "Id", &id, &body, true, caller) {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => sf_error(e.status, e.code, &e.message, &e.fields),
        }
    })
}

pub(super) async fn get_by_id(
    State(sf): State<Salesforce>,
    Path((version, object, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    sf.api(&headers, &version, |s, _| {
        match s.records.get(&id).filter(|r| r.object == object) {
            Some(r) => Json(render(r, &version)).into_response(),
            None => not_found(),
        }
    })
}

pub(super) async fn get_by_external_id(
    State(sf): State<Salesforce>,
    Path((version, object, field, value)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    sf.api(&headers, &version, |s, _| {
        match s
            .find(&object, &field, &value)
            .first()
            .and_then(|id| s.records.get(id))
        {
            Some(r) => Json(render(r, &version)).into_response(),
            None => not_found(),
        }
    })
}

pub(super) async fn limits(
    State(sf): State<Salesforce>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, limit) = sf.api_usage();
    sf.api(&headers, &version, |s, _| Json(json!({"DailyApiRequests": {"Max": limit, "Remaining": limit.saturating_sub(s.api_used)}})).into_response())
}

pub(super) async fn query(
    State(sf): State<Salesforce>,
    Path(version): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let q = query_pairs(uri.query())
        .into_iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v)
        .unwrap_or_default();
    sf.api(&headers, &version, |s, _| match run_soql(s, &q, &version) {
        Ok(records) => Json(json!({"totalSize": records.len(), "done": true, "records": records}))
            .into_response(),
        Err(msg) => sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", &msg, &[]),
    })
}

/// Finds `kw` (upper-case, surrounded by spaces) in `q` case-insensitively.
fn find_kw(q: &str, kw: &str) -> Option<usize> {
    q.to_ascii_uppercase().find(kw)
}

/// `SELECT f, … FROM Obj [WHERE a = 'x' AND b > 'y' …] [ORDER BY …] [LIMIT n]`.
fn run_soql(s: &SfState, q: &str, version: &str) -> Result<Vec<Value>, String> {
    let q = q.trim();
    if !q.to_ascii_uppercase().starts_with("SELECT ") {
        return Err("unexpected token: expected SELECT".into());
    }
    let from = find_kw(q, " FROM ").ok_or("unexpected token: expected FROM")?;
    let fields: Vec<String> = q[7..from]
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let rest = &q[from + 6..];
    let object = rest
        .split_whitespace()
        .next()
        .ok_or("sObject type expected")?
        .to_string();
    let rest = rest[object.len()..].trim();
    let end = [find_kw(rest, "ORDER BY"), find_kw(rest, "LIMIT ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    let limit = find_kw(rest, "LIMIT ")
        .map(|i| rest[i + 6..].trim().parse::<usize>())
        .transpose()
        .map_err(|_| "bad LIMIT")?;
    let mut conditions = Vec::new();
    if let Some(where_at) = find_kw(&rest[..end], "WHERE ") {
        let clause = &rest[where_at + 6..end];
        let upper = clause.to_ascii_uppercase();
        let mut start = 0;
        let mut parts = Vec::new();
        while let Some(i) = upper[start..].find(" AND ") {
            parts.push(&clause[start..start + i]);
            start += i + 5;
        }
        parts.push(&clause[start..]);
        for p in parts {
            let op = ["!=", ">=", "<=", "=", ">", "<"]
                .into_iter()
                .find(|op| p.contains(op))
                .ok_or_else(|| format!("unexpected condition '{p}'"))?;
            let (f, v) = p.split_once(op).ok_or("bad condition")?;
            conditions.push((
                f.trim().to_string(),
                op,
                v.trim().trim_matches('\'').to_string(),
            ));
        }
    }
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut out = Vec::new();
    for r in s.records.values().filter(|r| r.object == object) {
        let ok = conditions.iter().all(|(f, op, v)| {
            let have = text(r.fields.get(f));
            match *op {
                "=" => have == *v,
                "!=" => have != *v,
                ">" => have > *v,
                "<" => have < *v,
                ">=" => have >= *v,
                _ => have <= *v,
            }
        });
        if ok {
            let mut m = Map::new();
            m.insert("attributes".into(), json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{}", r.id)}));
            for f in &fields {
                m.insert(f.clone(), r.fields.get(f).cloned().unwrap_or(Value::Null));
            }
            out.push(Value::Object(m));
        }
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

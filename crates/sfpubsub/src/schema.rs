//! The Avro shape of a Change Data Capture event as the Pub/Sub API serves it: a record whose
//! field 0 is `ChangeEventHeader`, then every field of the object as a `["null", T]` union
//! (Pub/Sub sends all fields, unchanged ones null; what changed is in the header's bitmaps).
//! The emulator writes with [`encode`]; the source reads with [`decode`] against the schema
//! fetched by `GetSchema`, which is the only way to turn bitmap positions into names.

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use serde_json::{json, Map, Value};

use crate::{bitmap, AvroError};

/// Change types of the `ChangeType` enum, in symbol order.
pub const CHANGE_TYPES: [&str; 10] = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
];

/// Fields whose values are epoch milliseconds (`long`), as Salesforce's datetime fields are.
fn is_datetime(field: &str) -> bool {
    field.ends_with("Date") || field == "SystemModstamp"
}

/// The schema JSON of `<object>ChangeEvent` with these data fields (in this order, after the
/// header at position 0).
pub fn change_event_schema(object: &str, fields: &[&str]) -> String {
    let mut all = vec![json!({"name": "ChangeEventHeader", "type": {
    "type": "record", "name": "ChangeEventHeader", "namespace": "com.salesforce.eventbus.protobuf",
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "symbols": CHANGE_TYPES}},
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ]}})];
    for f in fields {
        let t = if is_datetime(f) { "long" } else { "string" };
        all.push(json!({"name": f, "type": ["null", t], "default": null}));
    }
    json!({"type": "record", "name": format!("{object}ChangeEvent"),
           "namespace": "com.sforce.eventbus", "fields": all})
    .to_string()
}

/// A stable id for a schema text (Salesforce's are opaque strings too): FNV-1a, 64 bits.
pub fn schema_id(schema_json: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in schema_json.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The header of one change event, bitmaps still encoded.
#[derive(Clone, Debug, Default)]
pub struct ChangeHeader {
    pub entity_name: String,
    pub record_ids: Vec<String>,
    pub change_type: String,
    pub change_origin: String,
    pub transaction_key: String,
    pub sequence_number: i32,
    pub commit_timestamp: i64,
    pub commit_number: i64,
    pub commit_user: String,
    pub nulled_fields: Vec<String>,
    pub diff_fields: Vec<String>,
    pub changed_fields: Vec<String>,
}

fn strings(v: &[String]) -> Avro {
    Avro::Array(v.iter().cloned().map(Avro::String).collect())
}

/// Top-level field names of a record schema, in order.
pub fn field_names(schema: &Schema) -> Vec<String> {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        _ => vec![],
    }
}

fn nested_names(schema: &Schema, pos: usize) -> Vec<String> {
    let Schema::Record(r) = schema else {
        return vec![];
    };
    let Some(f) = r.fields.get(pos) else {
        return vec![];
    };
    let inner = match &f.schema {
        Schema::Union(u) => u.variants().iter().find(|v| matches!(v, Schema::Record(_))),
        other => Some(other),
    };
    inner.map(field_names).unwrap_or_default()
}

/// Encodes one change event; `values` maps field names to JSON (strings, numbers; datetime
/// fields as epoch ms). Fields absent from `values` are null.
pub fn encode(
    schema: &Schema,
    header: &ChangeHeader,
    values: &Map<String, Value>,
) -> Result<Vec<u8>, AvroError> {
    let ct = CHANGE_TYPES
        .iter()
        .position(|c| *c == header.change_type)
        .ok_or_else(|| AvroError::Payload(format!("change type {}", header.change_type)))?;
    let head = Avro::Record(vec![
        (
            "entityName".into(),
            Avro::String(header.entity_name.clone()),
        ),
        ("recordIds".into(), strings(&header.record_ids)),
        (
            "changeType".into(),
            Avro::Enum(ct as u32, header.change_type.clone()),
        ),
        (
            "changeOrigin".into(),
            Avro::String(header.change_origin.clone()),
        ),
        (
            "transactionKey".into(),
            Avro::String(header.transaction_key.clone()),
        ),
        ("sequenceNumber".into(), Avro::Int(header.sequence_number)),
        (
            "commitTimestamp".into(),
            Avro::Long(header.commit_timestamp),
        ),
        ("commitNumber".into(), Avro::Long(header.commit_number)),
        (
            "commitUser".into(),
            Avro::String(header.commit_user.clone()),
        ),
        ("nulledFields".into(), strings(&header.nulled_fields)),
        ("diffFields".into(), strings(&header.diff_fields)),
        ("changedFields".into(), strings(&header.changed_fields)),
    ]);
    let mut record = vec![("ChangeEventHeader".to_string(), head)];
    for name in field_names(schema).into_iter().skip(1) {
        let v = match values.get(&name) {
            None | Some(Value::Null) => Avro::Union(0, Box::new(Avro::Null)),
            Some(v) if is_datetime(&name) => {
                let ms = v.as_i64().unwrap_or_default();
                Avro::Union(1, Box::new(Avro::Long(ms)))
            }
            Some(Value::String(s)) => Avro::Union(1, Box::new(Avro::String(s.clone()))),
            Some(other) => Avro::Union(1, Box::new(Avro::String(other.to_string()))),
        };
        record.push((name, v));
    }
    apache_avro::to_avro_datum(schema, Avro::Record(record))
        .map_err(|e| AvroError::Payload(e.to_string()))
}

/// A decoded change event: the header with bitmaps turned into field names, and the non-null
/// data fields.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub header: Map<String, Value>,
    pub fields: Map<String, Value>,
}

impl Decoded {
    pub fn header_str(&self, key: &str) -> &str {
        self.header.get(key).and_then(Value::as_str).unwrap_or("")
    }

    pub fn record_ids(&self) -> Vec<String> {
        self.header
            .get("recordIds")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn parse_schema(json: &str) -> Result<Schema, AvroError> {
    Schema::parse_str(json).map_err(|e| AvroError::Schema(e.to_string()))
}

/// Decodes a bare Avro datum written with `schema` and names the bitmap fields.
pub fn decode(schema: &Schema, payload: &[u8]) -> Result<Decoded, AvroError> {
    crate::datum::check(schema, payload)?;
    let mut reader = payload;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None)
        .map_err(|e| AvroError::Payload(e.to_string()))?;
    let json = Value::try_from(value).map_err(|e| AvroError::Payload(e.to_string()))?;
    let Value::Object(mut all) = json else {
        return Err(AvroError::Payload("not a record".into()));
    };
    let mut header = match all.remove("ChangeEventHeader") {
        Some(Value::Object(h)) => h,
        _ => return Err(AvroError::Payload("no ChangeEventHeader".into())),
    };
    let names = field_names(schema);
    for key in ["changedFields", "nulledFields", "diffFields"] {
        let bitmaps: Vec<String> = header
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let decoded = bitmap::decode(&bitmaps, &names, |p| nested_names(schema, p))?;
        header.insert(key.into(), json!(decoded));
    }
    let fields = all.into_iter().filter(|(_, v)| !v.is_null()).collect();
    Ok(Decoded { header, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_with_named_bitmaps() -> Result<(), AvroError> {
        let text = change_event_schema("Account", &["Name", "Phone", "LastModifiedDate"]);
        let schema = parse_schema(&text)?;
        let header = ChangeHeader {
            entity_name: "Account".into(),
            record_ids: vec!["001000000000001AAA".into()],
            change_type: "UPDATE".into(),
            changed_fields: vec![bitmap::encode(&[2, 3])],
            nulled_fields: vec![bitmap::encode(&[1])],
            ..Default::default()
        };
        let mut values = Map::new();
        values.insert("Phone".into(), json!("555"));
        values.insert("LastModifiedDate".into(), json!(1_700_000_000_000i64));
        let bytes = encode(&schema, &header, &values)?;
        let d = decode(&schema, &bytes)?;
        assert_eq!(
            d.header["changedFields"],
            json!(["Phone", "LastModifiedDate"])
        );
        assert_eq!(d.header["nulledFields"], json!(["Name"]));
        assert_eq!(d.header_str("changeType"), "UPDATE");
        assert_eq!(d.fields.get("Phone"), Some(&json!("555")));
        assert!(!d.fields.contains_key("Name"));
        Ok(())
    }
}

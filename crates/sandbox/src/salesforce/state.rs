//! Salesforce emulator state: records by id, the write journal, tokens, the API counter.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use serde_json::{Map, Value};

/// Optional strictness for one sObject. Objects without a schema accept any field.
#[derive(Clone, Debug, Default)]
pub struct SObjectSchema {
    pub name: String,
    /// Known fields; `None` accepts any (besides `Id`, which is never writable).
    pub fields: Option<Vec<String>>,
    /// Fields a create must carry (`REQUIRED_FIELD_MISSING` otherwise).
    pub required: Vec<String>,
    /// Fields usable as external ids in upserts; empty accepts any field.
    pub external_ids: Vec<String>,
}

/// One stored record.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub object: String,
    pub fields: Map<String, Value>,
    /// `com/salesforce/api/rest/<ver>;client=<id>` of the last write, as a CDC event would carry.
    pub last_change_origin: Option<String>,
}

/// One applied write (single or collection upsert).
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub object: String,
    pub id: String,
    pub external_id_field: String,
    pub external_id: String,
    pub created: bool,
    /// Did any field value change (a replayed upsert with the same values changes nothing).
    pub changed: bool,
    /// The field values this write sent (without `attributes`), so that tests can check the
    /// order in which one record's values were written.
    pub fields: Map<String, Value>,
    /// `client=` of the `Sforce-Call-Options` header.
    pub client: Option<String>,
    pub change_origin: String,
    /// Fields whose value the write set or changed (all fields on a create).
    pub changed_fields: Vec<String>,
    pub at: SystemTime,
}

#[derive(Default)]
pub struct SfState {
    next_id: u64,
    pub records: BTreeMap<String, Record>,
    pub writes: Vec<WriteRecord>,
    pub schemas: HashMap<String, SObjectSchema>,
    pub(crate) tokens: HashMap<String, Instant>,
    pub tokens_issued: u64,
    /// API requests counted in the rolling window.
    pub api_used: u64,
    /// Change Data Capture events, served by the Pub/Sub API emulator.
    pub(crate) cdc: super::cdc::CdcLog,
}

fn key_prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "Order" => "801",
        "Case" => "500",
        "Opportunity" => "006",
        "Lead" => "00Q",
        "Product2" => "01t",
        _ => "a00",
    }
}

impl SfState {
    /// A new 18-character id with the object's key prefix.
    pub(crate) fn new_id(&mut self, object: &str) -> String {
        self.next_id += 1;
        format!("{}{:012}AAA", key_prefix(object), self.next_id)
    }

    /// Ids of the records of `object` whose `field` equals `value` (string comparison).
    pub fn find(&self, object: &str, field: &str, value: &str) -> Vec<String> {
        self.records
            .values()
            .filter(|r| r.object == object)
            .filter(|r| match r.fields.get(field) {
                Some(Value::String(s)) => s == value,
                Some(Value::Null) | None => false,
                Some(v) => *v == value,
            })
            .map(|r| r.id.clone())
            .collect()
    }

    /// Field names the schema does not know, if the object has a field list.
    pub(crate) fn unknown_fields(&self, object: &str, body: &Map<String, Value>) -> Vec<String> {
        let Some(known) = self.schemas.get(object).and_then(|s| s.fields.as_ref()) else {
            return vec![];
        };
        body.keys()
            .filter(|k| *k != "attributes" && !known.contains(k))
            .cloned()
            .collect()
    }
}

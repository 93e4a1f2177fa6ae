//! Salesforce emulator state: records by id, the write journal, tokens, the API counter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    pub(crate) cdc: super::cdc_log::CdcLog,
    /// REST writes log no change events ([`super::Salesforce::set_rest_change_events`]).
    pub(crate) rest_change_events_off: bool,
    /// (object, field, string value) → ids, for [`SfState::find`] (an upsert looks its
    /// external id up; a scan of every record made the emulator the bottleneck of the sink
    /// benchmark). Kept by the emulator's own writes; rebuilt when the record count shows
    /// `records` was changed directly; call [`SfState::rebuild_index`] after editing a
    /// record's fields directly.
    index: HashMap<(String, String, String), BTreeSet<String>>,
    indexed: usize,
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
    /// Ids of the records of `object` whose `field` is the string `value`, in id order.
    pub fn find(&mut self, object: &str, field: &str, value: &str) -> Vec<String> {
        if self.indexed != self.records.len() {
            self.rebuild_index();
        }
        // A record edited in place (the CDC test API) may have left a stale entry: the
        // record's current value decides.
        let records = &self.records;
        self.index
            .get(&(object.to_owned(), field.to_owned(), value.to_owned()))
            .map(|ids| {
                ids.iter()
                    .filter(|id| {
                        records.get(*id).is_some_and(|r| {
                            r.fields.get(field).and_then(|v| v.as_str()) == Some(value)
                        })
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Recomputes the lookup index from `records`.
    pub fn rebuild_index(&mut self) {
        self.index.clear();
        self.indexed = 0;
        let ids: Vec<String> = self.records.keys().cloned().collect();
        for id in ids {
            self.index_record(&id);
        }
    }

    /// Adds a record's string fields to the index (after it was inserted or changed).
    pub(crate) fn index_record(&mut self, id: &str) {
        let Some(r) = self.records.get(id) else {
            return;
        };
        for (k, v) in &r.fields {
            if let Value::String(v) = v {
                self.index
                    .entry((r.object.clone(), k.clone(), v.clone()))
                    .or_default()
                    .insert(id.to_owned());
            }
        }
        self.indexed += 1;
    }

    /// Removes the current values of `fields` of an indexed record from the index (before
    /// they change); [`SfState::index_fields`] adds the new ones.
    pub(crate) fn unindex_fields(&mut self, id: &str, fields: &[&str]) {
        let Some(r) = self.records.get(id) else {
            return;
        };
        for (k, v) in &r.fields {
            if let Value::String(v) = v {
                if !fields.contains(&k.as_str()) {
                    continue;
                }
                let key = (r.object.clone(), k.clone(), v.clone());
                if let Some(ids) = self.index.get_mut(&key) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.index.remove(&key);
                    }
                }
            }
        }
    }

    /// Adds the current values of `fields` of an indexed record to the index.
    pub(crate) fn index_fields(&mut self, id: &str, fields: &[&str]) {
        let Some(r) = self.records.get(id) else {
            return;
        };
        for (k, v) in &r.fields {
            if let Value::String(v) = v {
                if fields.contains(&k.as_str()) {
                    self.index
                        .entry((r.object.clone(), k.clone(), v.clone()))
                        .or_default()
                        .insert(id.to_owned());
                }
            }
        }
    }

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

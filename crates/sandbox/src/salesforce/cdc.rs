//! Change Data Capture log of the Salesforce emulator: one append-only log of Avro-encoded
//! change events for the objects selected for CDC (Account, Contact, Order), read by the
//! Pub/Sub API server ([`super::pubsub`]) as `/data/ChangeEvents` or per object.
//!
//! Changes come from REST writes (every upsert that changed a record, one transaction per
//! request, `changeOrigin` from `Sforce-Call-Options`) and from the test API below
//! (creates, updates, deletes, gap and overflow events). Replay ids are 8 opaque bytes of an
//! increasing, non-contiguous counter; events older than the retention floor are gone.

use serde_json::{Map, Value};
use tributary_sfpubsub::OVERFLOW_RECORD_ID;

pub use super::cdc_log::{CdcEvent, Change};
use super::state::{Record, SfState};
use super::Salesforce;

/// The CDC values of a record: the event's fields that the record has, datetimes as epoch ms.
fn values_of(fields: &Map<String, Value>, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// CDC events for the REST writes `writes[from..]` of one request (one transaction).
pub(crate) fn emit_writes(s: &mut SfState, from: usize) {
    if s.rest_change_events_off {
        return;
    }
    let mut changes = Vec::new();
    for w in s.writes.iter().skip(from).filter(|w| w.changed) {
        if !s.cdc.schemas.contains_key(&w.object) {
            continue;
        }
        let Some(rec) = s.records.get(&w.id) else {
            continue;
        };
        let mut changed = w.changed_fields.clone();
        changed.push("LastModifiedDate".into());
        if w.created {
            changed.push("CreatedDate".into());
        }
        let values = if w.created {
            values_of(&rec.fields, |_| true)
        } else {
            values_of(&rec.fields, |k| changed.iter().any(|c| c == k))
        };
        changes.push(Change {
            object: w.object.clone(),
            change_type: if w.created { "CREATE" } else { "UPDATE" },
            record_ids: vec![w.id.clone()],
            values,
            changed,
            nulled: vec![],
            origin: w.change_origin.clone(),
        });
    }
    if !changes.is_empty() {
        s.cdc.append(changes);
    }
}

/// Test API: changes that did not come through REST (UI edits, Apex, data loads).
impl Salesforce {
    /// Creates a record and logs its CREATE event; returns the new id.
    pub fn cdc_create(&self, object: &str, fields: Map<String, Value>) -> String {
        self.with_state(|s| {
            let id = s.new_id(object);
            let mut all = fields;
            all.insert("Id".into(), Value::String(id.clone()));
            all.insert("CreatedDate".into(), Value::Null);
            all.insert("LastModifiedDate".into(), Value::Null);
            let changed: Vec<String> = all.keys().filter(|k| *k != "Id").cloned().collect();
            s.records.insert(
                id.clone(),
                Record {
                    id: id.clone(),
                    object: object.into(),
                    fields: {
                        let mut f = all.clone();
                        f.insert("SystemModstamp".into(), modstamp());
                        f
                    },
                    last_change_origin: None,
                },
            );
            s.cdc.append(vec![Change {
                object: object.into(),
                change_type: "CREATE",
                record_ids: vec![id.clone()],
                values: all,
                changed,
                nulled: vec![],
                origin: String::new(),
            }]);
            id
        })
    }

    /// Updates fields of a record (null values blank them) and logs an UPDATE event.
    pub fn cdc_update(&self, id: &str, fields: Map<String, Value>) -> bool {
        self.with_state(|s| {
            let Some(rec) = s.records.get_mut(id) else {
                return false;
            };
            let object = rec.object.clone();
            let mut changed: Vec<String> = fields.keys().cloned().collect();
            let nulled: Vec<String> = fields
                .iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect();
            for (k, v) in &fields {
                rec.fields.insert(k.clone(), v.clone());
            }
            rec.fields.insert("SystemModstamp".into(), modstamp());
            changed.push("LastModifiedDate".into());
            let mut values = fields;
            values.insert("LastModifiedDate".into(), Value::Null);
            s.cdc.append(vec![Change {
                object,
                change_type: "UPDATE",
                record_ids: vec![id.to_string()],
                values,
                changed,
                nulled,
                origin: String::new(),
            }]);
            true
        })
    }

    /// The same change to several records in one event (`recordIds` of all of them), as
    /// Salesforce merges identical changes of one transaction.
    pub fn cdc_update_merged(&self, ids: &[String], fields: Map<String, Value>) {
        self.with_state(|s| {
            let mut object = None;
            for id in ids {
                if let Some(rec) = s.records.get_mut(id) {
                    for (k, v) in &fields {
                        rec.fields.insert(k.clone(), v.clone());
                    }
                    rec.fields.insert("SystemModstamp".into(), modstamp());
                    object = Some(rec.object.clone());
                }
            }
            let Some(object) = object else {
                return;
            };
            let mut changed: Vec<String> = fields.keys().cloned().collect();
            changed.push("LastModifiedDate".into());
            let mut values = fields;
            values.insert("LastModifiedDate".into(), Value::Null);
            s.cdc.append(vec![Change {
                object,
                change_type: "UPDATE",
                record_ids: ids.to_vec(),
                values,
                changed,
                nulled: vec![],
                origin: String::new(),
            }]);
        });
    }

    /// Deletes a record and logs a DELETE event.
    pub fn cdc_delete(&self, id: &str) -> bool {
        self.with_state(|s| {
            let Some(rec) = s.records.remove(id) else {
                return false;
            };
            s.cdc.append(vec![Change {
                object: rec.object,
                change_type: "DELETE",
                record_ids: vec![id.to_string()],
                values: Map::new(),
                changed: vec![],
                nulled: vec![],
                origin: String::new(),
            }]);
            true
        })
    }

    /// Changes the record's fields *without* a normal event and logs a gap event instead
    /// (`GAP_UPDATE` etc.: header only), as Salesforce does when it cannot build the event.
    pub fn cdc_gap(&self, change_type: &'static str, id: &str, fields: Map<String, Value>) {
        self.with_state(|s| {
            let Some(rec) = s.records.get_mut(id) else {
                return;
            };
            for (k, v) in fields {
                rec.fields.insert(k, v);
            }
            rec.fields.insert("SystemModstamp".into(), modstamp());
            let object = rec.object.clone();
            s.cdc.append(vec![Change {
                object,
                change_type,
                record_ids: vec![id.to_string()],
                values: Map::new(),
                changed: vec![],
                nulled: vec![],
                origin: String::new(),
            }]);
        });
    }

    /// Logs a `GAP_OVERFLOW` event for `object` (a transaction of more than 100,000 changes).
    pub fn cdc_overflow(&self, object: &str) {
        self.with_state(|s| {
            s.cdc.append(vec![Change {
                object: object.into(),
                change_type: "GAP_OVERFLOW",
                record_ids: vec![OVERFLOW_RECORD_ID.into()],
                values: Map::new(),
                changed: vec![],
                nulled: vec![],
                origin: String::new(),
            }]);
        });
    }

    /// Every logged event still retained, in replay order.
    pub fn cdc_events(&self) -> Vec<CdcEvent> {
        self.with_state(|s| s.cdc.events.iter().cloned().collect())
    }

    pub fn cdc_event_count(&self) -> usize {
        self.with_state(|s| s.cdc.events.len())
    }

    /// Drops every event logged so far out of the retention window (what 72 h do).
    pub fn cdc_expire_all(&self) {
        self.with_state(|s| {
            s.cdc.expired_through = s.cdc.latest_replay();
            s.cdc.events.clear();
        });
    }

    /// Subscribe streams opened so far.
    pub fn cdc_subscribe_count(&self) -> u64 {
        self.with_state(|s| s.cdc.subscribes)
    }

    /// Events sent over all Subscribe streams so far (redeliveries included).
    pub fn cdc_delivered(&self) -> u64 {
        self.with_state(|s| s.cdc.delivered)
    }

    /// Drops the events up to and including `replay_id` out of the retention window.
    pub fn cdc_expire_through(&self, replay_id: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(replay_id) else {
            return;
        };
        let through = u64::from_be_bytes(bytes);
        self.with_state(|s| {
            while s.cdc.events.front().is_some_and(|e| e.replay <= through) {
                s.cdc.events.pop_front();
            }
            s.cdc.expired_through = s.cdc.expired_through.max(through);
        });
    }

    /// Ends every open Subscribe stream with UNAVAILABLE (a server-side reset).
    pub fn cdc_reset_streams(&self) {
        self.with_state(|s| s.cdc.resets.send_modify(|n| *n += 1));
    }
}

/// `SystemModstamp` of a record written now (what an overflow read-back queries).
fn modstamp() -> Value {
    Value::String(crate::util::now_rfc3339())
}

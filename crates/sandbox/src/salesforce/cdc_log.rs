//! The CDC log itself (events, schemas, replay ids, retention), held in the emulator's state;
//! [`super::cdc`] fills it from writes and serves the test API. Apart from `cdc` so that the
//! state can hold the log without importing the module that reads the state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tributary_sfpubsub::apache_avro::Schema;
use tributary_sfpubsub::bitmap;
use tributary_sfpubsub::schema::{self, ChangeHeader};

use crate::util::now_millis;

/// Objects selected for Change Data Capture and the fields of their change events.
const OBJECTS: [(&str, &[&str]); 4] = [
    (
        "Account",
        &[
            "Name",
            "AccountNumber",
            "Phone",
            "Industry",
            "BillingCity",
            "BillingCountry",
            "External_Id__c",
            "OwnerId",
            "CreatedDate",
            "LastModifiedDate",
        ],
    ),
    (
        "Contact",
        &[
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "HasOptedOutOfEmail",
            "AccountId",
            "External_Id__c",
            "CreatedDate",
            "LastModifiedDate",
        ],
    ),
    (
        "Order",
        &[
            "Status",
            "AccountId",
            "EffectiveDate",
            "Customer_External_Id__c",
            "Payment_State__c",
            "Channel__c",
            "Total_Amount__c",
            "Currency__c",
            "Tracking_Number__c",
            "Tracking_Url__c",
            "Carrier__c",
            "Fulfillment_Status__c",
            "External_Id__c",
            "CreatedDate",
            "LastModifiedDate",
        ],
    ),
    (
        "Case",
        &[
            "Subject",
            "Type",
            "Origin",
            "Status",
            "Description",
            "Return_State__c",
            "Order_External_Id__c",
            "SKU__c",
            "Quantity__c",
            "Refund_Amount__c",
            "External_Id__c",
            "CreatedDate",
            "LastModifiedDate",
        ],
    ),
];

/// One object's change event schema.
pub(crate) struct ObjectSchema {
    pub json: String,
    pub id: String,
    pub parsed: Schema,
    pub fields: Vec<String>,
}

/// One logged change event.
#[derive(Clone, Debug)]
pub struct CdcEvent {
    pub replay: u64,
    pub object: String,
    pub event_id: String,
    pub schema_id: String,
    pub payload: Vec<u8>,
    pub change_type: String,
    pub record_ids: Vec<String>,
    pub change_origin: String,
}

impl CdcEvent {
    pub fn replay_id(&self) -> Vec<u8> {
        self.replay.to_be_bytes().to_vec()
    }
}

/// One change of a transaction, before encoding.
pub struct Change {
    pub object: String,
    pub change_type: &'static str,
    pub record_ids: Vec<String>,
    /// Values of the event's fields (all but the changed ones are sent null on updates).
    pub values: Map<String, Value>,
    pub changed: Vec<String>,
    pub nulled: Vec<String>,
    pub origin: String,
}

pub(crate) struct CdcLog {
    pub schemas: BTreeMap<String, ObjectSchema>,
    pub events: VecDeque<CdcEvent>,
    next_replay: u64,
    next_txn: u64,
    /// Highest replay number no longer retained (0: nothing expired).
    pub expired_through: u64,
    /// Bumped on every append and on every fault, to wake the subscriber sessions.
    pub notify: Arc<watch::Sender<u64>>,
    /// Bumped to end every open Subscribe stream (UNAVAILABLE).
    pub resets: Arc<watch::Sender<u64>>,
    /// Subscribe streams opened so far (first FetchRequest received).
    pub subscribes: u64,
    /// Events sent over all Subscribe streams (redeliveries after a resubscribe included).
    pub delivered: u64,
}

impl Default for CdcLog {
    fn default() -> Self {
        let mut schemas = BTreeMap::new();
        for (object, fields) in OBJECTS {
            let json = schema::change_event_schema(object, fields);
            // The schema text is built from constants; a parse failure is a bug caught by the
            // emulator's tests, and leaves the object without CDC rather than panicking.
            if let Ok(parsed) = schema::parse_schema(&json) {
                schemas.insert(
                    object.to_string(),
                    ObjectSchema {
                        id: schema::schema_id(&json),
                        fields: schema::field_names(&parsed),
                        json,
                        parsed,
                    },
                );
            }
        }
        CdcLog {
            schemas,
            events: VecDeque::new(),
            next_replay: 1000,
            next_txn: 0,
            expired_through: 0,
            notify: Arc::new(watch::channel(0).0),
            resets: Arc::new(watch::channel(0).0),
            subscribes: 0,
            delivered: 0,
        }
    }
}

impl CdcLog {
    pub fn latest_replay(&self) -> u64 {
        self.events
            .back()
            .map(|e| e.replay)
            .unwrap_or(self.expired_through)
    }

    pub fn poke(&self) {
        self.notify.send_modify(|n| *n += 1);
    }

    /// Appends one transaction (events share `transactionKey`, `sequenceNumber` from 1).
    pub fn append(&mut self, changes: Vec<Change>) -> Vec<u64> {
        self.next_txn += 1;
        let txn = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            self.next_txn,
            0,
            now_millis()
        );
        let commit_ms = now_millis() as i64;
        let mut out = Vec::new();
        for (seq, c) in changes.into_iter().enumerate() {
            let Some(sch) = self.schemas.get(&c.object) else {
                continue;
            };
            let pos = |names: &[String]| -> Vec<usize> {
                names
                    .iter()
                    .filter_map(|n| sch.fields.iter().position(|f| f == n))
                    .collect()
            };
            let changed = pos(&c.changed);
            let nulled = pos(&c.nulled);
            let bitmaps = |p: Vec<usize>| {
                if p.is_empty() {
                    vec![]
                } else {
                    vec![bitmap::encode(&p)]
                }
            };
            let header = ChangeHeader {
                entity_name: c.object.clone(),
                record_ids: c.record_ids.clone(),
                change_type: c.change_type.into(),
                change_origin: c.origin.clone(),
                transaction_key: txn.clone(),
                sequence_number: seq as i32 + 1,
                commit_timestamp: commit_ms,
                commit_number: self.next_txn as i64,
                commit_user: "005000000000001AAA".into(),
                nulled_fields: bitmaps(nulled.clone()),
                diff_fields: vec![],
                changed_fields: bitmaps(changed),
            };
            let mut values = c.values;
            for f in ["CreatedDate", "LastModifiedDate"] {
                if values.contains_key(f) {
                    values.insert(f.into(), Value::from(commit_ms));
                }
            }
            let Ok(payload) = schema::encode(&sch.parsed, &header, &values) else {
                continue;
            };
            // Opaque and non-contiguous, as Salesforce's are: consumers must not do arithmetic.
            self.next_replay += 1 + (self.next_replay * 7919) % 5;
            let event = CdcEvent {
                replay: self.next_replay,
                object: c.object,
                event_id: format!(
                    "{:08x}-cdc0-4000-8000-{:012x}",
                    self.next_txn, self.next_replay
                ),
                schema_id: sch.id.clone(),
                payload,
                change_type: c.change_type.into(),
                record_ids: c.record_ids,
                change_origin: c.origin,
            };
            out.push(event.replay);
            self.events.push_back(event);
        }
        self.poke();
        out
    }
}

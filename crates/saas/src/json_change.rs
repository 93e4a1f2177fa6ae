//! The envelope every SaaS feed shares: a `tributary.cdc.v1.ChangeEvent` whose one `json`
//! column `payload` carries the feed's record, so that consumers of raw feeds read one
//! envelope whether a change came from PostgreSQL or from a SaaS system.

use tributary_proto::cdc::v1::{value::Kind, ChangeEvent, Column, Operation, Row, Value};

/// PostgreSQL's `json` type, which the payload column is declared as.
const JSON_OID: u32 = 114;

/// One SaaS record as a change; `op` decides whether the payload is `after` or `before`.
pub(crate) struct JsonChange<'a> {
    pub event_id: String,
    pub source: &'a str,
    pub database: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    pub op: Operation,
    pub payload: String,
    pub commit_micros: i64,
    pub origin: String,
}

impl JsonChange<'_> {
    pub(crate) fn into_event(self) -> ChangeEvent {
        let row = Row {
            values: vec![Value {
                kind: Some(Kind::Json(self.payload)),
            }],
        };
        let (before, after) = if self.op == Operation::Delete {
            (Some(row), None)
        } else {
            (None, Some(row))
        };
        ChangeEvent {
            event_id: self.event_id,
            source: self.source.to_string(),
            database: self.database.to_string(),
            schema: self.schema.to_string(),
            table: self.table.to_string(),
            op: self.op as i32,
            before,
            after,
            commit_time_micros: self.commit_micros,
            ordinal: 1,
            transaction_changes: 1,
            last_in_transaction: true,
            columns: vec![Column {
                name: "payload".into(),
                type_oid: JSON_OID,
                type_name: "json".into(),
                type_modifier: -1,
                key: false,
            }],
            origin: self.origin,
            captured_at_micros: crate::time::now_micros(),
            ..Default::default()
        }
    }
}

/// The JSON payload of a SaaS change (`after`, or `before` for deletes).
pub fn payload(change: &ChangeEvent) -> Option<&str> {
    let row = change.after.as_ref().or(change.before.as_ref())?;
    match row.values.first()?.kind.as_ref()? {
        Kind::Json(text) => Some(text),
        _ => None,
    }
}

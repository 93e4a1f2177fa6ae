//! The raw Salesforce change as a `tributary.cdc.v1.ChangeEvent`, like the other sources.
//!
//! | field | Salesforce |
//! |---|---|
//! | `event_id` (= `Nats-Msg-Id`) | `<feed>:<event uuid>`; read-backs `<feed>:<event uuid>:<record id>` |
//! | `source` / `database` / `schema` / `table` | feed name / org id / `salesforce` / `entityName` |
//! | `op` | INSERT (CREATE), DELETE (DELETE, GAP_DELETE), UPDATE (others), READ (read-backs) |
//! | `after` (`before` for deletes) | one `json` column `payload`: `{replayId, topic, schemaId, ChangeEventHeader, fields}` |
//! | `commit_time_micros` | `commitTimestamp` in µs, nudged to increase strictly along the topic |
//! | `origin` | `changeOrigin` (read-backs: `readback`) |

use serde_json::{json, Map, Value};
use tributary_proto::cdc::v1::{ChangeEvent, Operation};

use crate::json_change::JsonChange;

/// `saas.salesforce.<feed>.<entity>.<change type, lower case>`.
pub fn subject(feed: &str, entity: &str, change_type: &str) -> String {
    format!(
        "saas.salesforce.{}.{}.{}",
        tributary_nats::subject::token(feed),
        tributary_nats::subject::token(entity),
        tributary_nats::subject::token(&change_type.to_ascii_lowercase())
    )
}

pub fn feed_wildcard(feed: &str) -> String {
    format!("saas.salesforce.{}.>", tributary_nats::subject::token(feed))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) struct Raw<'a> {
    pub event_id: String,
    pub feed: &'a str,
    pub tenant: &'a str,
    pub entity: &'a str,
    pub change_type: &'a str,
    pub read_back: bool,
    /// The feed clock (see `position.rs`).
    pub commit_micros: i64,
    pub origin: String,
    pub payload: Value,
}

/// The JSON body of a decoded change.
pub fn body(
    replay_id: &[u8],
    topic: &str,
    schema_id: &str,
    header: &Map<String, Value>,
    fields: &Map<String, Value>,
) -> Value {
    json!({"replayId": hex(replay_id), "topic": topic, "schemaId": schema_id,
           "ChangeEventHeader": header, "fields": fields})
}

pub(crate) fn change_event(raw: &Raw<'_>) -> ChangeEvent {
    let op = if raw.read_back {
        Operation::Read
    } else {
        match raw.change_type {
            "CREATE" => Operation::Insert,
            "DELETE" | "GAP_DELETE" => Operation::Delete,
            _ => Operation::Update,
        }
    };
    JsonChange {
        event_id: raw.event_id.clone(),
        source: raw.feed,
        database: raw.tenant,
        schema: "salesforce",
        table: raw.entity,
        op,
        payload: raw.payload.to_string(),
        commit_micros: raw.commit_micros,
        origin: raw.origin.clone(),
    }
    .into_event()
}

/// Is this change the bridge's own write (`…;client=<id>` in `changeOrigin`)?
pub fn is_echo(change_origin: &str, client_id: Option<&str>) -> bool {
    let Some(id) = client_id.filter(|i| !i.is_empty()) else {
        return false;
    };
    change_origin
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("client="))
        .any(|c| c == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_match_the_client_exactly() {
        let o = "com/salesforce/api/rest/62.0;client=tributary";
        assert!(is_echo(o, Some("tributary")));
        assert!(!is_echo(o, Some("tributary2")));
        assert!(!is_echo(o, None));
        assert!(!is_echo("", Some("tributary")));
        assert_eq!(
            subject("org", "Account", "GAP_UPDATE"),
            "saas.salesforce.org.Account.gap_update"
        );
    }
}

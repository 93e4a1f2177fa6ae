//! Which streams are the bridge's: every stream, KV bucket and object store Tributary creates
//! carries the JetStream metadata `tributary.owner = tributary` and `tributary.component`
//! (who created it: `source:<name>`, `domain`, `sinks`, `shopify`, …). The bridge changes only
//! streams with that mark; one without it is another application's and is refused, except a
//! stream an older Tributary created before the mark existed, which is recognised by its
//! shape (exactly the bridge's subjects; for buckets, Tributary's description) and adopted:
//! the mark is added and an INFO line says so (docs/operations.md, "Streams the bridge owns").

use std::collections::{BTreeSet, HashMap};

use async_nats::jetstream::{self, stream};
use serde_json::{json, Value};

use crate::error::request_is_transient;
use crate::NatsError;

/// Metadata key of the ownership mark.
pub const OWNER_KEY: &str = "tributary.owner";
/// Its value.
pub const OWNER_VALUE: &str = "tributary";
/// Metadata key naming the component that created the stream.
pub const COMPONENT_KEY: &str = "tributary.component";

/// Whose a stream that exists is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// It carries the bridge's mark.
    Marked,
    /// No mark, but the shape of a stream an older Tributary created: adopt and mark it.
    Legacy,
    /// Another application's; the text says why.
    Foreign(String),
}

/// Adds the ownership mark (and the creating component, unless one is recorded) to `metadata`.
pub fn mark(metadata: &mut HashMap<String, String>, component: &str) {
    metadata.insert(OWNER_KEY.into(), OWNER_VALUE.into());
    metadata
        .entry(COMPONENT_KEY.into())
        .or_insert_with(|| component.to_string());
}

/// Whether `config` carries the bridge's mark.
pub fn is_marked(config: &stream::Config) -> bool {
    config.metadata.get(OWNER_KEY).map(String::as_str) == Some(OWNER_VALUE)
}

/// Whose the existing stream `config` is, the bridge expecting it to capture `subjects`.
/// `legacy_description`: for KV buckets and object stores, whose subjects follow from their
/// name alone, an unmarked one is adopted only when its description starts with this.
pub fn ownership(
    config: &stream::Config,
    subjects: &[String],
    legacy_description: Option<&str>,
) -> Ownership {
    if is_marked(config) {
        return Ownership::Marked;
    }
    if let Some(owner) = config.metadata.get(OWNER_KEY) {
        return Ownership::Foreign(format!("its metadata says {OWNER_KEY}={owner}"));
    }
    let theirs: BTreeSet<&str> = config.subjects.iter().map(String::as_str).collect();
    let ours: BTreeSet<&str> = subjects.iter().map(String::as_str).collect();
    if theirs != ours {
        return Ownership::Foreign(format!(
            "no {OWNER_KEY} mark, and it captures {:?} where the bridge's would capture {:?}",
            config.subjects, subjects
        ));
    }
    match legacy_description {
        Some(prefix)
            if !config
                .description
                .as_deref()
                .is_some_and(|d| d.starts_with(prefix)) =>
        {
            Ownership::Foreign(format!(
                "no {OWNER_KEY} mark, and its description {:?} is not Tributary's",
                config.description.as_deref().unwrap_or("")
            ))
        }
        _ => Ownership::Legacy,
    }
}

/// Streams other than `except` that capture any of `subjects` (`$JS.API.STREAM.NAMES` with a
/// subject filter), sorted.
pub async fn streams_covering(
    js: &jetstream::Context,
    subjects: &[String],
    except: &str,
) -> Result<Vec<String>, NatsError> {
    let mut found = BTreeSet::new();
    for subject in subjects {
        let answer: Value = js
            .request("STREAM.NAMES", &json!({ "subject": subject }))
            .await
            .map_err(|e| {
                NatsError::api(
                    except,
                    "listing the streams that capture its subjects",
                    request_is_transient(e.kind()),
                    e,
                )
            })?;
        let names = answer["streams"].as_array().into_iter().flatten();
        found.extend(
            names
                .filter_map(Value::as_str)
                .filter(|n| *n != except)
                .map(str::to_string),
        );
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subjects: &[&str], description: Option<&str>) -> stream::Config {
        stream::Config {
            name: "S".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            description: description.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn marked_legacy_and_foreign() {
        let ours = vec!["cdc.erp.>".to_string()];
        let mut c = config(&["cdc.erp.>"], None);
        assert_eq!(ownership(&c, &ours, None), Ownership::Legacy);
        mark(&mut c.metadata, "source:erp");
        assert_eq!(ownership(&c, &ours, None), Ownership::Marked);
        assert_eq!(c.metadata[COMPONENT_KEY], "source:erp");
        // Another component adopting it keeps the creator.
        mark(&mut c.metadata, "domain");
        assert_eq!(c.metadata[COMPONENT_KEY], "source:erp");

        let other = config(&["orders.>"], None);
        assert!(
            matches!(ownership(&other, &ours, None), Ownership::Foreign(why) if why.contains("orders.>"))
        );
        let mut claimed = config(&["cdc.erp.>"], None);
        claimed.metadata.insert(OWNER_KEY.into(), "billing".into());
        assert!(matches!(
            ownership(&claimed, &ours, None),
            Ownership::Foreign(_)
        ));
    }

    #[test]
    fn buckets_are_adopted_by_their_description() {
        let ours = vec!["$KV.state.>".to_string()];
        let legacy = config(&["$KV.state.>"], Some("Tributary sinks: versions"));
        assert_eq!(
            ownership(&legacy, &ours, Some("Tributary")),
            Ownership::Legacy
        );
        let foreign = config(&["$KV.state.>"], Some("billing state"));
        assert!(matches!(
            ownership(&foreign, &ours, Some("Tributary")),
            Ownership::Foreign(_)
        ));
    }
}

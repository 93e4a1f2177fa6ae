//! Fuzzing of the SaaS feeds' body handling: Shopify webhook bodies and topics (envelope,
//! subject, mapper), WMS lifecycle webhook bodies (`wms::map_webhook`), Salesforce change
//! bodies (`salesforce::mapper`) and the raw `ChangeEvent`s the mapping consumers read back
//! from JetStream. Seeds: `fuzz/corpus/{shopify,wms,salesforce-json}`. Signature checks and
//! listeners are not fuzzed here (see docs/fuzzing.md).

use proptest::prelude::*;
use prost::Message;
use serde_json::{json, Value};
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_saas::json_change;
use tributary_saas::salesforce::mapper as sf_mapper;
use tributary_saas::shopify::{envelope, mapper};
use tributary_saas::time::{format_rfc3339_millis, parse_rfc3339_micros};
use tributary_saas::wms::map_webhook;
use tributary_testkit::fuzz::{self, bytes_from, json_mutated};

/// Values that have broken parsers before: extremes, wrong types, odd timestamps.
fn interesting_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        Just(json!("")),
        Just(json!([])),
        Just(json!({})),
        Just(json!("gid://shopify/Order/")),
        Just(json!("/")),
        Just(json!("9999-12-31T23:59:60.999999999+99:99")),
        Just(json!("0000-00-00T00:00:00Z")),
        Just(json!("-001-01-01T00:00:00Z")),
        Just(json!("+999-01-01T00:00:00Z")),
        Just(json!("2026-01-01T00:00:0é")),
        Just(json!("2026-01-01T00:00:00é")),
        Just(json!("2026-01-01T00:00:00.é")),
        Just(json!("2026-01-01T00:00:00+0é:00")),
        "[0-9+-]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?"
            .prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ]
}

/// The corpus as (file name, body bytes, parsed body).
fn seeds(target: &str) -> Vec<(String, Vec<u8>, Value)> {
    fuzz::corpus(target)
        .into_iter()
        .map(|(name, bytes)| {
            let v = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("corpus {target}/{name} is not JSON: {e}"));
            (name, bytes, v)
        })
        .collect()
}

/// A body as JSON (as the webhook receiver checks it), or random or mutated bytes.
fn bodies(target: &str) -> impl Strategy<Value = fuzz::Input> {
    let s = seeds(target);
    let raw: Vec<Vec<u8>> = s.iter().map(|(_, b, _)| b.clone()).collect();
    let values: Vec<Value> = s.into_iter().map(|(_, _, v)| v).collect();
    prop_oneof![
        3 => json_mutated(values, interesting_json()).prop_map(|v| fuzz::Input(v.to_string().into_bytes())),
        1 => bytes_from(raw, 256),
    ]
}

fn shopify_topics() -> Vec<String> {
    fuzz::corpus("shopify")
        .into_iter()
        .map(|(name, _)| name.trim_end_matches(".json").replace('+', "/"))
        .collect()
}

/// Subjects built from header values stay valid NATS subjects.
fn valid_subject(s: &str) -> bool {
    !s.split('.').any(|t| t.is_empty() || t == "*" || t == ">")
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[test]
fn corpus_bodies_map() {
    for (name, _, v) in seeds("shopify") {
        let topic = name.trim_end_matches(".json").replace('+', "/");
        let got = mapper::map("web", &topic, &v, 0);
        assert!(
            matches!(got, Ok(Some(_))) || topic == "products/update",
            "{name}: {got:?}"
        );
    }
    for (name, _, v) in seeds("wms") {
        let got = map_webhook(&v);
        assert!(got.is_ok(), "{name}: {got:?}");
    }
    for (name, _, v) in seeds("salesforce-json") {
        let got = sf_mapper::map(&v, name.contains("gap"), 1);
        assert!(matches!(&got, Ok(m) if !m.is_empty()), "{name}: {got:?}");
    }
}

#[test]
fn fuzz_shopify_webhooks() {
    let topics = shopify_topics();
    let topic = prop_oneof![
        3 => prop::sample::select(topics),
        1 => ".{0,24}",
    ];
    let shop = prop_oneof![Just("web".to_string()), ".{0,12}"];
    fuzz::run(
        "shopify",
        10_000,
        (shop, topic, bodies("shopify"), any::<i64>()),
        |(shop, topic, body, triggered)| {
            let subject = envelope::subject(&shop, &topic);
            prop_assert!(valid_subject(&subject), "{subject:?}");
            // As the receiver does: only JSON bodies are stored, byte for byte.
            let Ok(text) = std::str::from_utf8(&body) else {
                return Ok(());
            };
            if serde_json::from_str::<Value>(text).is_err() {
                return Ok(());
            }
            let raw = envelope::RawEvent {
                event_id: format!("{shop}:1"),
                shop: &shop,
                shop_domain: "web.myshopify.com",
                topic: &topic,
                body: text,
                triggered_at_micros: triggered,
                origin: "webhook:1".into(),
                reconciled: false,
            };
            let event = envelope::change_event(&raw);
            prop_assert_eq!(json_change::payload(&event), Some(text));
            // As the mapping consumer does, from the stored bytes.
            let stored = ChangeEvent::decode(event.encode_to_vec().as_slice())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let body = json_change::payload(&stored).unwrap_or_default();
            let v: Value =
                serde_json::from_str(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Ok(Some(m)) = mapper::map(&shop, &stored.table, &v, triggered) {
                // Every part of the key and the GID names a record (no empty id). The id
                // is what follows `<SHOP>-` (inventory: `<SHOP>-ITEM-` / `<SHOP>-LOC-`),
                // not whatever the part ends with: an id may itself end in '-'.
                let prefix = format!("{}-", shop.to_uppercase());
                // Inventory keys join two ids with ':'; other ids may contain one.
                let parts: Vec<(String, &str)> = if topic == "inventory_levels/update" {
                    let kinds = [format!("{prefix}ITEM-"), format!("{prefix}LOC-")];
                    kinds.into_iter().zip(m.key.splitn(2, ':')).collect()
                } else {
                    vec![(prefix.clone(), m.key.as_str())]
                };
                prop_assert!(
                    parts.iter().all(|(head, p)| p
                        .strip_prefix(head.as_str())
                        .is_none_or(|id| !id.is_empty())),
                    "{m:?}"
                );
                prop_assert!(!m.gid.is_empty() && !m.gid.ends_with('/'), "{m:?}");
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_wms_webhooks() {
    fuzz::run("wms", 10_000, bodies("wms"), |body| {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            if let Ok(Some(m)) = map_webhook(&v) {
                prop_assert!(!m.key.is_empty());
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_salesforce_change_bodies() {
    fuzz::run(
        "salesforce-json",
        10_000,
        (bodies("salesforce-json"), any::<bool>(), any::<i64>()),
        |(body, read_back, as_of)| {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                for m in sf_mapper::map(&v, read_back, as_of).unwrap_or_default() {
                    prop_assert!(!m.record_id.is_empty() && m.key != "SF-", "{m:?}");
                    prop_assert_eq!(m.as_of_micros, as_of);
                }
            }
            Ok(())
        },
    );
}

/// What the mapping consumers read from JetStream: a protobuf `ChangeEvent`, possibly
/// corrupted (or written by another version).
#[test]
fn fuzz_stored_change_events() {
    let events: Vec<Vec<u8>> = seeds("shopify")
        .into_iter()
        .map(|(name, _, v)| {
            let topic = name.trim_end_matches(".json").replace('+', "/");
            let body = v.to_string();
            envelope::change_event(&envelope::RawEvent {
                event_id: "web:1".into(),
                shop: "web",
                shop_domain: "web.myshopify.com",
                topic: &topic,
                body: &body,
                triggered_at_micros: 1,
                origin: "webhook:1".into(),
                reconciled: false,
            })
            .encode_to_vec()
        })
        .collect();
    fuzz::run("change-events", 10_000, bytes_from(events, 256), |bytes| {
        if let Ok(change) = ChangeEvent::decode(&bytes[..]) {
            let v = json_change::payload(&change).and_then(|t| serde_json::from_str(t).ok());
            if let Some(v) = v {
                let _ = mapper::map("web", &change.table, &v, change.commit_time_micros);
                let _ = sf_mapper::map(&v, false, change.commit_time_micros);
            }
        }
        Ok(())
    });
}

/// Timestamps from headers (`X-Shopify-Triggered-At`) and bodies (`updated_at`, WMS
/// `created_at`): any text, and near-valid RFC 3339 with odd digits, offsets and UTF-8.
#[test]
fn fuzz_rfc3339_timestamps() {
    let text = prop_oneof![
        "[0-9+-]{4}-[0-9]{2}-[0-9]{2}[T ][0-9+-]{2}:[0-9]{2}:[0-9+]{2}(\\.[0-9é]{0,12})?(Z|z|[+-][0-9é]{2}:[0-9]{2})? ?",
        ".{0,32}",
    ];
    fuzz::run("rfc3339", 10_000, text, |text| {
        if let Some(micros) = parse_rfc3339_micros(&text) {
            // What parses formats back to the same instant (at millisecond precision).
            let again = parse_rfc3339_micros(&format_rfc3339_millis(micros));
            prop_assert_eq!(again, Some(micros.div_euclid(1000) * 1000), "{}", text);
        }
        Ok(())
    });
}

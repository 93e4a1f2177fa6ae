//! Fuzzing of Salesforce Change Data Capture decoding: Avro payloads against their writer
//! schema (`fuzz/corpus/avro`, written by the same encoder the emulator uses, mutated),
//! schemas as the server may send them (`fuzz/corpus/avro-schema`), and header bitmaps.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tributary_sfpubsub::apache_avro::Schema;
use tributary_sfpubsub::bitmap;
use tributary_sfpubsub::schema::{self, ChangeHeader};
use tributary_testkit::fuzz::{self, bytes_from, corpus_dir, json_mutated};

/// Objects and fields of the emulator's change events (crates/sandbox/src/salesforce/cdc.rs).
const OBJECTS: [(&str, &[&str]); 3] = [
    (
        "Account",
        &[
            "Name",
            "Phone",
            "BillingCity",
            "External_Id__c",
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
            "AccountId",
            "LastModifiedDate",
        ],
    ),
    (
        "Order",
        &[
            "Status",
            "AccountId",
            "EffectiveDate",
            "TotalAmount",
            "LastModifiedDate",
        ],
    ),
];

/// Schemas by object name, from the corpus.
fn schemas() -> Vec<(String, Schema)> {
    fuzz::corpus("avro-schema")
        .into_iter()
        .map(|(name, text)| {
            let text = String::from_utf8_lossy(&text).into_owned();
            let s = schema::parse_schema(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name.trim_end_matches(".json").to_string(), s)
        })
        .collect()
}

/// (schema, payload) pairs of the corpus; a payload file is `<Object>-<n>.avro`.
fn payloads() -> Vec<(Schema, Vec<u8>)> {
    let schemas = schemas();
    fuzz::corpus("avro")
        .into_iter()
        .map(|(name, bytes)| {
            let object = name.split('-').next().unwrap_or_default();
            let s = schemas
                .iter()
                .find(|(n, _)| n == object)
                .unwrap_or_else(|| panic!("no schema for {name}"));
            (s.1.clone(), bytes)
        })
        .collect()
}

#[test]
fn corpus_payloads_decode() {
    for (s, bytes) in payloads() {
        let d = schema::decode(&s, &bytes).expect("corpus payload decodes");
        assert!(!d.record_ids().is_empty());
    }
}

/// Fuzzing finding: apache-avro decoded a payload cut short inside a string or a union
/// index as `null`, so a truncated event lost fields without an error.
#[test]
fn every_truncated_payload_is_an_error() {
    for (s, bytes) in payloads() {
        for cut in 0..bytes.len() {
            assert!(
                schema::decode(&s, &bytes[..cut]).is_err(),
                "prefix of {cut} of {} bytes decoded",
                bytes.len()
            );
        }
    }
}

/// Fuzzing finding: block counts and lengths are trusted by apache-avro, which reserves
/// room for them before reading: an array of 536,870,000 strings in 6 bytes aborted the
/// process ("memory allocation of 30064720000 bytes failed"). Reproducers in fuzz/corpus/avro-findings.
#[test]
fn lying_lengths_are_errors() {
    let schemas = schemas();
    for (name, bytes) in fuzz::corpus("avro-findings") {
        for (object, s) in &schemas {
            let got = schema::decode(s, &bytes);
            assert!(got.is_err(), "{name} with {object}: {got:?}");
        }
    }
}

#[test]
fn fuzz_avro_payloads() {
    let all = payloads();
    let schemas: Vec<Schema> = all.iter().map(|(s, _)| s.clone()).collect();
    let mut seeds: Vec<Vec<u8>> = all.into_iter().map(|(_, b)| b).collect();
    seeds.extend(fuzz::corpus("avro-findings").into_iter().map(|(_, b)| b));
    fuzz::run(
        "avro",
        20_000,
        (prop::sample::select(schemas), bytes_from(seeds, 256)),
        |(s, bytes)| {
            if let Ok(d) = schema::decode(&s, &bytes) {
                // Whatever decodes is a whole record: header present, names resolved.
                prop_assert!(d.header.contains_key("changedFields"));
            }
            Ok(())
        },
    );
}

/// Schema texts as a server could send them: the corpus schemas with JSON values swapped.
#[test]
fn fuzz_avro_schemas() {
    let texts: Vec<Value> = fuzz::corpus("avro-schema")
        .into_iter()
        .filter_map(|(_, t)| serde_json::from_slice(&t).ok())
        .collect();
    let replacement = prop_oneof![
        Just(json!("R")),
        Just(json!("string")),
        Just(json!(["null", "R"])),
        Just(json!({"type": "fixed", "name": "F", "size": 1u64 << 40})),
        Just(json!({"type": "array", "items": "null"})),
        Just(json!({"type": "map", "values": "long"})),
        Just(json!({"type": "record", "name": "R", "fields": [{"name": "r", "type": "R"}]})),
        Just(json!({"type": "enum", "name": "E", "symbols": []})),
        Just(json!(-1)),
        Just(Value::Null),
    ];
    let strategy = (
        json_mutated(texts, replacement),
        prop::collection::vec(any::<u8>(), 0..64),
    );
    fuzz::run("avro-schema", 4000, strategy, |(text, payload)| {
        if let Ok(s) = schema::parse_schema(&text.to_string()) {
            let _ = schema::decode(&s, &payload);
        }
        Ok(())
    });
}

#[test]
fn fuzz_bitmaps() {
    let bitmap_text = prop_oneof![
        "0[xX][0-9a-fA-F]{0,40}",
        "[0-9]{1,22}-0x[0-9a-fA-F]{0,16}",
        ".{0,24}",
    ];
    let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    fuzz::run(
        "bitmaps",
        10_000,
        prop::collection::vec(bitmap_text, 0..4),
        |bitmaps| {
            let digits: usize = bitmaps.iter().map(String::len).sum();
            if let Ok(got) = bitmap::decode(&bitmaps, &names, |_| names.clone()) {
                prop_assert!(got.len() <= 4 * digits);
            }
            Ok(())
        },
    );
}

/// Writes the Avro corpus with the encoder the emulator uses. Run by hand after a change
/// of the CDC shape: `cargo test -p tributary-sfpubsub --test fuzz -- --ignored`.
#[test]
#[ignore = "a generator, not a check: it rewrites the Avro fuzz corpus in the repository (run by hand after a change of the CDC shape)"]
fn write_avro_corpus() {
    let schema_dir = corpus_dir("avro-schema");
    let payload_dir = corpus_dir("avro");
    for dir in [&schema_dir, &payload_dir] {
        std::fs::create_dir_all(dir).expect("corpus dir");
    }
    for (object, fields) in OBJECTS {
        let text = schema::change_event_schema(object, fields);
        std::fs::write(schema_dir.join(format!("{object}.json")), &text).expect("write");
        let s = schema::parse_schema(&text).expect("schema");
        let kinds = ["CREATE", "UPDATE", "DELETE", "GAP_OVERFLOW"];
        for (n, change_type) in kinds.into_iter().enumerate() {
            let mut values = Map::new();
            if change_type != "DELETE" {
                values.insert(fields[0].into(), json!(format!("{object} é {n}")));
                values.insert(
                    "LastModifiedDate".into(),
                    json!(1_765_015_200_000i64 + n as i64),
                );
            }
            let header = ChangeHeader {
                entity_name: object.into(),
                record_ids: vec![format!("001A00000{n}AAA"), "001A000009AAA".into()],
                change_type: change_type.into(),
                change_origin: "com/salesforce/api/rest/62.0;client=tributary".into(),
                transaction_key: format!("000{n}-aa"),
                sequence_number: n as i32,
                commit_timestamp: 1_765_015_200_000,
                commit_number: 42,
                commit_user: "005A0000001".into(),
                changed_fields: vec![bitmap::encode(&[1, fields.len()]), "1-0x1".into()],
                nulled_fields: vec![bitmap::encode(&[2])],
                diff_fields: vec![],
            };
            let bytes = schema::encode(&s, &header, &values).expect("encode");
            std::fs::write(payload_dir.join(format!("{object}-{n}.avro")), bytes).expect("write");
        }
    }
}

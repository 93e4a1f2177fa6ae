//! Fuzzing of everything the replication stream hands us: pgoutput messages (real ones
//! captured from PostgreSQL 15 under `fuzz/corpus/pgoutput*`, mutated) and the text forms of
//! typed values (`fuzz/corpus/values`, mutated, plus near-valid generated ones). No input may
//! panic, hang or allocate beyond its own size; see docs/fuzzing.md.

use proptest::prelude::*;
use tributary_postgres::pgoutput::{decode, PgOutputMessage, TupleData, TupleValue};
use tributary_postgres::values::{decode_text, decode_tuple_value, TypeKind};
use tributary_testkit::fuzz::{self, bytes_from};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    fuzz::corpus(target).into_iter().map(|(_, b)| b).collect()
}

/// Every kind the decoder knows: the built-in types and their arrays (from the OID table),
/// enums, and a type passed on as text.
fn all_kinds() -> Vec<TypeKind> {
    let mut kinds: Vec<TypeKind> = Vec::new();
    for k in (0..5000).filter_map(TypeKind::from_builtin_oid) {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    kinds.extend([TypeKind::Enum, TypeKind::Other("box".into())]);
    kinds
}

/// Decodes every value of a tuple the way the source task does, with the column types
/// the tuple's position suggests (cycling through every kind).
fn decode_values(tuple: &TupleData<'_>) -> Result<(), TestCaseError> {
    let kinds = all_kinds();
    for (i, v) in tuple.iter().enumerate() {
        let Ok(v) = v else {
            return Err(TestCaseError::fail("a validated tuple failed to iterate"));
        };
        let kind = &kinds[i % kinds.len()];
        let _ = decode_tuple_value(kind, &v);
        if let TupleValue::Text(t) = v {
            prop_assert!(t.len() <= 1 << 20, "value longer than any input here");
        }
    }
    Ok(())
}

fn check_message(bytes: &[u8], in_stream: bool) -> Result<(), TestCaseError> {
    match decode(bytes, in_stream) {
        Ok(PgOutputMessage::Insert { new, .. }) => decode_values(&new),
        Ok(PgOutputMessage::Update { old, new, .. }) => {
            if let Some(old) = old {
                decode_values(old.tuple())?;
            }
            decode_values(&new)
        }
        Ok(PgOutputMessage::Delete { old, .. }) => decode_values(old.tuple()),
        Ok(PgOutputMessage::Truncate { relation_oids, .. }) => {
            prop_assert!(relation_oids.len() * 4 <= bytes.len());
            Ok(())
        }
        Ok(PgOutputMessage::Relation(r)) => {
            prop_assert!(r.columns.len() * 10 <= bytes.len());
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            // The error must render (positions inside the message, no panic in Display).
            prop_assert!(!e.to_string().is_empty());
            Ok(())
        }
    }
}

#[test]
fn corpus_messages_decode() {
    for (target, in_stream) in [("pgoutput", false), ("pgoutput-in-stream", true)] {
        for (name, bytes) in fuzz::corpus(target) {
            assert!(decode(&bytes, in_stream).is_ok(), "{target}/{name}");
        }
    }
}

#[test]
fn fuzz_pgoutput_messages() {
    let mut all = seeds("pgoutput");
    all.extend(seeds("pgoutput-in-stream"));
    fuzz::run(
        "pgoutput",
        30_000,
        (bytes_from(all, 512), any::<bool>()),
        |(bytes, in_stream)| check_message(&bytes, in_stream),
    );
}

#[test]
fn fuzz_tuple_data() {
    // The tuple part of the captured Inserts/Updates/Deletes (after tag, OID and marker).
    let tuples: Vec<Vec<u8>> = seeds("pgoutput")
        .into_iter()
        .filter(|m| matches!(m.first(), Some(b'I' | b'U' | b'D')) && m.len() > 6)
        .map(|m| m[6..].to_vec())
        .collect();
    fuzz::run("pgoutput-tuple", 10_000, bytes_from(tuples, 256), |bytes| {
        if let Ok((tuple, used)) = TupleData::parse(&bytes, 'I') {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(tuple.iter().count(), tuple.len());
            decode_values(&tuple)?;
        }
        Ok(())
    });
}

/// A corpus of text forms: one file per type (named as `TypeKind::name`), a value a line.
/// `values`: real output of PostgreSQL 15; `values-findings`: inputs that once panicked.
fn value_seeds(target: &str) -> Vec<(TypeKind, Vec<u8>)> {
    let kinds = all_kinds();
    let mut out = Vec::new();
    for (file, text) in fuzz::corpus(target) {
        let name = file.trim_end_matches(".txt");
        let kind = kinds
            .iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| panic!("values corpus file {file} names no type"));
        for line in String::from_utf8_lossy(&text).lines() {
            out.push((kind.clone(), line.as_bytes().to_vec()));
        }
    }
    out
}

#[test]
fn corpus_values_decode() {
    for (kind, text) in value_seeds("values") {
        let got = decode_text(&kind, &text);
        assert!(
            got.is_ok(),
            "{} {:?}: {got:?}",
            kind.name(),
            String::from_utf8_lossy(&text)
        );
    }
}

#[test]
fn findings_are_errors_not_panics() {
    for (kind, text) in value_seeds("values-findings") {
        let got = decode_text(&kind, &text);
        assert!(got.is_err(), "{} {:?}: {got:?}", kind.name(), text);
    }
}

/// Near-valid text forms: the grammar of each type with numbers at their extremes.
fn near_valid_text() -> impl Strategy<Value = String> {
    let num = "-?(0|[1-9][0-9]{0,19}|9223372036854775807|9223372036854775808)";
    prop_oneof![
        // numeric / int / float
        "-?[0-9]{0,40}(\\.[0-9]{0,40})?(e[+-]?[0-9]{1,4})?",
        // dates and timestamps, with and without zone and era
        "[0-9]{1,12}-[0-9]{1,3}-[0-9]{1,3}([ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,8})?)?([+-][0-9]{2}(:[0-9]{2}){0,2})?( BC)?",
        // times
        "[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,8})?([+-][0-9]{1,2}(:[0-9]{1,2}){0,2})?",
        // ISO 8601 intervals with huge and signed fields
        "P([+-]?[0-9]{1,19}(\\.[0-9]{1,8})?[YMWD]){0,5}(T([+-]?[0-9]{1,19}(\\.[0-9]{1,8})?[HMS]){0,4})?",
        // bytea
        "\\\\x[0-9a-fA-F]{0,9}|([^\\\\]|\\\\\\\\|\\\\[0-7]{1,3}){0,12}",
        // arrays with dimension decorations at the integer limits
        proptest::string::string_regex(&format!(
            "(\\[{num}(:{num})?\\]){{0,3}}=?[ ]?\\{{[{{}},\"\\\\ a0-9NUL]{{0,24}}\\}}"
        ))
        .expect("a valid regex"),
    ]
}

#[test]
fn fuzz_typed_values() {
    let mut seeds = value_seeds("values");
    seeds.extend(value_seeds("values-findings"));
    let corpus_text: Vec<Vec<u8>> = seeds.iter().map(|(_, t)| t.clone()).collect();
    let kinds = all_kinds();
    let text = prop_oneof![
        3 => bytes_from(corpus_text, 48),
        2 => near_valid_text().prop_map(|t| fuzz::Input(t.into_bytes())),
    ];
    fuzz::run(
        "values",
        30_000,
        (prop::sample::select(kinds), text),
        |(kind, text)| {
            if let Err(e) = decode_text(&kind, &text) {
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(())
        },
    );
}

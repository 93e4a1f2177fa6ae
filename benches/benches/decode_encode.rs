//! Micro-benchmarks of the per-change CPU work: pgoutput decoding, text values to typed rows,
//! and building + protobuf-encoding the `ChangeEvent`, on hand-built pgoutput messages for an
//! ERP-like `sales_orders` row (int8, int4, numeric, text, timestamptz, ~200-byte text).

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prost::Message as _;
use tributary_postgres::pgoutput::{self, OldTuple, PgOutputMessage, TupleData, TupleValue};
use tributary_postgres::values::{decode_text, TypeKind};
use tributary_proto::cdc::v1::{
    value::Kind, ChangeEvent, Column, NullValue, Operation, Row, Unchanged, Value,
};

const RELATION_OID: u32 = 16_385;

/// (name, type OID, key, text value) of the benchmark row.
const COLUMNS: [(&str, u32, bool, &str); 6] = [
    ("id", 20, true, "1000042"),
    ("customer_id", 23, false, "31337"),
    ("amount", 1700, false, "1234.56"),
    ("status", 25, false, "shipped"),
    ("updated_at", 1184, false, "2025-11-28 20:15:42.123456+00"),
    ("note", 25, false, NOTE),
];

const NOTE: &str = "order 1000042: deliver to the loading dock at the back of the building, \
                    call ahead, two pallets, fragile goods, signature required; invoice \
                    reference INV-2025-000042, customer PO 7781-AX, net 30 days.";

/// Tuple data: Int16 column count, then per column 't' + Int32 length + text, or 'n'.
fn tuple(values: &[Option<&str>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for value in values {
        match value {
            Some(text) => {
                out.push(b't');
                out.extend_from_slice(&(text.len() as i32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            None => out.push(b'n'),
        }
    }
    out
}

fn full_row() -> Vec<Option<&'static str>> {
    COLUMNS.iter().map(|c| Some(c.3)).collect()
}

fn key_row() -> Vec<Option<&'static str>> {
    COLUMNS.iter().map(|c| c.2.then_some(c.3)).collect()
}

/// 'I', relation OID, 'N', new tuple.
fn insert_message() -> Vec<u8> {
    let mut m = vec![b'I'];
    m.extend_from_slice(&RELATION_OID.to_be_bytes());
    m.push(b'N');
    m.extend(tuple(&full_row()));
    m
}

/// 'U', relation OID, 'N', new tuple (REPLICA IDENTITY DEFAULT, key unchanged).
fn update_message() -> Vec<u8> {
    let mut m = vec![b'U'];
    m.extend_from_slice(&RELATION_OID.to_be_bytes());
    m.push(b'N');
    m.extend(tuple(&full_row()));
    m
}

/// 'D', relation OID, 'K', key tuple (non-key columns NULL).
fn delete_message() -> Vec<u8> {
    let mut m = vec![b'D'];
    m.extend_from_slice(&RELATION_OID.to_be_bytes());
    m.push(b'K');
    m.extend(tuple(&key_row()));
    m
}

/// What the pipeline keeps per relation: value kinds and the pre-encoded static fields.
struct Relation {
    kinds: Vec<TypeKind>,
    static_fields: Vec<u8>,
}

fn relation() -> Relation {
    let kinds = COLUMNS
        .iter()
        .map(|c| TypeKind::from_builtin_oid(c.1).unwrap_or(TypeKind::Other("unknown".into())))
        .collect();
    let type_name = |oid: u32| match oid {
        20 => "int8",
        23 => "int4",
        1700 => "numeric",
        1184 => "timestamptz",
        _ => "text",
    };
    let static_event = ChangeEvent {
        source: "erp".into(),
        database: "erp".into(),
        schema: "public".into(),
        table: "sales_orders".into(),
        key_columns: vec!["id".into()],
        columns: COLUMNS
            .iter()
            .map(|c| Column {
                name: c.0.into(),
                type_oid: c.1,
                type_name: type_name(c.1).into(),
                type_modifier: -1,
                key: c.2,
            })
            .collect(),
        relation_oid: RELATION_OID,
        ..Default::default()
    };
    Relation {
        kinds,
        static_fields: static_event.encode_to_vec(),
    }
}

fn build_row(rel: &Relation, tuple: &TupleData<'_>) -> Row {
    let values = tuple
        .iter()
        .zip(&rel.kinds)
        .map(|(v, kind)| {
            let kind_value = match v {
                Ok(TupleValue::Text(text)) => decode_text(kind, text)
                    .ok()
                    .and_then(|v| v.kind)
                    .unwrap_or(Kind::Null(NullValue::NullValue as i32)),
                Ok(TupleValue::UnchangedToast) => Kind::Unchanged(Unchanged {}),
                _ => Kind::Null(NullValue::NullValue as i32),
            };
            Value {
                kind: Some(kind_value),
            }
        })
        .collect();
    Row { values }
}

/// Decode, convert, build and encode one change, as the pipeline does per change.
fn process(rel: &Relation, message: &[u8], ordinal: u32) -> usize {
    let (op, before, after) = match pgoutput::decode(message, false) {
        Ok(PgOutputMessage::Insert { new, .. }) => {
            (Operation::Insert, None, Some(build_row(rel, &new)))
        }
        Ok(PgOutputMessage::Update { new, old, .. }) => (
            Operation::Update,
            old.map(|o| build_row(rel, o.tuple())),
            Some(build_row(rel, &new)),
        ),
        Ok(PgOutputMessage::Delete { old, .. }) => {
            let key_only = matches!(old, OldTuple::Key(_));
            let _ = black_box(key_only);
            (Operation::Delete, Some(build_row(rel, old.tuple())), None)
        }
        _ => return 0,
    };
    let commit_lsn: u64 = 0x1_2345_6780;
    let event = ChangeEvent {
        event_id: format!(
            "erp:{:X}/{:X}:{ordinal}",
            commit_lsn >> 32,
            commit_lsn & 0xFFFF_FFFF
        ),
        op: op as i32,
        before_is_key_only: op == Operation::Delete,
        before,
        after,
        commit_lsn,
        lsn: commit_lsn - 4096,
        xid: 7_654_321,
        commit_time_micros: 1_764_360_942_123_456,
        captured_at_micros: 1_764_360_942_125_000,
        ordinal,
        ..Default::default()
    };
    let mut buf = BytesMut::with_capacity(event.encoded_len() + rel.static_fields.len());
    // Enough capacity was reserved: encoding cannot fail.
    let _ = event.encode(&mut buf);
    buf.extend_from_slice(&rel.static_fields);
    black_box(buf.freeze()).len()
}

/// The benchmark values must decode to their typed kinds, not fall back to text.
fn check_values(rel: &Relation) {
    for ((name, _, _, text), kind) in COLUMNS.iter().zip(&rel.kinds) {
        if let Err(e) = decode_text(kind, text.as_bytes()) {
            panic!("column {name}: {e}");
        }
    }
}

fn benches(c: &mut Criterion) {
    let rel = relation();
    check_values(&rel);
    let messages = [
        ("insert", insert_message()),
        ("update", update_message()),
        ("delete", delete_message()),
    ];

    let mut group = c.benchmark_group("pgoutput_decode");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in &messages {
        group.bench_with_input(BenchmarkId::from_parameter(name), msg, |b, msg| {
            b.iter(|| match pgoutput::decode(black_box(msg), false) {
                Ok(m) => black_box(m),
                Err(e) => panic!("benchmark message does not decode: {e}"),
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decode_to_row");
    group.throughput(Throughput::Elements(1));
    let insert = &messages[0].1;
    group.bench_function("insert", |b| {
        b.iter(|| match pgoutput::decode(black_box(insert), false) {
            Ok(PgOutputMessage::Insert { new, .. }) => black_box(build_row(&rel, &new)),
            _ => Row::default(),
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode_build_encode");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in &messages {
        group.bench_with_input(BenchmarkId::from_parameter(name), msg, |b, msg| {
            let mut ordinal = 0u32;
            b.iter(|| {
                ordinal = ordinal.wrapping_add(1);
                process(&rel, black_box(msg), ordinal)
            })
        });
    }
    group.finish();

    let bytes = process(&rel, insert, 1);
    println!(
        "encoded insert event: {bytes} bytes (message {} bytes)",
        insert.len()
    );
}

criterion_group! {
    name = decode_encode;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = benches
}
criterion_main!(decode_encode);

//! Every literal in these tests was printed by a PostgreSQL 15 server with the replication
//! session's settings (IntervalStyle=iso_8601, TimeZone=UTC unless noted,
//! extra_float_digits=3, bytea_output=hex); expected numbers come from the same server
//! (`extract(epoch ...)`, `date - '1970-01-01'`).
#![allow(clippy::unwrap_used)]

use super::*;
use tributary_proto::cdc::v1::{Array, Interval, TimeTz};

mod arrays;
mod datetime;
mod real_server;

fn ok(kind: &TypeKind, text: &str) -> Kind {
    match decode_text(kind, text.as_bytes()) {
        Ok(Value { kind: Some(k) }) => k,
        other => panic!("{} {text:?}: {other:?}", kind.name()),
    }
}

fn err(kind: &TypeKind, text: &str) -> ValueError {
    match decode_text(kind, text.as_bytes()) {
        Err(e) => e,
        Ok(v) => panic!("{} {text:?} should fail, got {v:?}", kind.name()),
    }
}

fn arr(element: TypeKind) -> TypeKind {
    TypeKind::Array(Box::new(element))
}

fn elements(kind: &TypeKind, text: &str) -> (Vec<Kind>, Vec<u32>) {
    let Kind::Array(Array {
        elements,
        dimensions,
    }) = ok(kind, text)
    else {
        panic!("{text:?} is not an array")
    };
    (
        elements.into_iter().map(|v| v.kind.unwrap()).collect(),
        dimensions,
    )
}

const NULL: Kind = Kind::Null(0);

fn text(s: &str) -> Kind {
    Kind::Text(s.to_owned())
}

fn iv(months: i32, days: i32, micros: i64) -> Kind {
    Kind::Interval(Interval {
        months,
        days,
        micros,
    })
}

#[test]
fn builtin_oids() {
    for (oid, kind) in [
        (16, TypeKind::Bool),
        (20, TypeKind::Int),
        (26, TypeKind::Int),
        (1042, TypeKind::Text),
        (3802, TypeKind::Json),
    ] {
        assert_eq!(TypeKind::from_builtin_oid(oid), Some(kind));
    }
    // Array OIDs as in pg_type.typarray.
    for (oid, element) in [
        (1000, TypeKind::Bool),
        (1005, TypeKind::Int),
        (1007, TypeKind::Int),
        (1016, TypeKind::Int),
        (1028, TypeKind::Int),
        (1231, TypeKind::Numeric),
        (1021, TypeKind::Float4),
        (1022, TypeKind::Float8),
        (1009, TypeKind::Text),
        (1015, TypeKind::Text),
        (1014, TypeKind::Text),
        (1003, TypeKind::Text),
        (1002, TypeKind::Text),
        (1001, TypeKind::Bytea),
        (2951, TypeKind::Uuid),
        (1182, TypeKind::Date),
        (1183, TypeKind::Time),
        (1270, TypeKind::TimeTz),
        (1115, TypeKind::Timestamp),
        (1185, TypeKind::Timestamptz),
        (1187, TypeKind::Interval),
        (199, TypeKind::Json),
        (3807, TypeKind::Json),
    ] {
        assert_eq!(
            TypeKind::from_builtin_oid(oid),
            Some(arr(element)),
            "oid {oid}"
        );
    }
    assert_eq!(TypeKind::from_builtin_oid(603), None);
    assert_eq!(arr(TypeKind::Text).name(), "_text");
    assert_eq!(TypeKind::from_catalog(b'e', "mood", None), TypeKind::Enum);
    assert_eq!(
        TypeKind::from_catalog(b'b', "_mood", Some(TypeKind::Enum)),
        arr(TypeKind::Enum)
    );
    let boxes = TypeKind::from_catalog(b'b', "_box", Some(TypeKind::Other("box".into())));
    assert_eq!(boxes, TypeKind::Other("_box".into()));
}

#[test]
fn scalars() {
    assert_eq!(ok(&TypeKind::Bool, "t"), Kind::Bool(true));
    assert_eq!(ok(&TypeKind::Bool, "f"), Kind::Bool(false));
    assert_eq!(
        ok(&TypeKind::Int, "-9223372036854775808"),
        Kind::Int(i64::MIN)
    );
    assert_eq!(ok(&TypeKind::Int, "4294967295"), Kind::Int(4_294_967_295));
    let big = "1234567890123456789012345678901234567890.1234567890";
    for n in [
        big,
        "-0.0000000000000000000000000000000000000001",
        "12.3400",
        "NaN",
        "Infinity",
        "-Infinity",
        "0",
    ] {
        assert_eq!(ok(&TypeKind::Numeric, n), Kind::Decimal(n.to_owned()));
    }
    assert_eq!(ok(&TypeKind::Float8, "1.5e+300"), Kind::Float(1.5e300));
    assert_eq!(
        ok(&TypeKind::Float8, "Infinity"),
        Kind::Float(f64::INFINITY)
    );
    assert_eq!(
        ok(&TypeKind::Float4, "-Infinity"),
        Kind::Float(f64::NEG_INFINITY)
    );
    assert!(matches!(ok(&TypeKind::Float8, "NaN"), Kind::Float(f) if f.is_nan()));
    assert_eq!(ok(&TypeKind::Float8, "-0"), Kind::Float(-0.0));
    assert_eq!(ok(&TypeKind::Float8, "1e-320"), Kind::Float(1e-320));
    assert_eq!(ok(&TypeKind::Float4, "0.1"), Kind::Float(0.1));
    // float4's smallest subnormal prints as 1e-45 and still narrows back exactly.
    let Kind::Float(tiny) = ok(&TypeKind::Float4, "1e-45") else {
        panic!()
    };
    assert_eq!(tiny as f32, f32::from_bits(1));
    assert_eq!(ok(&TypeKind::Text, "ab   "), text("ab   "));
    assert_eq!(
        ok(&TypeKind::Bytea, "\\x0a0b"),
        Kind::Bytes(vec![10, 11].into())
    );
    assert_eq!(ok(&TypeKind::Bytea, "\\x"), Kind::Bytes(Vec::new().into()));
    assert_eq!(
        ok(&TypeKind::Bytea, "a\\\\\\000\\377"),
        Kind::Bytes(b"a\\\x00\xff".to_vec().into())
    );
    let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    assert_eq!(ok(&TypeKind::Uuid, uuid), Kind::Uuid(uuid.into()));
    assert_eq!(
        ok(&TypeKind::Uuid, &uuid.to_uppercase()),
        Kind::Uuid(uuid.into())
    );
    assert_eq!(
        ok(&TypeKind::Json, r#"{"k": "v\"q"}"#),
        Kind::Json(r#"{"k": "v\"q"}"#.into())
    );
    assert_eq!(ok(&TypeKind::Enum, "happy"), Kind::Enum("happy".into()));
    assert_eq!(
        ok(&TypeKind::Other("box".into()), "(3,4),(1,2)"),
        Kind::Other(Other {
            type_name: "box".into(),
            text: "(3,4),(1,2)".into()
        })
    );
}

#[test]
fn errors_name_the_type_and_truncate_the_text() {
    let e = err(&TypeKind::Int, "12x");
    assert_eq!(
        e.to_string(),
        "invalid int value \"12x\": not a 64-bit integer"
    );
    let long = "é".repeat(100);
    let ValueError::Invalid { text, .. } = err(&TypeKind::Uuid, &long) else {
        panic!()
    };
    assert!(text.len() <= 64 + '…'.len_utf8() && text.ends_with('…'));
    let e = decode_text(&TypeKind::Text, b"ab\xffcd").unwrap_err();
    assert!(
        matches!(&e, ValueError::InvalidUtf8 { offset: 2, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("text value is not valid UTF-8 at byte 2"),
        "{e}"
    );
}

#[test]
fn tuple_values_and_binary() {
    assert_eq!(
        decode_tuple_value(&TypeKind::Int, &TupleValue::Null).unwrap(),
        null()
    );
    assert_eq!(
        decode_tuple_value(&TypeKind::Text, &TupleValue::UnchangedToast).unwrap(),
        unchanged()
    );
    assert_eq!(
        decode_tuple_value(&TypeKind::Int, &TupleValue::Text(b"7"))
            .unwrap()
            .kind,
        Some(Kind::Int(7))
    );
    assert_eq!(
        decode_tuple_value(&TypeKind::Int, &TupleValue::Binary(&[0, 7]))
            .unwrap()
            .kind,
        Some(Kind::Other(Other {
            type_name: "int".into(),
            text: "\\x0007".into()
        }))
    );
}

//! Every literal below was printed by a PostgreSQL 15 server with the replication
//! session's settings (IntervalStyle=iso_8601, TimeZone=UTC unless noted,
//! extra_float_digits=3, bytea_output=hex); expected numbers come from the same server
//! (`extract(epoch ...)`, `date - '1970-01-01'`).
#![allow(clippy::unwrap_used)]

use super::*;
use tributary_proto::cdc::v1::{Array, Interval, TimeTz};

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
fn dates() {
    assert_eq!(ok(&TypeKind::Date, "1970-01-01"), Kind::Date(0));
    assert_eq!(ok(&TypeKind::Date, "2000-02-29"), Kind::Date(11016));
    assert_eq!(ok(&TypeKind::Date, "0044-03-15 BC"), Kind::Date(-735_160));
    assert_eq!(ok(&TypeKind::Date, "0001-01-01 BC"), Kind::Date(-719_528));
    assert_eq!(ok(&TypeKind::Date, "0001-12-31 BC"), Kind::Date(-719_163));
    assert_eq!(ok(&TypeKind::Date, "4713-01-01 BC"), Kind::Date(-2_440_550));
    assert_eq!(
        ok(&TypeKind::Date, "5874897-12-31"),
        Kind::Date(2_145_042_905)
    );
    assert_eq!(ok(&TypeKind::Date, "infinity"), Kind::Date(i32::MAX));
    assert_eq!(ok(&TypeKind::Date, "-infinity"), Kind::Date(i32::MIN));
    for bad in [
        "2023-02-29",
        "2024-13-01",
        "0000-01-01",
        "2024-01-01 AD",
        "2024-1-01",
        "",
        "99999999999-01-01",
    ] {
        err(&TypeKind::Date, bad);
    }
}

#[test]
fn times() {
    assert_eq!(ok(&TypeKind::Time, "24:00:00"), Kind::Time(86_400_000_000));
    assert_eq!(ok(&TypeKind::Time, "00:00:00.000001"), Kind::Time(1));
    assert_eq!(
        ok(&TypeKind::Time, "12:34:56.5"),
        Kind::Time(45_296_500_000)
    );
    let tz = |micros, offset_seconds| {
        Kind::Timetz(TimeTz {
            micros,
            offset_seconds,
        })
    };
    assert_eq!(
        ok(&TypeKind::TimeTz, "12:34:56.789+05:30"),
        tz(45_296_789_000, 19_800)
    );
    assert_eq!(ok(&TypeKind::TimeTz, "00:00:00-08"), tz(0, -28_800));
    assert_eq!(
        ok(&TypeKind::TimeTz, "12:00:00+05:30:15"),
        tz(43_200_000_000, 19_815)
    );
    assert_eq!(
        ok(&TypeKind::TimeTz, "23:59:59.999999-15:59"),
        tz(86_399_999_999, -57_540)
    );
    for bad in [
        "24:00:00.000001",
        "12:60:00",
        "12:00",
        "12:00:00.1234567",
        "12:00:00+16",
    ] {
        err(&TypeKind::TimeTz, bad);
    }
    err(&TypeKind::Time, "12:00:00+01");
}

#[test]
fn timestamps() {
    let ts = |t| ok(&TypeKind::Timestamp, t);
    let tstz = |t| ok(&TypeKind::Timestamptz, t);
    assert_eq!(
        ts("2024-03-01 12:34:56.5"),
        Kind::Timestamp(1_709_296_496_500_000)
    );
    assert_eq!(
        ts("0001-01-01 00:00:00 BC"),
        Kind::Timestamp(-62_167_219_200_000_000)
    );
    assert_eq!(
        ts("4713-11-24 00:00:00 BC"),
        Kind::Timestamp(-210_835_180_800_000_000)
    );
    assert_eq!(
        ts("294247-01-10 04:00:54.775806"),
        Kind::Timestamp(i64::MAX - 1)
    );
    // PostgreSQL's last representable years lie beyond i64 microseconds since 1970.
    err(&TypeKind::Timestamp, "294247-01-10 04:00:54.775807");
    err(&TypeKind::Timestamp, "294276-12-31 23:59:59.999999");
    assert_eq!(ts("infinity"), Kind::Timestamp(i64::MAX));
    assert_eq!(tstz("-infinity"), Kind::Timestamptz(i64::MIN));
    // '2024-03-01 12:34:56.123456+05:30' as printed with TimeZone=UTC.
    assert_eq!(
        tstz("2024-03-01 07:04:56.123456+00"),
        Kind::Timestamptz(1_709_276_696_123_456)
    );
    // Offsets other than UTC, as printed with other TimeZone settings.
    assert_eq!(
        tstz("2024-03-01 12:34:56.123456+05:30"),
        Kind::Timestamptz(1_709_276_696_123_456)
    );
    assert_eq!(
        tstz("2024-03-01 18:04:56.5+05:30"),
        Kind::Timestamptz(1_709_296_496_500_000)
    );
    assert_eq!(
        tstz("2024-03-01 04:34:56.5-08"),
        Kind::Timestamptz(1_709_296_496_500_000)
    );
    assert_eq!(
        tstz("1800-01-01 05:53:28+05:53:28"),
        Kind::Timestamptz(-5_364_662_400_000_000)
    );
    assert_eq!(
        tstz("1799-12-31 16:07:02-07:52:58"),
        Kind::Timestamptz(-5_364_662_400_000_000)
    );
    let ides = Kind::Timestamptz(-63_517_780_800_000_000);
    assert_eq!(tstz("0044-03-15 12:00:00+00 BC"), ides);
    assert_eq!(tstz("0044-03-15 17:53:28+05:53:28 BC"), ides);
    err(&TypeKind::Timestamptz, "2024-03-01 12:00:00");
    err(&TypeKind::Timestamp, "2024-03-01 12:00:00+00");
    err(&TypeKind::Timestamp, "2024-03-01 24:00:00");
    err(&TypeKind::Timestamp, "2024-03-01 12:00:00 BCE");
}

#[test]
fn intervals() {
    let i = |t| ok(&TypeKind::Interval, t);
    let hour = 3_600_000_000i64;
    assert_eq!(i("P1Y2M3DT4H5M6.5S"), iv(14, 3, 4 * hour + 306_500_000));
    assert_eq!(
        i("P-1Y-2M3DT-4H-5M-6.5S"),
        iv(-14, 3, -(4 * hour + 306_500_000))
    );
    assert_eq!(i("PT0S"), iv(0, 0, 0));
    assert_eq!(i("P7D"), iv(0, 7, 0));
    assert_eq!(i("P1W"), iv(0, 7, 0));
    assert_eq!(i("PT-0.000001S"), iv(0, 0, -1));
    assert_eq!(i("PT-0.5S"), iv(0, 0, -500_000));
    assert_eq!(i("P1M-1D"), iv(1, -1, 0));
    assert_eq!(i("P1DT-1S"), iv(0, 1, -1_000_000));
    assert_eq!(i("P1DT12H"), iv(0, 1, 12 * hour));
    assert_eq!(i("PT100H"), iv(0, 0, 100 * hour));
    assert_eq!(i("P-178000000Y"), iv(-2_136_000_000, 0, 0));
    assert_eq!(i("P178956970Y7M"), iv(i32::MAX, 0, 0));
    assert_eq!(i("P-178956970Y-8M"), iv(i32::MIN, 0, 0));
    assert_eq!(i("P2147483647D"), iv(0, i32::MAX, 0));
    assert_eq!(i("P-2147483648D"), iv(0, i32::MIN, 0));
    assert_eq!(i("PT2562047788H54.775807S"), iv(0, 0, i64::MAX));
    assert_eq!(i("PT-2562047788H-54.775807S"), iv(0, 0, -i64::MAX));
    assert_eq!(i("infinity"), iv(i32::MAX, i32::MAX, i64::MAX));
    for bad in [
        "",
        "P",
        "PT",
        "1 day",
        "P1H",
        "PT1D",
        "P1D1Y",
        "P1Y1Y",
        "P1.5Y",
        "P178956970Y8M",
        "PT1.1234567S",
        "P1DTT1H",
    ] {
        err(&TypeKind::Interval, bad);
    }
}

#[test]
fn arrays_of_every_builtin_kind() {
    let (e, d) = elements(&arr(TypeKind::Int), "{1,-32768,NULL}");
    assert_eq!(
        (e, d),
        (vec![Kind::Int(1), Kind::Int(-32768), NULL], vec![3])
    );
    let (e, _) = elements(&arr(TypeKind::Bool), "{t,f,NULL}");
    assert_eq!(e, vec![Kind::Bool(true), Kind::Bool(false), NULL]);
    let (e, _) = elements(
        &arr(TypeKind::Numeric),
        "{1234567890123456789012345678901234567890.1234567890,Infinity,-Infinity,-0.0000000000000000000000000000000000000001}",
    );
    assert_eq!(
        e[3],
        Kind::Decimal("-0.0000000000000000000000000000000000000001".into())
    );
    let (e, _) = elements(
        &arr(TypeKind::Float4),
        "{NaN,Infinity,-Infinity,3.4028235e+38,1e-45,0.1}",
    );
    assert_eq!(e[3], Kind::Float(3.4028235e38));
    let (e, _) = elements(
        &arr(TypeKind::Float8),
        "{NaN,-Infinity,1.5e+300,0,2.2250738585072014e-308,0.30000000000000004}",
    );
    assert_eq!(e[5], Kind::Float(0.30000000000000004));
    let (e, _) = elements(
        &arr(TypeKind::Date),
        r#"{"0044-03-15 BC",-infinity,2000-02-29}"#,
    );
    assert_eq!(
        e,
        vec![
            Kind::Date(-735_160),
            Kind::Date(i32::MIN),
            Kind::Date(11016)
        ]
    );
    let (e, _) = elements(
        &arr(TypeKind::Timestamp),
        r#"{infinity,"0001-01-01 00:00:00 BC","2024-03-01 12:34:56.5"}"#,
    );
    assert_eq!(e[1], Kind::Timestamp(-62_167_219_200_000_000));
    let (e, _) = elements(
        &arr(TypeKind::Timestamptz),
        r#"{-infinity,"2024-03-01 07:04:56.123456+00","0044-03-15 12:00:00+00 BC"}"#,
    );
    assert_eq!(e[2], Kind::Timestamptz(-63_517_780_800_000_000));
    let (e, _) = elements(&arr(TypeKind::Time), "{24:00:00,00:00:00.000001}");
    assert_eq!(e, vec![Kind::Time(86_400_000_000), Kind::Time(1)]);
    let (e, _) = elements(
        &arr(TypeKind::TimeTz),
        "{12:34:56.789+05:30,00:00:00-08,12:00:00+05:30:15}",
    );
    assert_eq!(
        e[2],
        Kind::Timetz(TimeTz {
            micros: 43_200_000_000,
            offset_seconds: 19_815
        })
    );
    let (e, _) = elements(
        &arr(TypeKind::Interval),
        "{P1Y2M3DT4H5M6.5S,P-1Y-2M3DT-4H-5M-6.5S,PT0S,PT-0.5S}",
    );
    assert_eq!(e[3], iv(0, 0, -500_000));
    let (e, _) = elements(
        &arr(TypeKind::Uuid),
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}",
    );
    assert_eq!(
        e,
        vec![
            Kind::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
            NULL
        ]
    );
    let (e, _) = elements(&arr(TypeKind::Bytea), r#"{"\\x00ff5c","\\x"}"#);
    assert_eq!(
        e,
        vec![
            Kind::Bytes(vec![0, 255, 0x5c].into()),
            Kind::Bytes(Vec::new().into())
        ]
    );
    let (e, _) = elements(
        &arr(TypeKind::Json),
        r#"{"{\"k\": \"v\\\"q\"}","null","[1, 2]"}"#,
    );
    assert_eq!(
        e,
        vec![
            Kind::Json(r#"{"k": "v\"q"}"#.into()),
            Kind::Json("null".into()),
            Kind::Json("[1, 2]".into())
        ]
    );
    let (e, _) = elements(&arr(TypeKind::Enum), r#"{happy,"very, \"odd\"",NULL}"#);
    assert_eq!(
        e,
        vec![
            Kind::Enum("happy".into()),
            Kind::Enum(r#"very, "odd""#.into()),
            NULL
        ]
    );
}

#[test]
fn array_text_syntax() {
    let t = arr(TypeKind::Text);
    let (e, d) = elements(
        &t,
        r#"{"a b","c\"d",NULL,"NULL","","x,y","back\\slash","{}"," sp "}"#,
    );
    assert_eq!(
        e,
        vec![
            text("a b"),
            text("c\"d"),
            NULL,
            text("NULL"),
            text(""),
            text("x,y"),
            text("back\\slash"),
            text("{}"),
            text(" sp ")
        ]
    );
    assert_eq!(d, vec![9]);
    assert_eq!(
        elements(&t, r#"{"null","Null"}"#).0,
        vec![text("null"), text("Null")]
    );
    assert_eq!(
        elements(&t, r#"{"é ü",日本}"#).0,
        vec![text("é ü"), text("日本")]
    );
    assert_eq!(
        elements(&t, "{\"a\nb\",\"tab\t\",ü}").0,
        vec![text("a\nb"), text("tab\t"), text("ü")]
    );
    assert_eq!(elements(&t, "{}"), (vec![], vec![]));
    assert_eq!(
        elements(&t, "[-2:-1]={x,y}"),
        (vec![text("x"), text("y")], vec![2])
    );
    assert_eq!(
        elements(&t, r#"{{a,b},{NULL,"c d"}}"#),
        (vec![text("a"), text("b"), NULL, text("c d")], vec![2, 2])
    );
    let i = arr(TypeKind::Int);
    let ints = |v: &[i64]| v.iter().map(|&n| Kind::Int(n)).collect::<Vec<_>>();
    assert_eq!(
        elements(&i, "{{1,2},{3,4}}"),
        (ints(&[1, 2, 3, 4]), vec![2, 2])
    );
    assert_eq!(elements(&i, "[0:1]={1,2}"), (ints(&[1, 2]), vec![2]));
    assert_eq!(
        elements(&i, "[1:2][3:4]={{1,2},{3,4}}"),
        (ints(&[1, 2, 3, 4]), vec![2, 2])
    );
    assert_eq!(
        elements(&i, "{{{1,2}},{{3,4}}}"),
        (ints(&[1, 2, 3, 4]), vec![2, 1, 2])
    );
    assert_eq!(elements(&i, "{{NULL}}"), (vec![NULL], vec![1, 1]));
    assert_eq!(elements(&i, " { 1 , 2 } "), (ints(&[1, 2]), vec![2]));
    for bad in [
        "",
        "1,2",
        "{1,2",
        "{1,,2}",
        "{{1,2},{3}}",
        "{{1},2}",
        "{1,{2}}",
        "{1}x",
        "[0:2]={1,2}",
        "[0:1]{1,2}",
        "{\"a}",
        "{{{{{{{1}}}}}}}",
    ] {
        err(&i, bad);
    }
    let e = err(&i, "{1,x,3}");
    assert!(
        matches!(&e, ValueError::ArrayElement { index: 1, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("_int") && e.to_string().contains("element 1"),
        "{e}"
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

/// Random text, and random corruptions of valid texts, must never panic.
#[test]
fn random_text_never_panics() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let kinds = [
        TypeKind::Bool,
        TypeKind::Int,
        TypeKind::Numeric,
        TypeKind::Float8,
        TypeKind::Bytea,
        TypeKind::Uuid,
        TypeKind::Date,
        TypeKind::Time,
        TypeKind::TimeTz,
        TypeKind::Timestamp,
        TypeKind::Timestamptz,
        TypeKind::Interval,
        arr(TypeKind::Text),
        arr(TypeKind::Int),
        arr(TypeKind::Timestamptz),
    ];
    let seeds: [&[u8]; 8] = [
        b"{{\"a\",NULL},{\"c\\\"d\",x}}",
        b"[0:1]={1,2}",
        b"P-1Y-2M3DT-4H-5M-6.5S",
        b"0044-03-15 12:00:00+05:30 BC",
        b"12:34:56.789+05:30:15",
        b"\\x0a0b",
        b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        b"-12.5e+3",
    ];
    let alphabet = b"{}[]:=,\"\\ NULL0123456789-+.PYMWDTHSBCxe\xc3\xa9\xff";
    let mut buf = Vec::new();
    for round in 0..100_000usize {
        buf.clear();
        if round % 2 == 0 {
            let len = (next() % 24) as usize;
            buf.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
        } else {
            buf.extend_from_slice(seeds[round / 2 % seeds.len()]);
            let i = (next() % buf.len() as u64) as usize;
            buf[i] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        for kind in &kinds {
            let _ = decode_text(kind, &buf);
        }
    }
}

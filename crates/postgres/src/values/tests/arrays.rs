#![allow(clippy::unwrap_used)]

use super::*;

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

/// Fuzzing finding: bounds at the ends of the i64 range overflowed `upper - lower + 1`
/// (a panic in debug builds, a wrapped length in release). Inputs kept in
/// fuzz/corpus/values-findings/_int.txt.
#[test]
fn dimension_bounds_at_the_integer_limits_are_errors() {
    let i = arr(TypeKind::Int);
    for bad in [
        "[-1:9223372036854775807]={1}",
        "[-9223372036854775808:0]={1}",
        "[-9223372036854775808:9223372036854775807]={1}",
        "[1:9223372036854775807][0:0]={{1}}",
    ] {
        let e = err(&i, bad);
        assert!(e.to_string().contains("dimension decoration"), "{e}");
    }
}

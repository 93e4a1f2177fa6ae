#![allow(clippy::unwrap_used)]

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let digit = |c: u8| (c as char).to_digit(16).unwrap() as u8;
    s.as_bytes()
        .chunks(2)
        .map(|p| digit(p[0]) << 4 | digit(p[1]))
        .collect()
}

/// Messages captured from PostgreSQL 15 (`pg_logical_slot_peek_binary_changes` with
/// proto_version 2, streaming on, messages on), in stream order.
#[test]
fn real_server_messages() {
    let stream = [
        "42000000000157a4580003045aa2c06240000002e4",
        "59000040017075626c6963006d6f6f6400",
        "520000400b7075626c69630074006400060169640000000017ffffffff006e6f74650000000019ffffffff006269670000000019ffffffff00747300000004a0ffffffff0061727200000003efffffffff006d0000004001ffffffff",
        "4300000000000157a458000000000157a4880003045aa2c06240",
        "44000040124f0002740000000131740000000132",
        "4d01000000000157a970706678000000000568656c6c6f",
        "4d00000000000157a9d86e74000000000200ff",
        "5400000002030000400b00004012",
        "53000002ed01",
        "52000002ed000040127075626c69630066006600020169640000000017ffffffff017600000006a4ffffffff",
        "49000002ed000040124e0002740000000131740000000131",
        "45",
        "63000002ed0000000000015ab00000000000015ab0300003045aa2c131b2",
    ];
    let bufs: Vec<Vec<u8>> = stream.iter().map(|h| unhex(h)).collect();
    let mut in_stream = false;
    let mut got = Vec::new();
    for b in &bufs {
        let msg = decode(b, in_stream).unwrap();
        match msg {
            PgOutputMessage::StreamStart { .. } => in_stream = true,
            PgOutputMessage::StreamStop => in_stream = false,
            _ => {}
        }
        got.push(msg);
    }
    assert_eq!(
        got[0],
        PgOutputMessage::Begin {
            final_lsn: Lsn(0x157_A458),
            commit_time: 849_212_254_216_768,
            xid: 740
        }
    );
    assert_eq!(
        got[1],
        PgOutputMessage::Type {
            xid: None,
            oid: 16385,
            namespace: "public",
            name: "mood"
        }
    );
    let PgOutputMessage::Relation(rel) = &got[2] else {
        panic!()
    };
    let cols: Vec<(&str, u32, bool)> = rel
        .columns
        .iter()
        .map(|c| (c.name, c.type_oid, c.key))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", 23, true),
            ("note", 25, false),
            ("big", 25, false),
            ("ts", 1184, false),
            ("arr", 1007, false),
            ("m", 16385, false)
        ]
    );
    assert_eq!(
        got[3],
        PgOutputMessage::Commit {
            flags: 0,
            commit_lsn: Lsn(0x157_A458),
            end_lsn: Lsn(0x157_A488),
            commit_time: 849_212_254_216_768
        }
    );
    let PgOutputMessage::Delete {
        xid: None,
        relation_oid: 16402,
        old: OldTuple::Full(old),
    } = &got[4]
    else {
        panic!()
    };
    assert_eq!(
        values(old),
        [TupleValue::Text(b"1"), TupleValue::Text(b"2")]
    );
    assert_eq!(
        got[5],
        PgOutputMessage::Message {
            xid: None,
            transactional: true,
            lsn: Lsn(0x157_A970),
            prefix: "pfx",
            content: b"hello"
        }
    );
    assert!(matches!(
        got[6],
        PgOutputMessage::Message {
            transactional: false,
            prefix: "nt",
            content: b"\x00\xff",
            ..
        }
    ));
    assert_eq!(
        got[7],
        PgOutputMessage::Truncate {
            xid: None,
            options: 3,
            relation_oids: vec![16395, 16402]
        }
    );
    assert_eq!(
        got[8],
        PgOutputMessage::StreamStart {
            xid: 749,
            first_segment: true
        }
    );
    let PgOutputMessage::Relation(rel) = &got[9] else {
        panic!()
    };
    assert_eq!(
        (rel.xid, rel.name, rel.replica_identity),
        (Some(749), "f", b'f')
    );
    let PgOutputMessage::Insert {
        xid: Some(749),
        relation_oid: 16402,
        new,
    } = &got[10]
    else {
        panic!()
    };
    assert_eq!(
        values(new),
        [TupleValue::Text(b"1"), TupleValue::Text(b"1")]
    );
    assert_eq!(got[11], PgOutputMessage::StreamStop);
    assert!(matches!(
        got[12],
        PgOutputMessage::StreamCommit {
            xid: 749,
            flags: 0,
            ..
        }
    ));
}

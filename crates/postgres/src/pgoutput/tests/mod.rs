#![allow(clippy::unwrap_used)]

use super::*;

mod real_server;
mod robustness;

/// Builds messages the way PostgreSQL's logicalproto.c writes them.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn tag(t: u8) -> Self {
        Buf(vec![t])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn xid(self, in_stream: bool, xid: u32) -> Self {
        if in_stream {
            self.u32(xid)
        } else {
            self
        }
    }
    /// A tuple of (kind, payload) columns.
    fn tuple(mut self, cols: &[(u8, &[u8])]) -> Self {
        self = self.i16(cols.len() as i16);
        for &(kind, data) in cols {
            self = self.u8(kind);
            if kind == b't' || kind == b'b' {
                self = self.i32(data.len() as i32).raw(data);
            }
        }
        self
    }
}

const ROW: &[(u8, &[u8])] = &[(b't', b"42"), (b'n', b""), (b'u', b""), (b'b', b"\x00\x01")];

fn values<'a>(t: &TupleData<'a>) -> Vec<TupleValue<'a>> {
    t.iter().collect::<Result<_, _>>().unwrap()
}

fn sxid(in_stream: bool) -> Option<u32> {
    in_stream.then_some(777)
}

#[test]
fn begin_commit_origin() {
    let b = Buf::tag(b'B').u64(0x16_B374_D848).i64(765_432_100).u32(991);
    assert_eq!(
        decode(&b.0, false).unwrap(),
        PgOutputMessage::Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_time: 765_432_100,
            xid: 991
        }
    );
    let c = Buf::tag(b'C').u8(0).u64(10).u64(20).i64(-5);
    assert_eq!(
        decode(&c.0, false).unwrap(),
        PgOutputMessage::Commit {
            flags: 0,
            commit_lsn: Lsn(10),
            end_lsn: Lsn(20),
            commit_time: -5
        }
    );
    let o = Buf::tag(b'O').u64(7).str("origin_é");
    assert_eq!(
        decode(&o.0, false).unwrap(),
        PgOutputMessage::Origin {
            commit_lsn: Lsn(7),
            name: "origin_é"
        }
    );
}

#[test]
fn relation_and_type() {
    for in_stream in [false, true] {
        let b = Buf::tag(b'R')
            .xid(in_stream, 777)
            .u32(16384)
            .str("public")
            .str("orders")
            .u8(b'd')
            .i16(2)
            .u8(1)
            .str("id")
            .u32(23)
            .i32(-1)
            .u8(0)
            .str("note")
            .u32(1043)
            .i32(104);
        let PgOutputMessage::Relation(rel) = decode(&b.0, in_stream).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.xid, sxid(in_stream));
        assert_eq!(
            (rel.oid, rel.namespace, rel.name, rel.replica_identity),
            (16384, "public", "orders", b'd')
        );
        assert_eq!(
            rel.columns,
            vec![
                RelationColumn {
                    key: true,
                    name: "id",
                    type_oid: 23,
                    type_modifier: -1
                },
                RelationColumn {
                    key: false,
                    name: "note",
                    type_oid: 1043,
                    type_modifier: 104
                },
            ]
        );

        let t = Buf::tag(b'Y')
            .xid(in_stream, 777)
            .u32(90001)
            .str("public")
            .str("mood");
        assert_eq!(
            decode(&t.0, in_stream).unwrap(),
            PgOutputMessage::Type {
                xid: sxid(in_stream),
                oid: 90001,
                namespace: "public",
                name: "mood"
            }
        );
    }
}

#[test]
fn insert_update_delete() {
    for in_stream in [false, true] {
        let i = Buf::tag(b'I')
            .xid(in_stream, 777)
            .u32(16384)
            .u8(b'N')
            .tuple(ROW);
        let PgOutputMessage::Insert {
            xid,
            relation_oid,
            new,
        } = decode(&i.0, in_stream).unwrap()
        else {
            panic!("not an insert")
        };
        assert_eq!((xid, relation_oid, new.len()), (sxid(in_stream), 16384, 4));
        assert_eq!(
            values(&new),
            vec![
                TupleValue::Text(b"42"),
                TupleValue::Null,
                TupleValue::UnchangedToast,
                TupleValue::Binary(b"\x00\x01")
            ]
        );

        let plain = Buf::tag(b'U')
            .xid(in_stream, 777)
            .u32(1)
            .u8(b'N')
            .tuple(ROW);
        let PgOutputMessage::Update { old: None, new, .. } = decode(&plain.0, in_stream).unwrap()
        else {
            panic!("update without old tuple")
        };
        assert_eq!(new.len(), 4);

        for (marker, full) in [(b'K', false), (b'O', true)] {
            let u = Buf::tag(b'U')
                .xid(in_stream, 777)
                .u32(1)
                .u8(marker)
                .tuple(&[(b't', b"old")])
                .u8(b'N')
                .tuple(&[(b't', b"new"), (b'n', b"")]);
            let PgOutputMessage::Update {
                xid,
                old: Some(old),
                new,
                ..
            } = decode(&u.0, in_stream).unwrap()
            else {
                panic!("update with old tuple")
            };
            assert_eq!(xid, sxid(in_stream));
            assert_eq!(matches!(old, OldTuple::Full(_)), full);
            assert_eq!(values(old.tuple()), vec![TupleValue::Text(b"old")]);
            assert_eq!(
                values(&new),
                vec![TupleValue::Text(b"new"), TupleValue::Null]
            );

            let d = Buf::tag(b'D')
                .xid(in_stream, 777)
                .u32(5)
                .u8(marker)
                .tuple(&[(b't', b"7")]);
            let PgOutputMessage::Delete {
                xid,
                relation_oid: 5,
                old,
            } = decode(&d.0, in_stream).unwrap()
            else {
                panic!("delete")
            };
            assert_eq!(xid, sxid(in_stream));
            assert_eq!(matches!(old, OldTuple::Full(_)), full);
            assert_eq!(values(old.tuple()), vec![TupleValue::Text(b"7")]);
        }
    }
}

#[test]
fn truncate_and_message() {
    for in_stream in [false, true] {
        let t = Buf::tag(b'T')
            .xid(in_stream, 777)
            .i32(2)
            .u8(3)
            .u32(16384)
            .u32(16390);
        assert_eq!(
            decode(&t.0, in_stream).unwrap(),
            PgOutputMessage::Truncate {
                xid: sxid(in_stream),
                options: 3,
                relation_oids: vec![16384, 16390]
            }
        );
        let m = Buf::tag(b'M')
            .xid(in_stream, 777)
            .u8(1)
            .u64(99)
            .str("app")
            .i32(3)
            .raw(b"\x00hi");
        assert_eq!(
            decode(&m.0, in_stream).unwrap(),
            PgOutputMessage::Message {
                xid: sxid(in_stream),
                transactional: true,
                lsn: Lsn(99),
                prefix: "app",
                content: b"\x00hi"
            }
        );
    }
}

#[test]
fn stream_messages() {
    let s = Buf::tag(b'S').u32(777).u8(1);
    assert_eq!(
        decode(&s.0, false).unwrap(),
        PgOutputMessage::StreamStart {
            xid: 777,
            first_segment: true
        }
    );
    assert_eq!(decode(b"E", true).unwrap(), PgOutputMessage::StreamStop);
    let c = Buf::tag(b'c').u32(777).u8(0).u64(1).u64(2).i64(3);
    assert_eq!(
        decode(&c.0, false).unwrap(),
        PgOutputMessage::StreamCommit {
            xid: 777,
            flags: 0,
            commit_lsn: Lsn(1),
            end_lsn: Lsn(2),
            commit_time: 3
        }
    );
    let a = Buf::tag(b'A').u32(777).u32(778);
    assert_eq!(
        decode(&a.0, false).unwrap(),
        PgOutputMessage::StreamAbort {
            xid: 777,
            subxid: 778
        }
    );
}

#[test]
fn tuple_parse_standalone() {
    let b = Buf::default().tuple(ROW).u8(b'X');
    let (tuple, used) = TupleData::parse(&b.0, 'I').unwrap();
    assert_eq!(used, b.0.len() - 1);
    assert_eq!(tuple.iter().len(), 4);
    assert!(TupleData::parse(&b.0[..used - 1], 'I').is_err());
}

#[test]
fn epoch_conversion() {
    assert_eq!(pg_epoch_micros_to_unix(0), 946_684_800_000_000);
    assert_eq!(pg_epoch_micros_to_unix(-946_684_800_000_000), 0);
    assert_eq!(pg_epoch_micros_to_unix(i64::MAX), i64::MAX);
}

#[test]
fn message_xid_reads_the_leading_xid_of_streamed_data_messages_only() {
    let mut insert = vec![b'I'];
    insert.extend_from_slice(&742u32.to_be_bytes());
    insert.extend_from_slice(&16384u32.to_be_bytes());
    assert_eq!(message_xid(&insert), Some(742));
    // Begin carries no leading xid; a truncated frame has none to read.
    assert_eq!(message_xid(b"B\0\0\0\x01"), None);
    assert_eq!(message_xid(b"I\0\0"), None);
    assert_eq!(message_xid(b""), None);
}

//! Decoder of pgoutput logical replication messages, protocol versions 1 and 2.
//!
//! Follows PostgreSQL's "Logical Replication Message Formats". Messages borrow from
//! the input buffer; tuple values are only located, not copied, so decoding an
//! Insert/Update/Delete allocates nothing.

mod reader;
mod tuple;

#[cfg(test)]
mod tests;

use tributary_core::Lsn;

use reader::Reader;
pub use tuple::{TupleData, TupleIter, TupleValue};

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Converts a PostgreSQL timestamp (microseconds since 2000-01-01 UTC, as pgoutput
/// sends commit times) to microseconds since the Unix epoch. Saturates instead of
/// overflowing, so PostgreSQL's ±infinity sentinels stay at the ends of the range.
pub fn pg_epoch_micros_to_unix(micros: i64) -> i64 {
    micros.saturating_add(PG_EPOCH_OFFSET_MICROS)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message tag 0x{tag:02x}")]
    UnknownTag { tag: u8 },
    #[error("pgoutput message {tag:?} truncated at byte {offset}: {field} needs {needed} bytes, {available} left")]
    Truncated {
        tag: char,
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("pgoutput message {tag:?}: {field} at byte {offset} has no NUL terminator")]
    Unterminated {
        tag: char,
        field: &'static str,
        offset: usize,
    },
    #[error("pgoutput message {tag:?}: {field} is not valid UTF-8 (byte {offset})")]
    InvalidUtf8 {
        tag: char,
        field: &'static str,
        offset: usize,
    },
    #[error("pgoutput message {tag:?}: negative {field} {length} at byte {offset}")]
    NegativeLength {
        tag: char,
        field: &'static str,
        offset: usize,
        length: i32,
    },
    #[error("pgoutput message {tag:?}: expected {expected} at byte {offset}, found 0x{found:02x}")]
    UnexpectedByte {
        tag: char,
        offset: usize,
        expected: &'static str,
        found: u8,
    },
    #[error("pgoutput message {tag:?}: {count} unexpected trailing bytes at byte {offset}")]
    TrailingBytes {
        tag: char,
        offset: usize,
        count: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage<'a> {
    /// `commit_time`: microseconds since 2000-01-01 UTC, as sent (see [`pg_epoch_micros_to_unix`]).
    Begin {
        final_lsn: Lsn,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: &'a str,
    },
    Relation(Relation<'a>),
    Type {
        xid: Option<u32>,
        oid: u32,
        namespace: &'a str,
        name: &'a str,
    },
    Insert {
        xid: Option<u32>,
        relation_oid: u32,
        new: TupleData<'a>,
    },
    Update {
        xid: Option<u32>,
        relation_oid: u32,
        old: Option<OldTuple<'a>>,
        new: TupleData<'a>,
    },
    Delete {
        xid: Option<u32>,
        relation_oid: u32,
        old: OldTuple<'a>,
    },
    /// `options`: bit 1 = CASCADE, bit 2 = RESTART IDENTITY.
    Truncate {
        xid: Option<u32>,
        options: u8,
        relation_oids: Vec<u32>,
    },
    Message {
        xid: Option<u32>,
        transactional: bool,
        lsn: Lsn,
        prefix: &'a str,
        content: &'a [u8],
    },
    StreamStart {
        xid: u32,
        first_segment: bool,
    },
    StreamStop,
    StreamCommit {
        xid: u32,
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    StreamAbort {
        xid: u32,
        subxid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation<'a> {
    pub xid: Option<u32>,
    pub oid: u32,
    /// Empty for `pg_catalog`, as PostgreSQL sends it.
    pub namespace: &'a str,
    pub name: &'a str,
    /// `b'd'` default, `b'n'` nothing, `b'f'` full, `b'i'` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn<'a> {
    /// Part of the replica identity (flags & 1).
    pub key: bool,
    pub name: &'a str,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTuple<'a> {
    /// `'K'`: the replica identity columns only (others are null).
    Key(TupleData<'a>),
    /// `'O'`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData<'a>),
}

impl<'a> OldTuple<'a> {
    pub fn tuple(&self) -> &TupleData<'a> {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

/// The xid that a streamed data message carries right after its tag (protocol 2): the
/// subtransaction a change inside a streamed transaction belongs to, read without decoding.
pub fn message_xid(data: &[u8]) -> Option<u32> {
    match data.first()? {
        b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M' => {
            let b = data.get(1..5)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        _ => None,
    }
}

/// Decodes one pgoutput message (the payload of an XLogData frame).
///
/// `in_stream`: true between StreamStart and StreamStop, when Relation, Type, Insert,
/// Update, Delete, Truncate and Message carry a leading xid (protocol 2).
pub fn decode(buf: &[u8], in_stream: bool) -> Result<PgOutputMessage<'_>, DecodeError> {
    let (&tag, body) = buf.split_first().ok_or(DecodeError::Empty)?;
    let mut r = Reader::new(body, 1, char::from(tag));
    let msg = match tag {
        b'B' => PgOutputMessage::Begin {
            final_lsn: Lsn(r.u64("final LSN")?),
            commit_time: r.i64("commit timestamp")?,
            xid: r.u32("xid")?,
        },
        b'C' => PgOutputMessage::Commit {
            flags: r.u8("flags")?,
            commit_lsn: Lsn(r.u64("commit LSN")?),
            end_lsn: Lsn(r.u64("end LSN")?),
            commit_time: r.i64("commit timestamp")?,
        },
        b'O' => PgOutputMessage::Origin {
            commit_lsn: Lsn(r.u64("commit LSN")?),
            name: r.cstr("origin name")?,
        },
        b'R' => PgOutputMessage::Relation(relation(&mut r, in_stream)?),
        b'Y' => PgOutputMessage::Type {
            xid: stream_xid(&mut r, in_stream)?,
            oid: r.u32("type OID")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        },
        b'I' => {
            let xid = stream_xid(&mut r, in_stream)?;
            let relation_oid = r.u32("relation OID")?;
            expect(&mut r, b'N', "new tuple marker 'N'")?;
            PgOutputMessage::Insert {
                xid,
                relation_oid,
                new: TupleData::scan(&mut r)?,
            }
        }
        b'U' => {
            let xid = stream_xid(&mut r, in_stream)?;
            let relation_oid = r.u32("relation OID")?;
            let (old, new) = match r.u8("tuple marker")? {
                b'N' => (None, TupleData::scan(&mut r)?),
                marker => {
                    let old = old_tuple(&mut r, marker)?;
                    expect(&mut r, b'N', "new tuple marker 'N'")?;
                    (Some(old), TupleData::scan(&mut r)?)
                }
            };
            PgOutputMessage::Update {
                xid,
                relation_oid,
                old,
                new,
            }
        }
        b'D' => {
            let xid = stream_xid(&mut r, in_stream)?;
            let relation_oid = r.u32("relation OID")?;
            let marker = r.u8("old tuple marker")?;
            PgOutputMessage::Delete {
                xid,
                relation_oid,
                old: old_tuple(&mut r, marker)?,
            }
        }
        b'T' => truncate(&mut r, in_stream)?,
        b'M' => PgOutputMessage::Message {
            xid: stream_xid(&mut r, in_stream)?,
            transactional: r.u8("flags")? & 1 != 0,
            lsn: Lsn(r.u64("message LSN")?),
            prefix: r.cstr("message prefix")?,
            content: {
                let len = r.len32("content length")?;
                r.take(len, "message content")?
            },
        },
        b'S' => PgOutputMessage::StreamStart {
            xid: r.u32("xid")?,
            first_segment: r.u8("first segment flag")? == 1,
        },
        b'E' => PgOutputMessage::StreamStop,
        b'c' => PgOutputMessage::StreamCommit {
            xid: r.u32("xid")?,
            flags: r.u8("flags")?,
            commit_lsn: Lsn(r.u64("commit LSN")?),
            end_lsn: Lsn(r.u64("end LSN")?),
            commit_time: r.i64("commit timestamp")?,
        },
        b'A' => PgOutputMessage::StreamAbort {
            xid: r.u32("xid")?,
            subxid: r.u32("subtransaction xid")?,
        },
        _ => return Err(DecodeError::UnknownTag { tag }),
    };
    r.finish()?;
    Ok(msg)
}

fn stream_xid(r: &mut Reader<'_>, in_stream: bool) -> Result<Option<u32>, DecodeError> {
    if in_stream {
        r.u32("xid").map(Some)
    } else {
        Ok(None)
    }
}

fn expect(r: &mut Reader<'_>, byte: u8, what: &'static str) -> Result<(), DecodeError> {
    match r.u8(what)? {
        b if b == byte => Ok(()),
        other => Err(r.unexpected(what, other)),
    }
}

fn old_tuple<'a>(r: &mut Reader<'a>, marker: u8) -> Result<OldTuple<'a>, DecodeError> {
    match marker {
        b'K' => TupleData::scan(r).map(OldTuple::Key),
        b'O' => TupleData::scan(r).map(OldTuple::Full),
        other => Err(r.unexpected("old tuple marker 'K' or 'O'", other)),
    }
}

/// Smallest encoding of one Relation column: flags, empty name + NUL, type OID, typmod.
const MIN_RELATION_COLUMN_LEN: usize = 1 + 1 + 4 + 4;

fn relation<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<Relation<'a>, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let oid = r.u32("relation OID")?;
    let namespace = r.cstr("relation namespace")?;
    let name = r.cstr("relation name")?;
    let replica_identity = match r.u8("replica identity")? {
        ri @ (b'd' | b'n' | b'f' | b'i') => ri,
        other => return Err(r.unexpected("replica identity 'd', 'n', 'f' or 'i'", other)),
    };
    let count = r.len16("column count")?;
    // Capacity from the bytes actually present, never from the untrusted count alone.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / MIN_RELATION_COLUMN_LEN));
    for _ in 0..count {
        columns.push(RelationColumn {
            key: r.u8("column flags")? & 1 != 0,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type OID")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn truncate<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<PgOutputMessage<'a>, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let count = r.len32("relation count")?;
    let options = r.u8("truncate options")?;
    let oids = r.take(count.saturating_mul(4), "relation OIDs")?;
    let relation_oids = oids
        .chunks_exact(4)
        .map(|c| c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        .collect();
    Ok(PgOutputMessage::Truncate {
        xid,
        options,
        relation_oids,
    })
}

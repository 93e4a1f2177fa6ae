//! Truncated, corrupted and random input: always an error, never a panic.
#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn every_truncation_is_an_error() {
    let messages = [
        Buf::tag(b'B').u64(1).i64(2).u32(3),
        Buf::tag(b'R')
            .u32(1)
            .str("s")
            .str("t")
            .u8(b'f')
            .i16(1)
            .u8(1)
            .str("c")
            .u32(23)
            .i32(-1),
        Buf::tag(b'I').u32(1).u8(b'N').tuple(ROW),
        Buf::tag(b'U')
            .u32(1)
            .u8(b'O')
            .tuple(ROW)
            .u8(b'N')
            .tuple(ROW),
        Buf::tag(b'T').i32(1).u8(0).u32(9),
        Buf::tag(b'M').u8(0).u64(1).str("p").i32(2).raw(b"ab"),
    ];
    for m in &messages {
        assert!(decode(&m.0, false).is_ok());
        for cut in 0..m.0.len() {
            assert!(
                decode(&m.0[..cut], false).is_err(),
                "prefix {cut} of {:?}",
                m.0
            );
        }
        let mut longer = m.0.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, false),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
}

#[test]
fn garbage_is_reported_with_position() {
    assert_eq!(decode(b"", false), Err(DecodeError::Empty));
    assert_eq!(
        decode(b"Z", false),
        Err(DecodeError::UnknownTag { tag: b'Z' })
    );
    let bad_utf8 = Buf::tag(b'O').u64(1).raw(b"ab\xff\0");
    assert_eq!(
        decode(&bad_utf8.0, false),
        Err(DecodeError::InvalidUtf8 {
            tag: 'O',
            field: "origin name",
            offset: 11
        })
    );
    let no_nul = Buf::tag(b'O').u64(1).raw(b"abc");
    assert!(matches!(
        decode(&no_nul.0, false),
        Err(DecodeError::Unterminated { offset: 9, .. })
    ));
    let negative = Buf::tag(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-2);
    assert!(matches!(
        decode(&negative.0, false),
        Err(DecodeError::NegativeLength {
            length: -2,
            offset: 9,
            ..
        })
    ));
    let kind = Buf::tag(b'I').u32(1).u8(b'N').i16(1).u8(b'x');
    let err = decode(&kind.0, false).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnexpectedByte {
            tag: 'I',
            offset: 8,
            expected: "tuple column kind 'n', 'u', 't' or 'b'",
            found: b'x'
        }
    );
    assert!(err.to_string().contains("byte 8"), "{err}");
    let marker = Buf::tag(b'D').u32(1).u8(b'N').tuple(ROW);
    assert!(matches!(
        decode(&marker.0, false),
        Err(DecodeError::UnexpectedByte { found: b'N', .. })
    ));
    let huge = Buf::tag(b'T').i32(i32::MAX).u8(0);
    assert!(matches!(
        decode(&huge.0, false),
        Err(DecodeError::Truncated { .. })
    ));
    let huge_rel = Buf::tag(b'R')
        .u32(1)
        .str("s")
        .str("t")
        .u8(b'd')
        .i16(i16::MAX);
    assert!(matches!(
        decode(&huge_rel.0, false),
        Err(DecodeError::Truncated { .. })
    ));
    let ri = Buf::tag(b'R').u32(1).str("s").str("t").u8(b'x').i16(0);
    assert!(matches!(
        decode(&ri.0, false),
        Err(DecodeError::UnexpectedByte { found: b'x', .. })
    ));
    // Stream-mode framing read without the xid is misaligned and must not succeed silently.
    let streamed = Buf::tag(b'I').u32(777).u32(1).u8(b'N').tuple(ROW);
    assert!(decode(&streamed.0, false).is_err());
}

/// No byte string may panic: random garbage, and random corruptions of valid messages.
#[test]
fn random_bytes_never_panic() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let tags = b"BCORYIUDTMSEcAK";
    let valid = Buf::tag(b'U')
        .u32(1)
        .u8(b'O')
        .tuple(ROW)
        .u8(b'N')
        .tuple(ROW)
        .0;
    let mut buf = Vec::new();
    for round in 0..200_000u32 {
        buf.clear();
        if round % 2 == 0 {
            let len = (next() % 48) as usize;
            buf.extend((0..len).map(|_| next() as u8));
            if let Some(first) = buf.first_mut() {
                *first = tags[(next() % tags.len() as u64) as usize];
            }
        } else {
            buf.extend_from_slice(&valid);
            for _ in 0..1 + next() % 3 {
                let i = (next() % buf.len() as u64) as usize;
                buf[i] = next() as u8;
            }
        }
        for in_stream in [false, true] {
            if let Ok(msg) = decode(&buf, in_stream) {
                let tuples: Vec<TupleData<'_>> = match msg {
                    PgOutputMessage::Insert { new, .. } => vec![new],
                    PgOutputMessage::Update { old, new, .. } => {
                        old.iter().map(|o| *o.tuple()).chain([new]).collect()
                    }
                    PgOutputMessage::Delete { old, .. } => vec![*old.tuple()],
                    _ => vec![],
                };
                for t in tuples {
                    assert!(t.iter().all(|v| v.is_ok()));
                }
            }
        }
    }
}

//! Bounds-checked big-endian cursor over one pgoutput message.

use super::DecodeError;

/// Reads fields front to back; every read is checked so that no input can panic.
/// `base` is the offset of `buf` inside the whole message, so that errors point at
/// the byte of the message rather than of a sub-slice.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    tag: char,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize, tag: char) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            tag,
        }
    }

    /// Absolute offset of the next byte within the message.
    pub(super) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn tag(&self) -> char {
        self.tag
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The bytes between two positions previously returned by [`Reader::pos`].
    pub(super) fn slice(&self, from: usize, to: usize) -> &'a [u8] {
        self.buf.get(from..to).unwrap_or_default()
    }

    pub(super) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(DecodeError::Truncated {
                tag: self.tag,
                field,
                offset: self.offset(),
                needed: n,
                available: self.remaining(),
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(super) fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        self.array(field).map(i16::from_be_bytes)
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_be_bytes)
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    /// A signed Int16/Int32 count or length that must not be negative.
    pub(super) fn len16(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let n = self.i16(field)?;
        usize::try_from(n).map_err(|_| self.negative(field, offset, n.into()))
    }

    pub(super) fn len32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let n = self.i32(field)?;
        usize::try_from(n).map_err(|_| self.negative(field, offset, n))
    }

    fn negative(&self, field: &'static str, offset: usize, length: i32) -> DecodeError {
        DecodeError::NegativeLength {
            tag: self.tag,
            field,
            offset,
            length,
        }
    }

    /// A NUL-terminated UTF-8 string (the NUL is consumed, not returned).
    pub(super) fn cstr(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.offset();
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated {
                tag: self.tag,
                field,
                offset,
            })?;
        let bytes = rest.get(..nul).unwrap_or_default();
        let s = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            tag: self.tag,
            field,
            offset: offset + e.valid_up_to(),
        })?;
        self.pos += nul + 1;
        Ok(s)
    }

    pub(super) fn unexpected(&self, expected: &'static str, found: u8) -> DecodeError {
        DecodeError::UnexpectedByte {
            tag: self.tag,
            offset: self.offset().saturating_sub(1),
            expected,
            found,
        }
    }

    /// Rejects leftovers: they would mean the stream is not what we think it is.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                tag: self.tag,
                offset: self.offset(),
                count,
            }),
        }
    }
}

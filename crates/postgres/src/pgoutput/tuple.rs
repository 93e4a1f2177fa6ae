//! TupleData: validated once while decoding the message, then read lazily.

use super::reader::Reader;
use super::DecodeError;

/// Lazily decoded tuple: holds the raw bytes; iterating allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct TupleData<'a> {
    columns: usize,
    /// The column records after the Int16 column count.
    data: &'a [u8],
    /// Offset of `data` within its message, and the message tag, for error messages.
    offset: usize,
    tag: char,
}

/// One column of a [`TupleData`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TupleValue<'a> {
    /// `'n'`: SQL NULL.
    Null,
    /// `'u'`: an unchanged TOASTed value that PostgreSQL did not send.
    UnchangedToast,
    /// `'t'`: the value in PostgreSQL's text form.
    Text(&'a [u8]),
    /// `'b'`: the value in binary form (only with the `binary` option).
    Binary(&'a [u8]),
}

impl<'a> TupleData<'a> {
    /// Parses a TupleData (Int16 count, then the columns) at the start of `buf`,
    /// validating every length; returns it and the number of bytes it spans.
    /// `tag` only labels errors. Useful to decode a tuple outside a whole message.
    pub fn parse(buf: &'a [u8], tag: char) -> Result<(TupleData<'a>, usize), DecodeError> {
        let mut r = Reader::new(buf, 0, tag);
        let tuple = Self::scan(&mut r)?;
        Ok((tuple, r.pos()))
    }

    /// Walks the tuple once so the caller knows where the next field starts.
    pub(super) fn scan(r: &mut Reader<'a>) -> Result<TupleData<'a>, DecodeError> {
        let columns = r.len16("tuple column count")?;
        let start = r.pos();
        let offset = r.offset();
        for _ in 0..columns {
            next_value(r)?;
        }
        Ok(TupleData {
            columns,
            data: r.slice(start, r.pos()),
            offset,
            tag: r.tag(),
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns
    }

    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    pub fn iter(&self) -> TupleIter<'a> {
        TupleIter {
            reader: Reader::new(self.data, self.offset, self.tag),
            remaining: self.columns,
        }
    }
}

/// Two tuples are equal when they hold the same values, wherever they were read from.
impl PartialEq for TupleData<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.columns == other.columns && self.data == other.data
    }
}

impl Eq for TupleData<'_> {}

impl<'a> IntoIterator for &TupleData<'a> {
    type Item = Result<TupleValue<'a>, DecodeError>;
    type IntoIter = TupleIter<'a>;
    fn into_iter(self) -> TupleIter<'a> {
        self.iter()
    }
}

/// Iterator over the values of a [`TupleData`]; stops after the first error.
#[derive(Clone, Debug)]
pub struct TupleIter<'a> {
    reader: Reader<'a>,
    remaining: usize,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = Result<TupleValue<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let item = next_value(&mut self.reader);
        self.remaining = if item.is_ok() { self.remaining - 1 } else { 0 };
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

fn next_value<'a>(r: &mut Reader<'a>) -> Result<TupleValue<'a>, DecodeError> {
    match r.u8("tuple column kind")? {
        b'n' => Ok(TupleValue::Null),
        b'u' => Ok(TupleValue::UnchangedToast),
        b't' => {
            let len = r.len32("text value length")?;
            r.take(len, "text value").map(TupleValue::Text)
        }
        b'b' => {
            let len = r.len32("binary value length")?;
            r.take(len, "binary value").map(TupleValue::Binary)
        }
        other => Err(r.unexpected("tuple column kind 'n', 'u', 't' or 'b'", other)),
    }
}

/// Exact because a [`TupleData`] is only built after its columns were validated.
impl ExactSizeIterator for TupleIter<'_> {}

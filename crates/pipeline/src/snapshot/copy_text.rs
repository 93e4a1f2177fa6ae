//! PostgreSQL's COPY text format: rows end with `\n`, fields are separated by tabs, `\N` is
//! NULL, and backslash escapes stand for special characters. The values themselves are in the
//! same text form as pgoutput's, so the same decoder converts both.

use std::borrow::Cow;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("COPY row {row}: {message}")]
pub struct CopyParseError {
    pub row: u64,
    pub message: String,
}

/// Splits one row (without its `\n`) into fields; `None` is NULL.
pub fn parse_row<'a>(
    line: &'a [u8],
    row: u64,
    out: &mut Vec<Option<Cow<'a, [u8]>>>,
) -> Result<(), CopyParseError> {
    out.clear();
    for field in line.split(|b| *b == b'\t') {
        if field == b"\\N" {
            out.push(None);
        } else if field.contains(&b'\\') {
            out.push(Some(Cow::Owned(unescape(field, row)?)));
        } else {
            out.push(Some(Cow::Borrowed(field)));
        }
    }
    Ok(())
}

fn unescape(field: &[u8], row: u64) -> Result<Vec<u8>, CopyParseError> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&next) = field.get(i + 1) else {
            return Err(CopyParseError {
                row,
                message: "a field ends with a lone backslash".into(),
            });
        };
        i += 2;
        match next {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let digits: Vec<u8> = field[i..]
                    .iter()
                    .take(2)
                    .take_while(|c| c.is_ascii_hexdigit())
                    .copied()
                    .collect();
                let text = std::str::from_utf8(&digits).unwrap_or("");
                let value = u8::from_str_radix(text, 16).map_err(|_| CopyParseError {
                    row,
                    message: "bad \\x escape".into(),
                })?;
                out.push(value);
                i += digits.len();
            }
            b'0'..=b'7' => {
                let mut value: u32 = u32::from(next - b'0');
                let mut taken = 0;
                while taken < 2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                            taken += 1;
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xFF) as u8);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Reassembles rows from COPY data chunks, which need not align with rows.
#[derive(Default)]
pub struct RowSplitter {
    pending: Vec<u8>,
}

impl RowSplitter {
    /// Calls `each` for every complete row in `chunk` (plus what was pending).
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut data = chunk;
        if !self.pending.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    self.pending.extend_from_slice(&data[..end]);
                    let line = std::mem::take(&mut self.pending);
                    each(&line)?;
                    data = &data[end + 1..];
                }
                None => {
                    self.pending.extend_from_slice(data);
                    return Ok(());
                }
            }
        }
        while let Some(end) = data.iter().position(|b| *b == b'\n') {
            each(&data[..end])?;
            data = &data[end + 1..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Whether a partial row is left over (a truncated COPY stream).
    pub fn has_partial_row(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nulls_escapes_and_split_rows() {
        let mut fields = Vec::new();
        parse_row(b"1\t\\N\ta\\tb\\\\c\\nd\t\\x41\\101", 1, &mut fields).expect("row");
        let got: Vec<Option<Vec<u8>>> = fields
            .iter()
            .map(|f| f.as_ref().map(|c| c.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                Some(b"1".to_vec()),
                None,
                Some(b"a\tb\\c\nd".to_vec()),
                Some(b"AA".to_vec())
            ]
        );
        assert!(parse_row(b"x\\", 2, &mut fields).is_err());

        let mut splitter = RowSplitter::default();
        let mut rows: Vec<Vec<u8>> = Vec::new();
        for chunk in [&b"a\tb\nc"[..], b"d\te\n", b"f\n"] {
            splitter
                .push::<()>(chunk, |line| {
                    rows.push(line.to_vec());
                    Ok(())
                })
                .expect("push");
        }
        assert_eq!(
            rows,
            vec![b"a\tb".to_vec(), b"cd\te".to_vec(), b"f".to_vec()]
        );
        assert!(!splitter.has_partial_row());
    }
}

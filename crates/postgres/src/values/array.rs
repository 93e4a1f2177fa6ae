//! PostgreSQL array text syntax: `{1,2,NULL}`, `{{1,2},{3,4}}`, `[0:1]={1,2}`,
//! quoted elements with backslash escapes, and unquoted `NULL` as SQL NULL.

use tributary_proto::cdc::v1::{Array, Value};

use super::{decode_str, null, TypeKind, ValueError};

/// PostgreSQL's MAXDIM; also bounds the parser's recursion.
const MAX_DIMENSIONS: usize = 6;

pub(super) enum ArrayError {
    Syntax(&'static str),
    /// An element (0-based, row-major) that its type rejected.
    Element(usize, ValueError),
}

impl From<&'static str> for ArrayError {
    fn from(reason: &'static str) -> Self {
        ArrayError::Syntax(reason)
    }
}

type R<T> = Result<T, ArrayError>;

pub(super) fn parse(element: &TypeKind, text: &str) -> R<Array> {
    let mut p = Parser {
        s: text,
        i: 0,
        element,
        dims: Vec::new(),
        elements: Vec::new(),
        scratch: String::new(),
    };
    p.skip_ws();
    let bounds = p.bounds()?;
    p.skip_ws();
    let ndim = p.count_open_braces();
    if ndim == 0 {
        return Err("expected '{'".into());
    }
    if ndim > MAX_DIMENSIONS {
        return Err("more than 6 dimensions".into());
    }
    p.dims = vec![0; ndim];
    p.level(0)?;
    p.skip_ws();
    if !p.rest().is_empty() {
        return Err("unexpected characters after the array".into());
    }
    if let Some(bounds) = bounds {
        if bounds != p.dims {
            return Err("dimension decoration does not match the contents".into());
        }
    }
    Ok(Array {
        elements: p.elements,
        dimensions: p.dims,
    })
}

struct Parser<'a, 'k> {
    s: &'a str,
    i: usize,
    element: &'k TypeKind,
    /// Length of each dimension, from the first sub-array seen at that depth.
    dims: Vec<u32>,
    elements: Vec<Value>,
    /// Reused for elements that contain backslash escapes.
    scratch: String,
}

impl<'a> Parser<'a, '_> {
    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn count_open_braces(&self) -> usize {
        self.rest()
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .take_while(|&b| b == b'{')
            .count()
    }

    /// Optional `[lb:ub][lb:ub]=` prefix; returns the dimension lengths it declares.
    fn bounds(&mut self) -> R<Option<Vec<u32>>> {
        if self.peek() != Some(b'[') {
            return Ok(None);
        }
        let Some((decoration, _)) = self.rest().split_once('=') else {
            return Err("dimension decoration without '='".into());
        };
        let bad = "bad dimension decoration";
        let inner = decoration
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
            .ok_or(bad)?;
        let mut lengths = Vec::new();
        for dim in inner.split("][") {
            let (lower, upper) = dim.split_once(':').unwrap_or(("1", dim));
            let lower: i64 = lower.parse().map_err(|_| bad)?;
            let upper: i64 = upper.parse().map_err(|_| bad)?;
            // Checked: both bounds come from the input, and `i64::MAX - -1` overflows.
            let length = upper
                .checked_sub(lower)
                .and_then(|d| d.checked_add(1))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(bad)?;
            lengths.push(length);
        }
        self.i += decoration.len() + 1;
        Ok(Some(lengths))
    }

    /// One `{...}` at depth `d`: sub-arrays above the last dimension, elements at it.
    fn level(&mut self, d: usize) -> R<()> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err("expected '{'".into());
        }
        self.i += 1;
        let leaf = d + 1 == self.dims.len();
        if d == 0 && leaf {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                // `{}`: PostgreSQL's empty array has no dimensions at all.
                self.i += 1;
                self.dims.clear();
                return Ok(());
            }
        }
        let mut count: u32 = 0;
        loop {
            if leaf {
                self.element()?;
            } else {
                self.level(d + 1)?;
            }
            count = count.saturating_add(1);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err("expected ',' or '}'".into()),
            }
        }
        match self.dims.get_mut(d) {
            Some(len) if *len == 0 => *len = count,
            Some(len) if *len == count => {}
            _ => return Err("sub-arrays have different lengths".into()),
        }
        Ok(())
    }

    fn element(&mut self) -> R<()> {
        self.skip_ws();
        let (text, quoted) = match self.peek() {
            Some(b'"') => {
                self.i += 1;
                (self.quoted()?, true)
            }
            Some(b'{') => {
                return Err("nested '{' deeper than the first element's dimensions".into())
            }
            _ => (self.unquoted()?, false),
        };
        let value = match text {
            Text::Slice(s) if !quoted && s.eq_ignore_ascii_case("NULL") => Ok(null()),
            Text::Slice(s) => decode_str(self.element, s),
            Text::Scratch => decode_str(self.element, &self.scratch),
        };
        let value = value.map_err(|e| ArrayError::Element(self.elements.len(), e))?;
        self.elements.push(value);
        Ok(())
    }

    /// After the opening quote; up to and including the closing one.
    fn quoted(&mut self) -> R<Text<'a>> {
        let start = self.i;
        let body = self.rest();
        let end = body
            .find(['"', '\\'])
            .ok_or("unterminated quoted element")?;
        if body.as_bytes().get(end) == Some(&b'"') {
            self.i += end + 1;
            return Ok(Text::Slice(body.get(..end).unwrap_or_default()));
        }
        self.scratch.clear();
        let mut chars = body.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.i = start + at + 1;
                    return Ok(Text::Scratch);
                }
                '\\' => self
                    .scratch
                    .push(chars.next().ok_or("unterminated quoted element")?.1),
                c => self.scratch.push(c),
            }
        }
        Err("unterminated quoted element".into())
    }

    /// Up to the next ',' or '}', surrounding whitespace trimmed.
    fn unquoted(&mut self) -> R<Text<'a>> {
        let body = self.rest();
        let end = body
            .find([',', '}', '"', '{', '\\'])
            .ok_or("unterminated array")?;
        match body.as_bytes().get(end) {
            Some(b',' | b'}') => {}
            _ => return Err("unexpected '\"', '{' or '\\' in an unquoted element".into()),
        }
        let text = body.get(..end).unwrap_or_default().trim_end();
        if text.is_empty() {
            return Err("empty unquoted element".into());
        }
        self.i += end;
        Ok(Text::Slice(text))
    }
}

/// Where an element's text is: in the input, or unescaped into the scratch buffer.
enum Text<'a> {
    Slice(&'a str),
    Scratch,
}

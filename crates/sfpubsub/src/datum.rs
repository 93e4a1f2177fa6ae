//! A bounds check of a bare Avro datum against its schema, run before `apache-avro` decodes
//! it. apache-avro 0.20 trusts what it reads (found by fuzzing, see docs/fuzzing.md):
//!
//! * an array or map block count is passed to `Vec::reserve` as a number of `Value`s — a
//!   6-byte payload declaring 536 million strings asks for 30 GB and aborts the process;
//! * a string, bytes or fixed length up to 512 MiB is allocated before the bytes are read;
//! * a payload cut short inside a string, boolean or union index decodes as `null` instead
//!   of failing, so a truncated event would lose fields silently;
//! * a record that contains itself recurses without end (the schema comes from the server).
//!
//! This walk reads the same encoding without allocating: every length must fit in the bytes
//! that are left, nesting is bounded, and the datum must end exactly where the input does.

use apache_avro::schema::{Name, NamesRef, Namespace, ResolvedSchema, Schema};

use crate::AvroError;

/// Deeper than any Change Data Capture schema (header and compound fields: 3 levels).
const MAX_DEPTH: usize = 32;

struct Walk<'a, 's> {
    buf: &'a [u8],
    pos: usize,
    names: &'a NamesRef<'s>,
}

fn fail(what: impl Into<String>) -> AvroError {
    AvroError::Payload(what.into())
}

/// Checks that `datum` is one complete value of `schema` whose lengths fit the input.
pub(crate) fn check(schema: &Schema, datum: &[u8]) -> Result<(), AvroError> {
    let resolved =
        ResolvedSchema::try_from(schema).map_err(|e| AvroError::Schema(e.to_string()))?;
    let mut w = Walk {
        buf: datum,
        pos: 0,
        names: resolved.get_names(),
    };
    w.value(schema, &None, 0)?;
    match datum.len() - w.pos {
        0 => Ok(()),
        n => Err(fail(format!("{n} trailing bytes after the datum"))),
    }
}

impl Walk<'_, '_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), AvroError> {
        if n > self.remaining() {
            return Err(fail(format!(
                "{what} of {n} bytes at byte {} but only {} left",
                self.pos,
                self.remaining()
            )));
        }
        self.pos += n;
        Ok(())
    }

    /// A zig-zag varint, at most 10 bytes.
    fn long(&mut self) -> Result<i64, AvroError> {
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(fail(format!("truncated integer at byte {}", self.pos)));
            };
            self.pos += 1;
            z |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(fail(format!(
            "integer longer than 10 bytes at byte {}",
            self.pos
        )))
    }

    fn int(&mut self) -> Result<i32, AvroError> {
        let at = self.pos;
        i32::try_from(self.long()?).map_err(|_| fail(format!("int out of range at byte {at}")))
    }

    /// A length-prefixed string or bytes.
    fn sized(&mut self, what: &str) -> Result<(), AvroError> {
        let at = self.pos;
        let n = usize::try_from(self.long()?)
            .map_err(|_| fail(format!("negative {what} length at byte {at}")))?;
        self.skip(n, what)
    }

    /// An index below `count` (union branch, enum symbol).
    fn index(&mut self, count: usize, what: &str) -> Result<usize, AvroError> {
        let at = self.pos;
        usize::try_from(self.long()?)
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| fail(format!("{what} index out of range at byte {at}")))
    }

    /// Array and map blocks: a count (negative: followed by a byte size), 0 ends them.
    fn blocks(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), AvroError>,
    ) -> Result<(), AvroError> {
        loop {
            let at = self.pos;
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            // Every item takes a byte or more in any schema Salesforce uses, so a count
            // beyond the bytes left is a lie; refusing it also bounds the work for
            // zero-size items.
            let count = usize::try_from(count.unsigned_abs())
                .ok()
                .filter(|c| *c <= self.remaining())
                .ok_or_else(|| {
                    fail(format!(
                        "{what} block of {count} items at byte {at} exceeds the payload"
                    ))
                })?;
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn value(&mut self, schema: &Schema, ns: &Namespace, depth: usize) -> Result<(), AvroError> {
        if depth > MAX_DEPTH {
            return Err(fail(format!("values nested deeper than {MAX_DEPTH}")));
        }
        let next = depth + 1;
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => {
                let at = self.pos;
                self.skip(1, "boolean")?;
                match self.buf.get(at) {
                    Some(0 | 1) => Ok(()),
                    _ => Err(fail(format!("boolean at byte {at} is not 0 or 1"))),
                }
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => self.int().map(drop),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.skip(4, "float"),
            Schema::Double => self.skip(8, "double"),
            Schema::Duration => self.skip(12, "duration"),
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid => self.sized("bytes"),
            Schema::String => self.sized("string"),
            Schema::Fixed(f) => self.skip(f.size, "fixed"),
            Schema::Decimal(d) => self.value(&d.inner, ns, next),
            Schema::Enum(e) => self.index(e.symbols.len(), "enum").map(drop),
            Schema::Union(u) => {
                let i = self.index(u.variants().len(), "union")?;
                match u.variants().get(i) {
                    Some(v) => self.value(v, ns, next),
                    None => Err(fail("union index out of range")),
                }
            }
            Schema::Array(a) => self.blocks("array", |w| w.value(&a.items, ns, next)),
            Schema::Map(m) => self.blocks("map", |w| {
                w.sized("map key")?;
                w.value(&m.types, ns, next)
            }),
            Schema::Record(r) => {
                let inner = r.name.fully_qualified_name(ns).namespace;
                for f in &r.fields {
                    self.value(&f.schema, &inner, next)?;
                }
                Ok(())
            }
            Schema::Ref { name } => {
                let full: Name = name.fully_qualified_name(ns);
                let target = self
                    .names
                    .get(&full)
                    .copied()
                    .ok_or_else(|| fail(format!("unknown type {}", full.name)))?;
                self.value(target, &full.namespace, next)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(json: &str) -> Schema {
        Schema::parse_str(json).unwrap_or(Schema::Null)
    }

    #[test]
    fn lengths_must_fit_the_payload() {
        let s = schema(r#"{"type":"array","items":"string"}"#);
        // 536,870,000 items (zig-zag varint), then nothing.
        assert!(check(&s, &[0xe0, 0xf1, 0xff, 0xff, 0x03]).is_err());
        assert!(check(&s, &[0x02, 0x02, b'a', 0x00]).is_ok());
        assert!(check(&s, &[0x02, 0x02, b'a', 0x00, 0x00]).is_err());
        assert!(check(&Schema::String, &[0x0a, b'a']).is_err());
        let self_ref = schema(r#"{"type":"record","name":"R","fields":[{"name":"r","type":"R"}]}"#);
        assert!(check(&self_ref, &[]).is_err());
    }
}

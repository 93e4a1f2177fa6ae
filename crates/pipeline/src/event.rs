//! Turning decoded tuples into rows of typed values.

use tributary_postgres::pgoutput::{TupleData, TupleValue};
use tributary_postgres::values::{decode_binary, decode_text};
use tributary_proto::cdc::v1::{value::Kind, NullValue, Other, Row, Unchanged, Value};

use crate::relations::RelationInfo;

#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("{table}: the tuple has {got} columns, the relation {expected}")]
    ColumnCount {
        table: String,
        got: usize,
        expected: usize,
    },
    #[error("{table}: {source}")]
    Decode {
        table: String,
        source: tributary_postgres::pgoutput::DecodeError,
    },
}

/// Converts a tuple to a row. A value that does not parse as its type is kept as text
/// (`Other`) and counted, never dropped.
pub fn build_row(rel: &RelationInfo, tuple: &TupleData<'_>, source: &str) -> Result<Row, RowError> {
    if tuple.len() != rel.kinds.len() {
        return Err(RowError::ColumnCount {
            table: rel.qualified_name(),
            got: tuple.len(),
            expected: rel.kinds.len(),
        });
    }
    let mut values = Vec::with_capacity(tuple.len());
    for (i, v) in tuple.iter().enumerate() {
        let v = v.map_err(|source| RowError::Decode {
            table: rel.qualified_name(),
            source,
        })?;
        let kind = match v {
            TupleValue::Null => Kind::Null(NullValue::NullValue as i32),
            TupleValue::UnchangedToast => Kind::Unchanged(Unchanged {}),
            TupleValue::Text(text) => text_kind(rel, i, text, source),
            TupleValue::Binary(data) => match decode_binary(&rel.kinds[i], data) {
                Ok(value) => return_kind(value),
                Err(e) => fallback(rel, i, data, source, &e.to_string()),
            },
        };
        values.push(Value { kind: Some(kind) });
    }
    Ok(Row { values })
}

/// Converts the rows of a COPY (text format, `None` = NULL) the same way.
pub fn build_row_from_text(
    rel: &RelationInfo,
    fields: &[Option<std::borrow::Cow<'_, [u8]>>],
    source: &str,
) -> Result<Row, RowError> {
    if fields.len() != rel.kinds.len() {
        return Err(RowError::ColumnCount {
            table: rel.qualified_name(),
            got: fields.len(),
            expected: rel.kinds.len(),
        });
    }
    let values = fields
        .iter()
        .enumerate()
        .map(|(i, f)| Value {
            kind: Some(match f {
                None => Kind::Null(NullValue::NullValue as i32),
                Some(text) => text_kind(rel, i, text, source),
            }),
        })
        .collect();
    Ok(Row { values })
}

fn text_kind(rel: &RelationInfo, i: usize, text: &[u8], source: &str) -> Kind {
    match decode_text(&rel.kinds[i], text) {
        Ok(value) => return_kind(value),
        Err(e) => fallback(rel, i, text, source, &e.to_string()),
    }
}

fn return_kind(value: Value) -> Kind {
    value
        .kind
        .unwrap_or(Kind::Null(NullValue::NullValue as i32))
}

fn fallback(rel: &RelationInfo, i: usize, raw: &[u8], source: &str, error: &str) -> Kind {
    metrics::counter!(crate::metrics::VALUE_FALLBACKS, "source" => source.to_string()).increment(1);
    tracing::warn!(
        table = %rel.qualified_name(),
        column = %rel.names[i],
        %error,
        "value kept as text"
    );
    Kind::Other(Other {
        type_name: rel.type_names[i].clone(),
        text: String::from_utf8_lossy(raw).into_owned(),
    })
}

/// Columns whose new value differs from a full before image; unchanged TOAST never counts.
pub fn changed_columns(rel: &RelationInfo, before: &Row, after: &Row) -> Vec<String> {
    before
        .values
        .iter()
        .zip(&after.values)
        .enumerate()
        .filter(|(_, (b, a))| !matches!(a.kind, Some(Kind::Unchanged(_))) && b != a)
        .map(|(i, _)| rel.names[i].clone())
        .collect()
}

//! PostgreSQL text forms -> typed [`Value`]s.
//!
//! Assumes the session settings of the replication connection: `DateStyle=ISO, MDY`,
//! `TimeZone=UTC` (any offset is still honoured), `IntervalStyle=iso_8601`,
//! `extra_float_digits=3` and `bytea_output=hex` (escape format is accepted too).

mod array;
mod datetime;
mod scalar;

#[cfg(test)]
mod tests;

use tributary_proto::cdc::v1::{value::Kind, NullValue, Other, Unchanged, Value};

use crate::pgoutput::TupleValue;

/// How to interpret a column's text form; resolved once per relation column, not per value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypeKind {
    Bool,
    /// int2, int4, int8, oid.
    Int,
    Numeric,
    Float4,
    Float8,
    /// text, varchar, bpchar, name, "char".
    Text,
    Bytea,
    Uuid,
    Date,
    Time,
    TimeTz,
    Timestamp,
    Timestamptz,
    Interval,
    /// json, jsonb.
    Json,
    Enum,
    /// An array whose elements are delimited by ',' (every kind above).
    Array(Box<TypeKind>),
    /// Any other type, by its pg_type name; passed on as text.
    Other(String),
}

impl TypeKind {
    /// Built-in type OIDs and their array types (OIDs as in pg_type of PostgreSQL 15,
    /// which are fixed since they are part of the catalog's initial contents).
    pub fn from_builtin_oid(oid: u32) -> Option<TypeKind> {
        let scalar = |k: TypeKind| Some(k);
        let array = |k: TypeKind| Some(TypeKind::Array(Box::new(k)));
        match oid {
            16 => scalar(TypeKind::Bool),
            20 | 21 | 23 | 26 => scalar(TypeKind::Int),
            1700 => scalar(TypeKind::Numeric),
            700 => scalar(TypeKind::Float4),
            701 => scalar(TypeKind::Float8),
            18 | 19 | 25 | 1042 | 1043 => scalar(TypeKind::Text),
            17 => scalar(TypeKind::Bytea),
            2950 => scalar(TypeKind::Uuid),
            1082 => scalar(TypeKind::Date),
            1083 => scalar(TypeKind::Time),
            1266 => scalar(TypeKind::TimeTz),
            1114 => scalar(TypeKind::Timestamp),
            1184 => scalar(TypeKind::Timestamptz),
            1186 => scalar(TypeKind::Interval),
            114 | 3802 => scalar(TypeKind::Json),
            1000 => array(TypeKind::Bool),
            1005 | 1007 | 1016 | 1028 => array(TypeKind::Int),
            1231 => array(TypeKind::Numeric),
            1021 => array(TypeKind::Float4),
            1022 => array(TypeKind::Float8),
            1002 | 1003 | 1009 | 1014 | 1015 => array(TypeKind::Text),
            1001 => array(TypeKind::Bytea),
            2951 => array(TypeKind::Uuid),
            1182 => array(TypeKind::Date),
            1183 => array(TypeKind::Time),
            1270 => array(TypeKind::TimeTz),
            1115 => array(TypeKind::Timestamp),
            1185 => array(TypeKind::Timestamptz),
            1187 => array(TypeKind::Interval),
            199 | 3807 => array(TypeKind::Json),
            _ => None,
        }
    }

    /// For a non-built-in type, from what the catalog says: `typtype` (pg_type.typtype),
    /// `typname`, and for a true array type (typcategory 'A') the kind of its element.
    /// Arrays of [`TypeKind::Other`] stay whole as `Other`: their element delimiter
    /// may not be ',' (box uses ';').
    pub fn from_catalog(typtype: u8, typname: &str, element: Option<TypeKind>) -> TypeKind {
        match (typtype, element) {
            (_, Some(TypeKind::Other(_))) => TypeKind::Other(typname.to_owned()),
            (_, Some(element)) => TypeKind::Array(Box::new(element)),
            (b'e', None) => TypeKind::Enum,
            _ => TypeKind::Other(typname.to_owned()),
        }
    }

    /// A readable name, e.g. "int", "numeric", "_text"; used in error messages.
    pub fn name(&self) -> String {
        let name = match self {
            TypeKind::Bool => "bool",
            TypeKind::Int => "int",
            TypeKind::Numeric => "numeric",
            TypeKind::Float4 => "float4",
            TypeKind::Float8 => "float8",
            TypeKind::Text => "text",
            TypeKind::Bytea => "bytea",
            TypeKind::Uuid => "uuid",
            TypeKind::Date => "date",
            TypeKind::Time => "time",
            TypeKind::TimeTz => "timetz",
            TypeKind::Timestamp => "timestamp",
            TypeKind::Timestamptz => "timestamptz",
            TypeKind::Interval => "interval",
            TypeKind::Json => "json",
            TypeKind::Enum => "enum",
            TypeKind::Array(element) => return format!("_{}", element.name()),
            TypeKind::Other(name) => name,
        };
        name.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{type_name} value is not valid UTF-8 at byte {offset}: {text:?}")]
    InvalidUtf8 {
        type_name: String,
        offset: usize,
        /// A prefix of the value, invalid bytes replaced.
        text: String,
    },
    #[error("invalid {type_name} value {text:?}: {reason}")]
    Invalid {
        type_name: String,
        /// A prefix of the value.
        text: String,
        reason: &'static str,
    },
    #[error("invalid {type_name} value {text:?}: element {index}: {error}")]
    ArrayElement {
        type_name: String,
        text: String,
        /// 0-based, in row-major order.
        index: usize,
        error: Box<ValueError>,
    },
}

/// Longest prefix of a bad value quoted in an error: enough to recognise it, while
/// keeping huge values out of logs.
const ERROR_TEXT_LIMIT: usize = 64;

fn error_text(text: &str) -> String {
    if text.len() <= ERROR_TEXT_LIMIT {
        return text.to_owned();
    }
    let mut end = ERROR_TEXT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

fn invalid(kind: &TypeKind, text: &str, reason: &'static str) -> ValueError {
    ValueError::Invalid {
        type_name: kind.name(),
        text: error_text(text),
        reason,
    }
}

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

/// SQL NULL.
pub fn null() -> Value {
    value(Kind::Null(NullValue::NullValue as i32))
}

/// An unchanged TOASTed value that PostgreSQL did not send.
pub fn unchanged() -> Value {
    value(Kind::Unchanged(Unchanged {}))
}

/// Decodes one column of a pgoutput tuple.
pub fn decode_tuple_value(kind: &TypeKind, v: &TupleValue<'_>) -> Result<Value, ValueError> {
    match v {
        TupleValue::Null => Ok(null()),
        TupleValue::UnchangedToast => Ok(unchanged()),
        TupleValue::Text(text) => decode_text(kind, text),
        TupleValue::Binary(data) => decode_binary(kind, data),
    }
}

/// Decodes PostgreSQL's text output of a value of the given kind.
pub fn decode_text(kind: &TypeKind, text: &[u8]) -> Result<Value, ValueError> {
    let text = std::str::from_utf8(text).map_err(|e| ValueError::InvalidUtf8 {
        type_name: kind.name(),
        offset: e.valid_up_to(),
        text: error_text(&String::from_utf8_lossy(text)),
    })?;
    decode_str(kind, text)
}

fn decode_str(kind: &TypeKind, text: &str) -> Result<Value, ValueError> {
    let parsed = match kind {
        TypeKind::Bool => scalar::boolean(text).map(Kind::Bool),
        TypeKind::Int => text
            .parse()
            .map(Kind::Int)
            .map_err(|_| "not a 64-bit integer"),
        TypeKind::Numeric => scalar::numeric(text).map(|()| Kind::Decimal(text.to_owned())),
        // The shortest text that round-trips the float4 also parses to the nearest
        // double of that decimal, which keeps "0.1" as 0.1 and still narrows back
        // to the exact float4.
        TypeKind::Float4 | TypeKind::Float8 => text
            .parse()
            .map(Kind::Float)
            .map_err(|_| "not a floating-point number"),
        TypeKind::Text => Ok(Kind::Text(text.to_owned())),
        TypeKind::Bytea => scalar::bytea(text).map(|b| Kind::Bytes(b.into())),
        TypeKind::Uuid => scalar::uuid(text).map(Kind::Uuid),
        TypeKind::Date => datetime::date(text).map(Kind::Date),
        TypeKind::Time => datetime::time(text).map(Kind::Time),
        TypeKind::TimeTz => datetime::timetz(text).map(Kind::Timetz),
        TypeKind::Timestamp => datetime::timestamp(text, false).map(Kind::Timestamp),
        TypeKind::Timestamptz => datetime::timestamp(text, true).map(Kind::Timestamptz),
        TypeKind::Interval => datetime::interval(text).map(Kind::Interval),
        TypeKind::Json => Ok(Kind::Json(text.to_owned())),
        TypeKind::Enum => Ok(Kind::Enum(text.to_owned())),
        TypeKind::Array(element) => {
            return array::parse(element, text)
                .map(|a| value(Kind::Array(a)))
                .map_err(|e| match e {
                    array::ArrayError::Syntax(reason) => invalid(kind, text, reason),
                    array::ArrayError::Element(index, error) => ValueError::ArrayElement {
                        type_name: kind.name(),
                        text: error_text(text),
                        index,
                        error: Box::new(error),
                    },
                })
        }
        TypeKind::Other(type_name) => Ok(Kind::Other(Other {
            type_name: type_name.clone(),
            text: text.to_owned(),
        })),
    };
    parsed
        .map(value)
        .map_err(|reason| invalid(kind, text, reason))
}

/// Binary-format values (the `binary` pgoutput option) are not decoded: the replication
/// session does not request them. They are passed on as `Other` with the type's name
/// and the data as `\x` hex text, so that nothing is lost.
pub fn decode_binary(kind: &TypeKind, data: &[u8]) -> Result<Value, ValueError> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 + 2 * data.len());
    text.push_str("\\x");
    for &b in data {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(value(Kind::Other(Other {
        type_name: kind.name(),
        text,
    })))
}

//! Typed CDC values to protobuf field values. Conversions follow the target field's type; a
//! value that does not fit is a definite mapping error (dead letter), never a silent default.

use prost_reflect::{Kind, Value};
use tributary_config::Transform;
use tributary_proto::cdc::v1::{value::Kind as V, Value as CdcValue};

/// The value as text, None for NULL and unchanged TOAST values (both mean "no value here").
pub fn text(v: &CdcValue) -> Option<String> {
    Some(match v.kind.as_ref()? {
        V::Null(_) | V::Unchanged(_) => return None,
        V::Bool(b) => b.to_string(),
        V::Int(i) => i.to_string(),
        V::Decimal(d) => d.clone(),
        V::Float(f) => f.to_string(),
        V::Text(t) => t.clone(),
        V::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        V::Uuid(u) => u.clone(),
        V::Date(d) => d.to_string(),
        V::Time(t) => t.to_string(),
        V::Timestamp(t) | V::Timestamptz(t) => t.to_string(),
        V::Json(j) => j.clone(),
        V::Enum(e) => e.clone(),
        V::Other(o) => o.text.clone(),
        V::Interval(i) => format!("{} months {} days {} us", i.months, i.days, i.micros),
        V::Timetz(t) => t.micros.to_string(),
        V::Array(a) => format!("{:?}", a.elements.iter().map(text).collect::<Vec<_>>()),
    })
}

pub fn transform(s: String, t: Option<Transform>) -> String {
    match t {
        None => s,
        Some(Transform::Lower) => s.to_lowercase(),
        Some(Transform::Upper) => s.to_uppercase(),
        Some(Transform::Trim) => s.trim().to_string(),
    }
}

/// A typed CDC value for a field of `kind`; Err names the target type.
pub fn from_cdc(v: &CdcValue, kind: &Kind, t: Option<Transform>) -> Result<Option<Value>, String> {
    let Some(k) = v.kind.as_ref() else {
        return Ok(None);
    };
    let integer = match k {
        V::Null(_) | V::Unchanged(_) => return Ok(None),
        V::Int(i) => Some(*i),
        V::Bool(b) => Some(i64::from(*b)),
        // Dates become microseconds so that `*_micros` fields can take them.
        V::Date(d) => Some(i64::from(*d) * 86_400_000_000),
        V::Timestamp(t) | V::Timestamptz(t) => Some(*t),
        _ => None,
    };
    match (kind, integer, k) {
        (Kind::Bool, _, V::Bool(b)) => Ok(Some(Value::Bool(*b))),
        (Kind::Bool, Some(i), V::Int(_)) => Ok(Some(Value::Bool(i != 0))),
        (Kind::Double | Kind::Float, _, V::Float(f)) => Ok(Some(scalar_float(kind, *f))),
        (Kind::Double | Kind::Float, Some(i), _) => Ok(Some(scalar_float(kind, i as f64))),
        (_, Some(i), _) if is_integer(kind) => integer_value(kind, i).map(Some),
        _ => match text(v) {
            None => Ok(None),
            Some(s) => from_text(&transform(s, t), kind).map(Some),
        },
    }
}

/// A text value (constant, template, text column) for a field of `kind`.
pub fn from_text(s: &str, kind: &Kind) -> Result<Value, String> {
    match kind {
        Kind::String => Ok(Value::String(s.to_string())),
        Kind::Bytes => Ok(Value::Bytes(s.as_bytes().to_vec().into())),
        Kind::Bool => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "1" => Ok(Value::Bool(true)),
            "f" | "false" | "n" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(type_name(kind)),
        },
        Kind::Double | Kind::Float => s
            .trim()
            .parse::<f64>()
            .map(|f| scalar_float(kind, f))
            .map_err(|_| type_name(kind)),
        k if is_integer(k) => parse_integer(s)
            .ok_or_else(|| type_name(kind))
            .and_then(|i| integer_value(kind, i)),
        Kind::Enum(e) => e
            .get_value_by_name(s)
            .map(|v| Value::EnumNumber(v.number()))
            .ok_or_else(|| type_name(kind)),
        _ => Err(type_name(kind)),
    }
}

/// Integers, and decimals whose fraction is zero ("12.00"): quantities are often numeric.
fn parse_integer(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(i);
    }
    let (whole, frac) = s.split_once('.')?;
    if frac.chars().all(|c| c == '0') {
        whole.parse().ok()
    } else {
        None
    }
}

fn is_integer(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Int32
            | Kind::Int64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Sfixed32
            | Kind::Sfixed64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Fixed32
            | Kind::Fixed64
    )
}

fn integer_value(kind: &Kind, i: i64) -> Result<Value, String> {
    let err = || type_name(kind);
    Ok(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(i32::try_from(i).map_err(|_| err())?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u32::try_from(i).map_err(|_| err())?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::try_from(i).map_err(|_| err())?),
        _ => Value::I64(i),
    })
}

fn scalar_float(kind: &Kind, f: f64) -> Value {
    match kind {
        Kind::Float => Value::F32(f as f32),
        _ => Value::F64(f),
    }
}

pub fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdc(kind: V) -> CdcValue {
        CdcValue { kind: Some(kind) }
    }

    #[test]
    fn converts_by_target_type() {
        let int = |v: &CdcValue| from_cdc(v, &Kind::Int64, None);
        assert_eq!(int(&cdc(V::Int(7))), Ok(Some(Value::I64(7))));
        assert_eq!(
            int(&cdc(V::Decimal("3.000".into()))),
            Ok(Some(Value::I64(3)))
        );
        assert!(
            int(&cdc(V::Decimal("2.5".into()))).is_err(),
            "a fraction is not a count"
        );
        assert!(int(&cdc(V::Text("many".into()))).is_err());
        assert_eq!(int(&cdc(V::Date(1))), Ok(Some(Value::I64(86_400_000_000))));
        assert_eq!(int(&cdc(V::Timestamptz(5))), Ok(Some(Value::I64(5))));
        assert_eq!(
            from_cdc(&cdc(V::Int(42)), &Kind::String, None),
            Ok(Some(Value::String("42".into())))
        );
        assert_eq!(
            from_cdc(
                &cdc(V::Text(" A@B ".into())),
                &Kind::String,
                Some(Transform::Lower)
            ),
            Ok(Some(Value::String(" a@b ".into())))
        );
        assert_eq!(
            from_cdc(&cdc(V::Text("yes".into())), &Kind::Bool, None),
            Ok(Some(Value::Bool(true)))
        );
        assert_eq!(
            from_cdc(&cdc(V::Int(1 << 40)), &Kind::Int32, None),
            Err("int32".into())
        );
    }

    #[test]
    fn null_and_unchanged_are_no_value() {
        use tributary_proto::cdc::v1::{NullValue, Unchanged};
        assert_eq!(
            from_cdc(
                &cdc(V::Null(NullValue::NullValue as i32)),
                &Kind::String,
                None
            ),
            Ok(None)
        );
        assert_eq!(
            from_cdc(&cdc(V::Unchanged(Unchanged {})), &Kind::Int64, None),
            Ok(None)
        );
    }
}

//! `changedFields`, `nulledFields` and `diffFields` of a Pub/Sub change event are hex bitmaps
//! over Avro field positions, not names (unlike CometD): `"0x650004E0"` sets a bit per changed
//! top-level field (bit 0 = field 0, least significant bit = last hex digit), and
//! `"4-0x10"` sets bits over the fields of the nested record at top-level position 4 (compound
//! fields such as `Name` on Contact). Decoding needs the writer schema, hence the names list.

use crate::AvroError;

/// Field positions set in a hex bitmap (`0x…`), ascending.
fn positions(hex: &str) -> Result<Vec<usize>, AvroError> {
    let digits = hex
        .strip_prefix("0x")
        .or_else(|| hex.strip_prefix("0X"))
        .ok_or_else(|| AvroError::Bitmap(hex.into()))?;
    let mut out = Vec::new();
    for (k, c) in digits.chars().rev().enumerate() {
        let v = c
            .to_digit(16)
            .ok_or_else(|| AvroError::Bitmap(hex.into()))?;
        for bit in 0..4 {
            if v & (1 << bit) != 0 {
                out.push(k * 4 + bit);
            }
        }
    }
    Ok(out)
}

/// Field names of one bitmap list. `fields` are the top-level field names in schema order;
/// `nested(pos)` gives the field names of the record at that position (empty if it is none).
/// Positions past the schema are reported as `#<pos>` rather than dropped: the writer schema
/// is authoritative, so this only happens with a mismatched schema and should be visible.
pub fn decode(
    bitmaps: &[String],
    fields: &[String],
    nested: impl Fn(usize) -> Vec<String>,
) -> Result<Vec<String>, AvroError> {
    let mut names = Vec::new();
    for b in bitmaps {
        match b.split_once('-') {
            None => {
                for p in positions(b)? {
                    names.push(fields.get(p).cloned().unwrap_or_else(|| format!("#{p}")));
                }
            }
            Some((parent, inner)) => {
                let parent: usize = parent.parse().map_err(|_| AvroError::Bitmap(b.clone()))?;
                let parent_name = fields
                    .get(parent)
                    .cloned()
                    .unwrap_or_else(|| format!("#{parent}"));
                let children = nested(parent);
                for p in positions(inner)? {
                    let child = children.get(p).cloned().unwrap_or_else(|| format!("#{p}"));
                    names.push(format!("{parent_name}.{child}"));
                }
            }
        }
    }
    Ok(names)
}

/// The bitmap (`0x…`, upper-case hex, no leading zeros) of top-level positions.
pub fn encode(positions: &[usize]) -> String {
    let Some(max) = positions.iter().max() else {
        return "0x0".into();
    };
    let mut nibbles = vec![0u8; max / 4 + 1];
    for p in positions {
        nibbles[p / 4] |= 1 << (p % 4);
    }
    let hex: String = nibbles
        .iter()
        .rev()
        .map(|n| {
            char::from_digit(u32::from(*n), 16)
                .unwrap_or('0')
                .to_ascii_uppercase()
        })
        .collect();
    format!("0x{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    #[test]
    fn decodes_the_documented_example() {
        // 0x650004E0 (Salesforce's own example): bits 5, 6, 7, 10, 24, 26, 29, 30.
        let got = decode(&["0x650004E0".into()], &names(32), |_| vec![]).unwrap_or_default();
        assert_eq!(got, ["f5", "f6", "f7", "f10", "f24", "f26", "f29", "f30"]);
    }

    #[test]
    fn decodes_nested_compound_fields() {
        let got = decode(&["0x1".into(), "4-0x10".into()], &names(6), |p| {
            if p == 4 {
                names(6)
            } else {
                vec![]
            }
        })
        .unwrap_or_default();
        assert_eq!(got, ["f0", "f4.f4"]);
    }

    #[test]
    fn round_trips() {
        let enc = encode(&[1, 2, 13, 40]);
        let got = decode(&[enc], &names(41), |_| vec![]).unwrap_or_default();
        assert_eq!(got, ["f1", "f2", "f13", "f40"]);
        assert!(decode(&["nope".into()], &names(3), |_| vec![]).is_err());
    }
}

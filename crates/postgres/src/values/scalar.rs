//! Scalar text forms that need more than `str::parse`.

type R<T> = Result<T, &'static str>;

pub(super) fn boolean(text: &str) -> R<bool> {
    match text {
        "t" => Ok(true),
        "f" => Ok(false),
        _ => Err("expected 't' or 'f'"),
    }
}

/// Checks numeric's output syntax (`-?digits[.digits]` or a special value); the
/// text itself is kept, as it is exact.
pub(super) fn numeric(text: &str) -> R<()> {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return Ok(());
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if all_digits(int) && frac.is_none_or(all_digits) {
        Ok(())
    } else {
        Err("expected decimal digits, NaN or ±Infinity")
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `\x0a0b` (hex output), or the escape output (`\\`, `\ooo`, other bytes as is).
pub(super) fn bytea(text: &str) -> R<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let hex = hex.as_bytes();
        if hex.len() % 2 != 0 {
            return Err("odd number of hex digits");
        }
        return hex
            .chunks_exact(2)
            .map(|pair| match pair {
                &[hi, lo] => Some(hex_digit(hi)? << 4 | hex_digit(lo)?),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or("invalid hex digit");
    }
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(d0 @ b'0'..=b'3') => {
                let octal =
                    |d: Option<u8>| d.filter(|d| (b'0'..=b'7').contains(d)).map(|d| d - b'0');
                let (d1, d2) = (octal(bytes.next()), octal(bytes.next()));
                match (d1, d2) {
                    (Some(d1), Some(d2)) => out.push((d0 - b'0') << 6 | d1 << 3 | d2),
                    _ => return Err("bad octal escape"),
                }
            }
            _ => return Err("bad escape"),
        }
    }
    Ok(out)
}

/// Canonical lower-case hyphenated form (PostgreSQL already outputs it; this also
/// checks it).
pub(super) fn uuid(text: &str) -> R<String> {
    let b = text.as_bytes();
    let well_formed = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if well_formed {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("expected 8-4-4-4-12 hex digits")
    }
}

//! TOML errors told without echoing secrets.
//!
//! `toml`'s own `Display` quotes the offending source line, and that line may be
//! `password = "…"`: an unterminated literal, or a secret table of an unknown shape. The
//! loader therefore re-renders every parse error from its message and span only — line,
//! column and the key the error is on — and blanks out of the message any value that the
//! text assigns to a secret-looking key.

use std::ops::Range;

/// Key names (last dotted segment, lower case) whose values are treated as secrets. Broader
/// than the fields of type `Secret`: a misspelt key (`pasword`) or one in the wrong table
/// still holds a secret the operator typed.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token", "seed", "credential", "private"]
        .iter()
        .any(|w| key.contains(w))
        || key.ends_with("key")
}

/// Renders a TOML error as `line L, column C, key `a.b`: message`.
pub(crate) fn parse_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim();
    let shown = match err.span() {
        None => message.to_owned(),
        Some(span) => {
            let (line, column) = position(text, span.start);
            match key_at(text, line, column) {
                Some(key) => format!("line {line}, column {column}, key `{key}`: {message}"),
                None => format!("line {line}, column {column}: {message}"),
            }
        }
    };
    // The key too: on a mangled line a secret can stand where a key would.
    scrub(&shown, &secret_values(text))
}

/// 1-based line and column (in characters) of a byte offset; offsets past the end or inside
/// a character are clamped to the nearest preceding boundary.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// One `key = value` found on a line: the key, where it starts, and its value's extent
/// (to the end of the line: enough to find the literal that starts it).
struct Assignment<'a> {
    key: &'a str,
    key_start: usize,
    value: Range<usize>,
}

/// Assignments on one line, outer first: `a = { b = "x", c = 1 }` gives `a`, `b`, `c`.
/// Quotes are skipped so that an `=` inside a string is not taken for one.
fn assignments(line: &str) -> Vec<Assignment<'_>> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut key_start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' | b'\'' => {
                // A quoted key (`"a b" = 1`) or a value: either way, skip to its end.
                let close = line.get(i + 1..).and_then(|rest| rest.find(char::from(b)));
                i = close.map_or(line.len(), |c| i + 1 + c + 1);
                continue;
            }
            b'{' | b',' | b'[' => key_start = i + 1,
            b'#' => break,
            b'=' => {
                let raw = line.get(key_start..i).unwrap_or_default();
                let key = raw.trim();
                // On a malformed line the text before `=` may hold a value: only a
                // well-formed key is ever named.
                if is_key(key) {
                    out.push(Assignment {
                        key,
                        key_start: key_start + (raw.len() - raw.trim_start().len()),
                        value: i + 1..line.len(),
                    });
                }
                key_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// A TOML key: bare (`A-Za-z0-9_-`) or quoted segments joined by dots.
fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|seg| {
            let seg = seg.trim();
            let quoted = |q: char| {
                seg.len() >= 2
                    && seg.starts_with(q)
                    && seg.ends_with(q)
                    && !seg[1..seg.len() - 1].contains(q)
            };
            (!seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
                || quoted('"')
                || quoted('\'')
        })
}

fn unquote(key: &str) -> &str {
    key.trim().trim_matches(|c| c == '"' || c == '\'')
}

/// The text of the secret value starting at `value` (to its closing quote, or the end of the
/// line for an unterminated one); `None` for tables, which are scanned key by key.
fn literal(value: &str) -> Option<&str> {
    let value = value.trim_start();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = value.trim_start_matches(quote);
    let end = body.find(quote).unwrap_or(body.len());
    Some(body.get(..end).unwrap_or(body)).filter(|s| !s.is_empty())
}

/// Every value the text assigns to a secret-looking key, also inside inline tables and
/// on the lines of a multi-line string.
fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        for a in assignments(line) {
            let last = unquote(a.key.rsplit('.').next().unwrap_or(a.key));
            if !is_secret_key(last) {
                continue;
            }
            let value = line.get(a.value.clone()).unwrap_or_default().trim_start();
            if let Some(delim) = ["\"\"\"", "'''"].into_iter().find(|d| value.starts_with(d)) {
                let first = value.get(3..).unwrap_or_default();
                out.extend(
                    Some(first.trim())
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                if !first.contains(delim) {
                    for more in lines.by_ref() {
                        let part = more.split(delim).next().unwrap_or_default().trim();
                        out.extend(Some(part).filter(|s| !s.is_empty()).map(str::to_owned));
                        if more.contains(delim) {
                            break;
                        }
                    }
                }
            } else if let Some(v) = literal(value) {
                out.push(v.to_owned());
            }
        }
    }
    // Longest first, so that a secret containing a shorter one is blanked whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn scrub(message: &str, secrets: &[String]) -> String {
    let mut message = message.to_owned();
    for s in secrets {
        // Short values only where quoted: blanking every `u` would garble the message.
        let mut forms = vec![format!("{s:?}"), format!("`{s}`"), format!("\"{s}\"")];
        if s.chars().count() >= 4 {
            forms.push(s.clone());
            forms.push(format!("{s:?}").trim_matches('"').to_owned());
        }
        for form in forms {
            message = message.replace(&form, "***");
        }
    }
    message
}

/// The dotted key an error on this line and column is about: the table header above it,
/// the line's key, and the inner key of an inline table the column falls in.
fn key_at(text: &str, line: usize, column: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?).copied().unwrap_or_default();
    // `Some(name)` for a table header line, `Some(None)` for a malformed one: its text may be
    // anything, a secret included, so it is never named.
    let header = |l: &str| {
        let t = l.trim();
        t.starts_with('[').then(|| {
            let name = t.trim_start_matches('[').split_once(']')?.0.trim();
            is_key(name).then(|| name.to_owned())
        })
    };
    if let Some(h) = header(here) {
        return h;
    }
    let table = lines
        .get(..line - 1)
        .unwrap_or_default()
        .iter()
        .rev()
        .find_map(|l| header(l))
        .flatten();
    let found = assignments(here);
    let mut path: Vec<&str> = found.first().map(|a| a.key).into_iter().collect();
    let byte_column = here
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(here.len(), |(i, _)| i);
    if let Some(inner) = found.iter().skip(1).rfind(|a| a.key_start <= byte_column) {
        path.push(inner.key);
    }
    let key = path
        .iter()
        .map(|k| unquote(k))
        .collect::<Vec<_>>()
        .join(".");
    match (table, key.is_empty()) {
        (Some(t), false) => Some(format!("{t}.{key}")),
        (Some(t), true) => Some(t),
        (None, false) => Some(key),
        (None, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secrets_inline_and_multiline() {
        let text = "a = 1\nnats = { url = \"u\", password = \"p4ss\" }\n[x]\napi_key = 'k3y'\ntoken = \"\"\"\nline2\n\"\"\"\n";
        let got = secret_values(text);
        for s in ["p4ss", "k3y", "line2"] {
            assert!(got.iter().any(|g| g == s), "{s} in {got:?}");
        }
        assert!(!got.iter().any(|g| g == "u"));
    }

    /// Fuzzing finding: a header line missing its `]` was named whole, with what followed.
    #[test]
    fn a_malformed_header_is_not_named() {
        let text = "[a]\n[sinks.wms.we   secret = \"s3cr3t\"\nx = 1\n";
        assert_eq!(key_at(text, 2, 5), None);
        assert_eq!(key_at(text, 3, 1), Some("x".to_owned()));
        assert_eq!(key_at("[[b]]\ny = 1\n", 2, 1).as_deref(), Some("b.y"));
    }

    #[test]
    fn names_inner_keys() {
        let text = "[nats]\nauth = { user = \"u\", password = 5 }\n";
        let col = "auth = { user = \"u\", password = ".chars().count() + 1;
        assert_eq!(key_at(text, 2, col).as_deref(), Some("nats.auth.password"));
        assert_eq!(position("ab\ncd", 4), (2, 2));
    }
}

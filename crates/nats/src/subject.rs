//! The subject scheme: `<prefix>.<source>.<schema>.<table>.<op>`.

/// Makes a subject token of a database name: characters that NATS gives a meaning
/// (`.`, `*`, `>`, whitespace) become `_`.
pub fn token(name: &str) -> String {
    let t: String = name
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

pub fn change_subject(prefix: &str, source: &str, schema: &str, table: &str, op: &str) -> String {
    format!(
        "{prefix}.{}.{}.{}.{op}",
        token(source),
        token(schema),
        token(table)
    )
}

/// Every subject of one source's stream.
pub fn source_wildcard(prefix: &str, source: &str) -> String {
    format!("{prefix}.{}.>", token(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_reserved_characters() {
        assert_eq!(
            change_subject("cdc", "erp", "public", "my.table *x", "insert"),
            "cdc.erp.public.my_table__x.insert"
        );
        assert_eq!(token(""), "_");
    }
}

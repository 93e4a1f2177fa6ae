//! The metric names a text uses and the names docs/metrics.md catalogues, for the tests that
//! keep the dashboard, the alert rules and the code in step with the catalogue.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `tributary_…` metric name in `text`, histogram series suffixes removed.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("tributary_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let mut name = text[start..end].to_string();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(stripped) = name.strip_suffix(suffix) {
                name = stripped.to_string();
            }
        }
        // Prefixes of job names or buckets ("tributary_snapshots", "tributary_domain") are not metrics.
        if name.matches('_').count() >= 2 {
            names.insert(name);
        }
        i = end;
    }
    names
}

/// One row of a metric table of docs/metrics.md.
pub struct CatalogueRow {
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// The labels column as written (`sink, entity`, `—` or empty for none).
    pub labels: String,
}

/// The rows of docs/metrics.md's metric tables (the renames table is not one: its second
/// column is not a type).
pub fn catalogue() -> Vec<CatalogueRow> {
    let text = std::fs::read_to_string(repo().join("docs/metrics.md")).expect("docs/metrics.md");
    text.lines()
        .filter(|l| l.starts_with("| `tributary_"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let kind = cells.get(1)?.to_string();
            ["counter", "gauge", "histogram"]
                .contains(&kind.as_str())
                .then(|| CatalogueRow {
                    name: cells[0].trim_matches('`').to_string(),
                    kind,
                    labels: cells.get(2).copied().unwrap_or_default().to_string(),
                })
        })
        .collect()
}

/// The Rust source of every crate, concatenated.
pub fn crate_sources() -> String {
    let mut out = String::new();
    source_text(&repo().join("crates"), &mut out);
    out
}

fn source_text(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_text(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

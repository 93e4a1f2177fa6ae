//! The report: one [`Check`] per line, rendered as an aligned table for a terminal (the JSON
//! form is the serialized `Vec<Check>`), and the wording shared by the checks' details.

use serde::Serialize;
use tributary_postgres::control::BackendInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The source's name, or `nats`.
    pub source: String,
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or a failure; None when the check passed.
    pub fix: Option<String>,
}

impl Check {
    pub(super) fn pass(check: &str, detail: impl Into<String>) -> Self {
        Self::new(check, Status::Pass, detail.into(), None)
    }
    pub(super) fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Status::Warn, detail.into(), Some(fix.into()))
    }
    pub(super) fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Status::Fail, detail.into(), Some(fix.into()))
    }
    fn new(check: &str, status: Status, detail: String, fix: Option<String>) -> Self {
        Check {
            source: String::new(),
            check: check.to_string(),
            status,
            detail,
            fix,
        }
    }
}

/// The report as an aligned table, a `fix:` line under each warning and failure, and a summary.
pub fn render(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.source.clone(),
                c.check.clone(),
                match c.status {
                    Status::Pass => "pass",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                }
                .to_string(),
                c.detail.clone(),
            ]
        })
        .collect();
    let table = crate::ops::render_table(&["SOURCE", "CHECK", "STATUS", "DETAIL"], &rows);
    let indent = {
        let w = |f: fn(&Check) -> usize, h: usize| checks.iter().map(f).max().unwrap_or(0).max(h);
        w(|c| c.source.chars().count(), 6) + 2 + w(|c| c.check.chars().count(), 5) + 2 + 6 + 2
    };
    let mut out = String::new();
    for (line, check) in table
        .lines()
        .zip(std::iter::once(None).chain(checks.iter().map(Some)))
    {
        out.push_str(line);
        out.push('\n');
        if let Some(fix) = check.and_then(|c| c.fix.as_ref()) {
            out.push_str(&format!("{:indent$}fix: {fix}\n", ""));
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{}: {} passed, {}, {} failed\n",
        crate::ops::count(checks.len(), "check"),
        count(Status::Pass),
        crate::ops::count(count(Status::Warn), "warning"),
        count(Status::Fail)
    ));
    out
}

/// `a, b, c` or `a, b, c, … and 7 more`.
pub(super) fn short_list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    if items.len() <= SHOWN {
        items.join(", ")
    } else {
        format!(
            "{}, … and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        )
    }
}

/// `pid 123 (tributary-erp, user app, from 10.0.0.5, since …)`.
pub(crate) fn describe_backend(b: &BackendInfo) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &b.application_name {
        parts.push(a.clone());
    }
    if let Some(u) = &b.user {
        parts.push(format!("user {u}"));
    }
    if let Some(c) = &b.client_addr {
        parts.push(format!("from {c}"));
    }
    if let Some(s) = &b.backend_start {
        parts.push(format!("since {s}"));
    }
    if parts.is_empty() {
        format!("pid {}", b.pid)
    } else {
        format!("pid {} ({})", b.pid, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_puts_fixes_under_failures() {
        let mut c = Check::fail(
            "wal_level",
            "wal_level = replica",
            "ALTER SYSTEM SET wal_level = logical",
        );
        c.source = "erp".into();
        let text = render(&[c]);
        assert!(
            text.contains("erp     wal_level  FAIL    wal_level = replica\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n                           fix: ALTER SYSTEM SET wal_level = logical\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("1 check: 0 passed, 0 warnings, 1 failed"),
            "{text}"
        );
    }
}

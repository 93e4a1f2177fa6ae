//! The alert rules in deploy/prometheus: `promtool check rules` accepts them, `promtool test
//! rules` passes every unit-test file, each alert has a test where it fires and one where it
//! stays quiet, and every metric the rules, their tests and the dashboard use is catalogued.
//!
//! promtool comes from Debian's prometheus package (scripts/install-deps.sh extracts only
//! the binary). Without it the promtool tests are skipped, unless TRIBUTARY_REQUIRE_PROMTOOL
//! is set (scripts/test.sh sets it once promtool is installed).

#[path = "support/catalogue.rs"]
mod catalogue;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use catalogue::{catalogue, metric_names, repo};

fn rules_dir() -> PathBuf {
    repo().join("deploy/prometheus")
}

/// The unit-test files of the rules (`*.test.yaml`).
fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .expect("deploy/prometheus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    files
}

/// promtool on PATH, else where install-deps.sh puts it; None (skip) unless it is required.
fn promtool() -> Option<PathBuf> {
    let cache = std::env::var_os("TRIBUTARY_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("tributary/tools"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/tributary/tools"))
        });
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = on_path
        .into_iter()
        .chain(cache.map(|d| d.join("promtool")))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("TRIBUTARY_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (TRIBUTARY_REQUIRE_PROMTOOL is set): run scripts/install-deps.sh"
        );
        eprintln!("skipping: promtool not found (scripts/install-deps.sh extracts it)");
    }
    found
}

fn run(promtool: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_rules() {
    let Some(promtool) = promtool() else { return };
    let text = run(&promtool, &["check", "rules", "alerts.yaml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn promtool_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let files = test_files();
    assert!(files.len() >= 4, "unit-test files: {files:?}");
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = run(&promtool, &["test", "rules", &name]);
        assert!(text.contains("SUCCESS"), "{name}: {text}");
    }
}

/// Alert names defined in alerts.yaml, in order.
fn alerts() -> Vec<String> {
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yaml")).expect("alerts.yaml");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim().to_string())
        .collect()
}

/// For each alert named in the unit tests: (tested firing, tested quiet). A case is the
/// text from `alertname:` to the next one; it expects silence when it says `exp_alerts: []`.
fn tested_alerts() -> BTreeMap<String, (bool, bool)> {
    let mut out: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in test_files() {
        let text = std::fs::read_to_string(&file).expect("test file");
        let mut cases = text.split("alertname:").skip(1);
        for case in cases.by_ref() {
            let name: String = case
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let case = case.split("eval_time").next().unwrap_or_default();
            let entry = out.entry(name).or_default();
            if case.contains("exp_alerts: []") {
                entry.1 = true;
            } else if case.contains("exp_labels") {
                entry.0 = true;
            }
        }
    }
    out
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let alerts = alerts();
    assert!(alerts.len() >= 30, "alerts: {alerts:?}");
    let tested = tested_alerts();
    let mut missing = Vec::new();
    for alert in &alerts {
        match tested.get(alert) {
            Some((true, true)) => {}
            Some((fires, quiet)) => {
                missing.push(format!("{alert} (fires: {fires}, quiet: {quiet})"))
            }
            None => missing.push(format!("{alert} (no test)")),
        }
    }
    assert!(
        missing.is_empty(),
        "alerts without a promtool test where they fire and one where they stay quiet: {missing:?}"
    );
    let unknown: Vec<&String> = tested.keys().filter(|t| !alerts.contains(t)).collect();
    assert!(
        unknown.is_empty(),
        "tests name alerts that do not exist: {unknown:?}"
    );
}

#[test]
fn rules_tests_and_dashboard_use_only_catalogued_metrics() {
    let catalogued: BTreeSet<String> = catalogue().into_iter().map(|r| r.name).collect();
    let mut sources = vec![
        rules_dir().join("alerts.yaml"),
        repo().join("deploy/grafana/tributary-dashboard.json"),
        repo().join("deploy/grafana/order-to-cash-dashboard.json"),
    ];
    sources.extend(test_files());
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("readable");
        let unknown: Vec<String> = metric_names(&text)
            .into_iter()
            .filter(|n| !catalogued.contains(n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{} uses metrics that no table of docs/metrics.md lists (renamed? see its renames table): {unknown:?}",
            path.display()
        );
    }
}

/// Every catalogued metric is on a dashboard panel or in an alert: no stage is invisible.
#[test]
fn every_catalogued_metric_is_watched() {
    let dashboard = ["tributary-dashboard.json", "order-to-cash-dashboard.json"]
        .map(|d| std::fs::read_to_string(repo().join("deploy/grafana").join(d)).expect("dashboard"))
        .join("\n");
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yaml")).expect("alerts.yaml");
    let used: BTreeSet<String> = metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&rules))
        .collect();
    let unwatched: Vec<String> = catalogue()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !used.contains(n))
        .collect();
    assert!(
        unwatched.is_empty(),
        "catalogued metrics on no dashboard panel and in no alert: {unwatched:?}"
    );
}

//! The demo runs headless with events flowing; the dashboard and the alert rules parse and
//! only reference metrics that the catalogue lists and the code emits.

use std::collections::BTreeSet;
use std::time::Duration;

#[path = "support/catalogue.rs"]
mod catalogue;

use catalogue::{crate_sources, metric_names, repo};

#[test]
fn dashboard_and_alerts_reference_only_catalogued_emitted_metrics() {
    let root = repo();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/tributary-dashboard.json"))
        .expect("dashboard");
    let _: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is valid JSON");
    let alerts =
        std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).expect("alert rules");
    assert!(
        alerts.contains("groups:") && alerts.contains("alert:"),
        "alert rules in Prometheus' format"
    );
    let catalogue = std::fs::read_to_string(root.join("docs/metrics.md")).expect("catalogue");
    let code = crate_sources();
    let referenced: BTreeSet<String> = metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    assert!(
        referenced.len() >= 10,
        "the dashboard and alerts use the metrics: {referenced:?}"
    );
    for name in &referenced {
        assert!(
            catalogue.contains(&format!("`{name}`")),
            "{name} is used by deploy/ but not in docs/metrics.md"
        );
        assert!(
            code.contains(&format!("\"{name}\"")),
            "{name} is used by deploy/ but no crate emits it"
        );
    }
}

#[test]
fn every_catalogued_metric_is_emitted_by_the_code() {
    let root = repo();
    let catalogue = std::fs::read_to_string(root.join("docs/metrics.md")).expect("catalogue");
    let code = crate_sources();
    for line in catalogue.lines().filter(|l| l.starts_with("| `tributary_")) {
        let name = line
            .trim_start_matches("| `")
            .split('`')
            .next()
            .unwrap_or_default();
        assert!(
            code.contains(&format!("\"{name}\"")),
            "docs/metrics.md lists {name}, which no crate emits"
        );
    }
}

/// `tributary demo --seconds 20` on a fresh checkout: events flow from both sources through the
/// domain stage; the summary counts them; a healthy run starts and stops without a WARN or
/// ERROR line (components start in order and stop by draining).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_headless_with_events_flowing() {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["demo", "--seconds", "20", "--rate", "300"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo ends by itself")
    .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("demo summary:"))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let count = |key: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("row_changes") > 100, "{summary}");
    assert!(count("domain_events") > 50, "{summary}");
    assert!(
        count("target_requests") > 10,
        "the sinks apply to the WMS and Shopify emulators: {summary}"
    );
    assert_eq!(count("dead_letters"), 0, "{summary}");
    assert!(stdout.contains("cleaned up"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let noisy: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.starts_with("error"))
        .collect();
    assert!(
        noisy.is_empty(),
        "a healthy demo logs no warning:\n{}",
        noisy.join("\n")
    );
}

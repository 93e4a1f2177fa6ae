//! The demo runs headless with events flowing; the dashboard and the alert rules parse and
//! only reference metrics that the catalogue lists and the code emits; every configuration
//! shipped under deploy/ passes `tributary check-config`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "support/catalogue.rs"]
mod catalogue;

use catalogue::{crate_sources, metric_names, repo};

#[test]
fn dashboard_and_alerts_reference_only_catalogued_emitted_metrics() {
    let root = repo();
    let mut dashboard = String::new();
    for file in ["tributary-dashboard.json", "order-to-cash-dashboard.json"] {
        let text =
            std::fs::read_to_string(root.join("deploy/grafana").join(file)).expect("dashboard");
        let _: serde_json::Value =
            serde_json::from_str(&text).expect("the dashboard is valid JSON");
        dashboard.push_str(&text);
    }
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

/// Every `*.toml: |` value of the ConfigMaps under deploy/kubernetes (base, HA overlay, whole
/// pipeline) and every deploy/tributary/*.toml passes `tributary check-config`: parsing with
/// unknown keys refused, the domain mappings against the compiled descriptors, the Shopify and
/// WMS feeds, the sinks and the secrets' shapes. Without `--strict`: the `{ file = … }` and
/// `{ env = … }` secrets exist only in the pod, so the only warnings allowed are those
/// unresolved secrets (a deprecated key would be another warning and fails the test).
#[test]
fn deploy_configurations_pass_check_config() {
    let root = repo();
    let mut configs: Vec<(PathBuf, String)> = Vec::new();
    for manifest in yaml_files(&root.join("deploy/kubernetes")) {
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        configs.extend(
            embedded_tomls(&text)
                .into_iter()
                .map(|toml| (manifest.clone(), toml)),
        );
    }
    assert!(
        configs.len() >= 3,
        "the base, HA and pipeline ConfigMaps carry a tributary.toml: {configs:?}"
    );
    let pipeline = configs
        .iter()
        .find(|(path, _)| path.ends_with("pipeline/configmap.yaml"))
        .map(|(_, toml)| toml.clone())
        .expect("the pipeline ConfigMap");
    let domain = std::fs::read_to_string(root.join("config/retail/domain.toml")).expect("domain");
    assert!(
        pipeline.contains(&domain),
        "the pipeline ConfigMap's [domain] block is config/retail/domain.toml verbatim"
    );
    for entry in std::fs::read_dir(root.join("deploy/tributary")).expect("deploy/tributary") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("toml");
            configs.push((path, text));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (origin, toml)) in configs.iter().enumerate() {
        let file = dir.path().join(format!("config-{i}.toml"));
        std::fs::write(&file, toml).expect("write config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["check-config", "--config"])
            .arg(&file)
            .env_remove("TRIBUTARY_PG_PASSWORD")
            .output()
            .expect("check-config runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(": ok"),
            "{} fails check-config:\n{stdout}\n{stderr}",
            origin.display()
        );
        for line in stderr.lines().filter(|l| l.starts_with("warning")) {
            assert!(
                line.contains("cannot read secret file") || line.contains("environment variable"),
                "{}: a warning other than a secret not resolvable here: {line}",
                origin.display()
            );
        }
        if origin.ends_with("pipeline/configmap.yaml") {
            // Every credential comes from the Secrets (file or env), none is written inline.
            for key in [
                "nats.password",
                "sources[0].connection.password",
                "sources[1].connection.password",
                "shopify[0].webhook_secret",
                "shopify[0].admin.access_token",
                "wms[0].secret",
                "sinks.wms.api_key",
                "sinks.shopify.access_token",
                "sinks.salesforce.client_secret",
            ] {
                assert!(
                    stderr.contains(&format!("config key `{key}`")),
                    "{key} is read from a Secret in the pod:\n{stderr}"
                );
            }
            for part in [
                "source erp",
                "source pos",
                "shopify web",
                "domain:",
                "sink wms",
                "sink shopify",
                "sink salesforce",
            ] {
                assert!(stdout.contains(part), "the pipeline runs {part}:\n{stdout}");
            }
        }
    }
}

/// deploy/nats/permissions.conf is a valid nats-server include (`nats-server -t`), and each user
/// the docs name is in it. tests/nats_permissions.rs runs a pipeline under it.
#[test]
fn nats_permissions_include_parses() {
    let root = repo();
    let permissions =
        std::fs::read_to_string(root.join("deploy/nats/permissions.conf")).expect("permissions");
    for user in [
        "user: tributary\n",
        "user: tributary-ops\n",
        "user: orders-service\n",
    ] {
        assert!(permissions.contains(user), "{user:?} in permissions.conf");
    }
    // nats-server resolves an include relative to the including file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("permissions.conf"), &permissions).expect("copy");
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "port: -1\njetstream {{ store_dir: {:?} }}\ninclude ./permissions.conf\n",
            dir.path().join("js")
        ),
    )
    .expect("server.conf");
    let out = std::process::Command::new("nats-server")
        .arg("-t")
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("nats-server on PATH (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "nats-server -t refuses permissions.conf:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("deploy directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The literal block scalars (`key.toml: |`) of a manifest, dedented. No YAML crate in the
/// workspace; block scalars end at the first non-blank line indented no deeper than their key.
fn embedded_tomls(yaml: &str) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut found = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if !trimmed.ends_with(".toml: |") || trimmed.starts_with('#') {
            continue;
        }
        let key_indent = indent(line);
        let mut block: Vec<&str> = Vec::new();
        while let Some(next) = lines.peek() {
            if !next.trim().is_empty() && indent(next) <= key_indent {
                break;
            }
            block.push(next);
            lines.next();
        }
        let body_indent = block
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| indent(l))
            .min()
            .unwrap_or(0);
        let text: String = block
            .iter()
            .map(|l| format!("{}\n", l.get(body_indent..).unwrap_or("")))
            .collect();
        found.push(text.trim_end().to_string() + "\n");
    }
    found
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
    // The order-to-cash loop: storefront checkouts become ERP sales orders through the inbox
    // (nothing writes orders into the ERP), ship from the WMS and come back to the storefront.
    let placed = count("storefront_orders");
    assert!(placed >= 5, "{summary}");
    assert!(
        count("erp_sales_orders") + 3 >= placed && count("erp_sales_orders") <= placed,
        "one ERP sales order per storefront order: {summary}"
    );
    assert!(count("wms_shipped") > 0, "{summary}");
    assert!(count("storefront_fulfillments") > 0, "{summary}");
    // The return leg: an agent's return Case in Salesforce ends refunded in the ERP (the WMS
    // received the goods in between).
    assert!(count("return_cases") > 0, "{summary}");
    assert!(count("erp_returns_refunded") > 0, "{summary}");
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

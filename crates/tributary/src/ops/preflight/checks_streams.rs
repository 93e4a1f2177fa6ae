//! The bridge's JetStream streams as the server has them: each must be absent (created at
//! first start) or the bridge's own, with limits retention and no other stream capturing its
//! subjects. A stream of another application is named and left alone: the advice never
//! deletes a stream that is not the bridge's.

use std::collections::HashSet;

use async_nats::jetstream;
use tributary_config::Config;
use tributary_nats::{NatsError, StreamSpec};

use super::Check;

const CHECK: &str = "stream";

/// The streams other than the sources' that this configuration makes the bridge create
/// (domain stage, sinks, SaaS feeds), each once.
fn other_streams(config: &Config) -> Result<Vec<StreamSpec>, tributary_saas::SaasError> {
    let mut all = Vec::new();
    if let Some(domain) = &config.domain {
        all.extend(tributary_domain::streams(&config.nats, domain, "domain"));
    }
    all.extend(tributary_sinks::Sinks::streams(config));
    all.extend(tributary_saas::streams::all(config)?);
    let mut seen = HashSet::new();
    all.retain(|s| seen.insert(s.settings.name.clone()));
    Ok(all)
}

/// One row per stream of the domain stage, the sinks and the SaaS feeds.
pub(super) async fn check_other_streams(config: &Config, js: &jetstream::Context) -> Vec<Check> {
    match other_streams(config) {
        Ok(specs) => {
            let mut out = Vec::new();
            for spec in &specs {
                out.push(check_spec(js, spec).await);
            }
            out
        }
        Err(e) => vec![Check::fail(
            CHECK,
            e.to_string(),
            "fix the [domain] block of the configuration",
        )],
    }
}

/// Whether `spec`'s stream is absent, or the bridge's and usable (with the changes the next
/// start makes to it).
pub(super) async fn check_spec(js: &jetstream::Context, spec: &StreamSpec) -> Check {
    let name = &spec.settings.name;
    let inspected = match tributary_nats::inspect_stream(js, spec).await {
        Ok(plan) => tributary_nats::check_overlap(js, spec).await.map(|()| plan),
        Err(e) => Err(e),
    };
    let plan = match inspected {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            return Check::pass(
                CHECK,
                format!("{name} does not exist yet; created at first start"),
            )
        }
        Err(e) => return Check::fail(CHECK, e.to_string(), advice(&e, spec)),
    };
    let mut detail = if plan.adopt {
        format!("{name} was created by an older Tributary (same subjects, no ownership mark): adopted and marked at the next start")
    } else {
        format!("{name} is the bridge's")
    };
    if !plan.kept.is_empty() {
        let kept: Vec<String> = plan
            .kept
            .iter()
            .map(|k| format!("{} = {}", k.key, k.old))
            .collect();
        detail.push_str(&format!(
            "; keeps its own {} (not set in the configuration)",
            kept.join(", ")
        ));
    }
    if plan.changes.is_empty() {
        return Check::pass(CHECK, detail);
    }
    let changes: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{}: {} → {}", c.key, c.old, c.new))
        .collect();
    Check::warn(
        CHECK,
        format!(
            "{detail}; the next start changes {}",
            changes.join(", ")
        ),
        "if the stream's values are the ones wanted, remove those keys from the configuration (unset keys keep the stream's values)",
    )
}

fn advice(e: &NatsError, spec: &StreamSpec) -> String {
    let name = &spec.settings.name;
    match e {
        NatsError::Foreign { .. } => format!(
            "{name} belongs to another application: do not delete it; set config key `{}` to a name no other \
             stream uses",
            spec.name_key
        ),
        NatsError::Retention { .. } => format!(
            "set config key `{}` to a new stream name (the bridge creates it with limits retention), or move \
             {name}'s data and recreate it with limits retention",
            spec.name_key
        ),
        NatsError::Overlap { others, .. } => format!(
            "remove the subjects {:?} from {} (a subject belongs to one stream), or change the bridge's subject \
             prefix",
            spec.subjects,
            others.join(", ")
        ),
        NatsError::Incompatible { .. } => format!(
            "make the configuration match {name} or move its data to a new stream (config key `{}`)",
            spec.name_key
        ),
        _ => "let the NATS user read stream info ($JS.API.STREAM.INFO.*) and list streams ($JS.API.STREAM.NAMES)"
            .into(),
    }
}

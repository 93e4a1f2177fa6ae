//! `tributary check-config`: everything that can be checked without connecting — the file,
//! the domain mappings against the compiled descriptors, the Shopify sources, the sinks, and
//! the secrets — each failure naming the key.
//!
//! A secret that cannot be resolved here (an environment variable not set in this shell, a
//! file that exists only in the container) is a warning, since the check often runs where
//! the bridge does not; `--strict` makes it an error. A secret that resolves to something
//! unusable (a Salesforce key that is not an RSA key, an empty or weak webhook secret) is
//! always an error.

use std::path::Path;

use anyhow::Context as _;
use tributary_config::{Config, Secret};

/// `json`: `{"config": path, "ok": true, "warnings": [...]}` on stdout once the file passes
/// (a failure is the error on stderr, with the configuration exit code).
pub fn run(path: &Path, strict: bool, format: crate::ops::Format) -> anyhow::Result<()> {
    let config = tributary_config::load(path)?;
    // Domain mappings are checked against the compiled protobuf descriptors.
    tributary_domain::DomainStage::compile(&config)?;
    tributary_saas::shopify::validate(&config)?;
    if let Some(sinks) = &config.sinks {
        sinks.validate().context("config key `sinks`")?;
    }
    if let Some(feed) = config.wms_feed() {
        tributary_saas::wms::validate(feed)?;
    }
    let deprecations = config.deprecations();
    let unresolved = secrets(&config)?;
    if strict && !unresolved.is_empty() {
        for w in &unresolved {
            eprintln!("warning: {w}");
        }
        anyhow::bail!(
            "{} secret(s) cannot be resolved here (--strict)",
            unresolved.len()
        );
    }
    let warnings: Vec<String> = deprecations
        .iter()
        .map(|w| w.to_string())
        .chain(unresolved.iter().map(|w| w.to_string()))
        .collect();
    if format == crate::ops::Format::Json {
        let report = serde_json::json!({"config": path, "ok": true, "warnings": warnings});
        return crate::ops::print_json(&report);
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!("{}: ok", path.display());
    summary(&config);
    Ok(())
}

/// Resolves every secret of the configuration (values are never printed); returns those
/// that cannot be resolved here.
fn secrets(config: &Config) -> anyhow::Result<Vec<String>> {
    let unresolved = std::cell::RefCell::new(Vec::new());
    let check = |key: String, secret: Option<&Secret>| -> anyhow::Result<()> {
        if let Some(Err(e)) = secret.map(Secret::resolve) {
            unresolved
                .borrow_mut()
                .push(format!("config key `{key}`: {e}"));
        }
        Ok(())
    };
    check("nats.password".into(), config.nats.password.as_ref())?;
    check("nats.token".into(), config.nats.token.as_ref())?;
    check("nats.nkey_seed".into(), config.nats.nkey_seed.as_ref())?;
    if let Some(file) = &config.nats.credentials_file {
        if let Err(e) = std::fs::metadata(file) {
            unresolved
                .borrow_mut()
                .push(format!("config key `nats.credentials_file`: {file}: {e}"));
        }
    }
    for (i, s) in config.sources.iter().enumerate() {
        check(
            format!("sources[{i}].connection.password"),
            s.connection.password.as_ref(),
        )?;
    }
    // A webhook secret that resolves to something weak lets anyone sign: always an error.
    let webhook_secret = |key: String, secret: &Secret| -> anyhow::Result<()> {
        match secret.resolve() {
            Ok(value) => match tributary_config::webhook_secret_problem(&value) {
                Some(problem) => anyhow::bail!("config key `{key}`: {problem}"),
                None => Ok(()),
            },
            Err(_) => check(key, Some(secret)),
        }
    };
    for (i, s) in config.shopify.iter().enumerate() {
        webhook_secret(format!("shopify[{i}].webhook_secret"), &s.webhook_secret)?;
        if let Some(a) = &s.admin {
            check(
                format!("shopify[{i}].admin.access_token"),
                Some(&a.access_token),
            )?;
        }
    }
    if let Some(feed) = config.wms_feed() {
        webhook_secret(format!("{}.secret", feed.key), &feed.cfg.secret)?;
    }
    if let Some(sinks) = &config.sinks {
        if let Some(w) = &sinks.wms {
            check("sinks.wms.api_key".into(), Some(&w.api_key))?;
        }
        if let Some(s) = &sinks.shopify {
            check("sinks.shopify.access_token".into(), Some(&s.access_token))?;
        }
        if let Some(sf) = &sinks.salesforce {
            check(
                "sinks.salesforce.client_secret".into(),
                sf.client_secret.as_ref(),
            )?;
            if let Some(Ok(pem)) = sf.jwt_private_key.as_ref().map(Secret::resolve) {
                let signer = tributary_sfpubsub::jwt::JwtSigner::new(
                    &pem,
                    &sf.client_id,
                    sf.jwt_username.as_deref().unwrap_or_default(),
                    &sf.jwt_audience,
                )
                .and_then(|s| s.assertion())
                .map_err(|e| {
                    anyhow::anyhow!("config key `sinks.salesforce.jwt_private_key`: {e}")
                })?;
                drop(signer);
            } else {
                check(
                    "sinks.salesforce.jwt_private_key".into(),
                    sf.jwt_private_key.as_ref(),
                )?;
            }
        }
    }
    Ok(unresolved.into_inner())
}

/// What the configuration runs, one line each.
fn summary(config: &Config) {
    for s in &config.sources {
        println!(
            "  source {}: {}@{}:{}/{} publication {} slot {}",
            s.name,
            s.connection.user,
            s.connection.host,
            s.connection.port,
            s.connection.dbname,
            s.publication,
            s.slot
        );
    }
    for s in &config.shopify {
        println!(
            "  shopify {}: webhooks on {} (/webhooks/shopify/{}){}",
            s.name,
            s.listen,
            s.name,
            if s.admin.is_some() {
                ", reconciliation poll"
            } else {
                ""
            }
        );
    }
    if let Some(d) = &config.domain {
        println!("  domain: {} mapping(s)", d.mappings.len());
    }
    if let Some(t) = &config.tracker {
        println!(
            "  tracker: follows {} into KV {}, publishes on {}.> (stream {}); stuck after {} s unallocated, {} s unshipped; refunds delayed after {} s",
            t.resolved_domain_stream(config.domain.as_ref()),
            t.state_bucket,
            t.subject_prefix,
            t.stream,
            t.unallocated_after_secs,
            t.unshipped_after_secs,
            t.refund_delayed_after_secs
        );
    }
    if let Some(ha) = &config.ha {
        println!(
            "  ha: replica {}, leases in KV {} (ttl {} ms, {} replica(s)); every source, domain consumer, sink and the tracker is a unit",
            crate::replicas::instance_id(ha),
            ha.lease_bucket,
            ha.lease_ttl_ms,
            ha.replicas.or(config.nats.stream.replicas).unwrap_or(1)
        );
    }
    if let Some(sinks) = &config.sinks {
        for name in tributary_sinks::SINK_NAMES {
            let filters = tributary_sinks::filter_subjects(sinks, name);
            if !filters.is_empty() {
                println!("  sink {name}: {}", filters.join(", "));
            }
            // Two priority classes: one consumer each (docs/sinks.md, "Priority classes").
            for c in tributary_sinks::partition_consumers(sinks, name)
                .iter()
                .filter(|c| c.class.is_some() && c.partition.unwrap_or(0) == 0)
            {
                println!(
                    "    {} class: consumer {}: {}",
                    c.class_label(),
                    c.name,
                    c.filters.join(", ")
                );
            }
            if !filters.is_empty() && sinks.partitions > 1 {
                println!(
                    "    in {} partitions: consumers {}-p00 .. -p{:02}, filters such as {}",
                    sinks.partitions,
                    tributary_sinks::consumer_name(name),
                    sinks.partitions - 1,
                    tributary_core::partition::partition_filter(&filters[0], 0)
                );
            }
        }
    }
}

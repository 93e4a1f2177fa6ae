//! Checks that serde cannot express; every error names the offending key.

use std::collections::{HashMap, HashSet};

use crate::{Config, ConfigError, ConnectionConfig, Secret, StreamConfig};

/// Shortest accepted webhook signing secret: below this an HMAC key can be guessed offline
/// from one captured delivery.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;
const MIN_WEBHOOK_SECRET_DISTINCT: usize = 8;
/// Upper bound of `snapshot_rows_per_message` and `changes_per_message`: past a few hundred
/// events the stream's cost per event no longer falls, while a consumer holds the whole batch.
pub const MAX_EVENTS_PER_MESSAGE: usize = 1000;

/// Why a webhook signing secret's value is unusable (never quoting it), or None. A Standard
/// Webhooks `whsec_` prefix is not part of the key. An empty key would let anyone sign.
pub fn webhook_secret_problem(value: &str) -> Option<String> {
    let key = value.strip_prefix("whsec_").unwrap_or(value).trim();
    let distinct = key.bytes().collect::<HashSet<u8>>().len();
    if key.is_empty() {
        Some("is empty: anyone could sign a webhook; set the secret the sender signs with".into())
    } else if key.len() < MIN_WEBHOOK_SECRET_BYTES || distinct < MIN_WEBHOOK_SECRET_DISTINCT {
        Some(format!(
            "is too weak ({} bytes, {distinct} different): use at least {MIN_WEBHOOK_SECRET_BYTES} \
             bytes with {MIN_WEBHOOK_SECRET_DISTINCT} different characters, e.g. `openssl rand -hex 32`",
            key.len()
        ))
    } else {
        None
    }
}

/// Checks a webhook secret written in the file; env and file secrets are checked where they
/// are resolved (start-up, `check-config`).
fn check_literal_webhook_secret(key: String, secret: &Secret) -> Result<(), ConfigError> {
    match secret {
        Secret::Literal(value) => match webhook_secret_problem(value) {
            Some(problem) => Err(ConfigError::invalid(key, problem)),
            None => Ok(()),
        },
        Secret::Env { .. } | Secret::File { .. } => Ok(()),
    }
}

fn validate_webhooks(config: &Config) -> Result<(), ConfigError> {
    let w = &config.webhook_server;
    let key = |k: &str| format!("webhook_server.{k}");
    for (name, ms) in [
        ("header_timeout_ms", w.header_timeout_ms),
        ("body_timeout_ms", w.body_timeout_ms),
    ] {
        if !(100..=600_000).contains(&ms) {
            return Err(ConfigError::invalid(
                key(name),
                "must be between 100 and 600000",
            ));
        }
    }
    if w.max_body_bytes < 1024 || w.max_body_bytes > 256 * 1024 * 1024 {
        return Err(ConfigError::invalid(
            key("max_body_bytes"),
            "must be between 1024 and 268435456",
        ));
    }
    if w.body_memory_bytes < w.max_body_bytes || w.body_memory_bytes > u32::MAX as usize {
        return Err(ConfigError::invalid(
            key("body_memory_bytes"),
            "must be at least max_body_bytes (one largest body must fit) and below 4 GiB",
        ));
    }
    if !(1..=65_536).contains(&w.max_connections) {
        return Err(ConfigError::invalid(
            key("max_connections"),
            "must be between 1 and 65536",
        ));
    }
    for (i, s) in config.shopify.iter().enumerate() {
        check_literal_webhook_secret(format!("shopify[{i}].webhook_secret"), &s.webhook_secret)?;
    }
    let old_wms = config.sinks.as_ref().and_then(|s| s.wms.as_ref());
    if old_wms.is_some_and(|w| w.webhooks.is_some()) && !config.wms.is_empty() {
        return Err(ConfigError::invalid(
            crate::DEPRECATED_WMS_KEY,
            "the WMS feed is configured twice: keep `[[wms]]` and remove this table",
        ));
    }
    if config.wms.len() > 1 {
        return Err(ConfigError::invalid(
            "wms[1]",
            "one WMS feed for now (its subjects and consumer are not named per feed)",
        ));
    }
    if let Some(feed) = config.wms_feed() {
        check_literal_webhook_secret(format!("{}.secret", feed.key), &feed.cfg.secret)?;
    }
    Ok(())
}

pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_webhooks(config)?;
    validate_partitions(config)?;
    if config.http_listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError::invalid(
            "http_listen",
            format!(
                "{:?} is not an address such as 0.0.0.0:8471",
                config.http_listen
            ),
        ));
    }
    if let Some(tracker) = &config.tracker {
        tracker.validate()?;
    }
    if let Some(inventory) = &config.reconcile.inventory {
        inventory.validate()?;
        let targets = config
            .sinks
            .as_ref()
            .is_some_and(|s| s.wms.is_some() || s.shopify.is_some());
        if !targets {
            return Err(ConfigError::invalid(
                "reconcile.inventory",
                "compares the ERP's stock with the targets of [sinks.wms] and [sinks.shopify]; neither is configured",
            ));
        }
    }
    if let Some(ha) = &config.ha {
        ha.validate()?;
    }
    let nats = &config.nats;
    if nats.servers.is_empty() {
        return Err(ConfigError::invalid(
            "nats.servers",
            "at least one server is required",
        ));
    }
    for (i, s) in nats.servers.iter().enumerate() {
        if s.trim().is_empty() || s.contains(' ') {
            return Err(ConfigError::invalid(
                format!("nats.servers[{i}]"),
                format!("{s:?} is not a server URL"),
            ));
        }
    }
    if nats.password.is_some() && nats.user.is_none() {
        return Err(ConfigError::invalid(
            "nats.user",
            "`nats.password` is set but `nats.user` is not",
        ));
    }
    let auth_methods = [
        nats.user.is_some(),
        nats.token.is_some(),
        nats.credentials_file.is_some(),
        nats.nkey_seed.is_some(),
    ];
    if auth_methods.iter().filter(|b| **b).count() > 1 {
        return Err(ConfigError::invalid(
            "nats",
            "choose one of user/password, token, credentials_file and nkey_seed",
        ));
    }
    if !is_token(&nats.subject_prefix, true) {
        return Err(ConfigError::invalid(
            "nats.subject_prefix",
            format!("{:?} must be one or more subject tokens of letters, digits, '_' and '-' joined by '.'", nats.subject_prefix),
        ));
    }
    if nats.ack_window == 0 || nats.ack_window > 100_000 {
        return Err(ConfigError::invalid(
            "nats.ack_window",
            "must be between 1 and 100000",
        ));
    }
    validate_stream("nats.stream", &nats.stream)?;
    if nats.stream.name.is_some() {
        return Err(ConfigError::invalid(
            "nats.stream.name",
            "each source has its own stream: set the name in [sources.stream]",
        ));
    }
    if config.sources.is_empty()
        && config.shopify.is_empty()
        && config.salesforce_cdc.is_empty()
        && config.wms_feed().is_none()
        && config.tracker.is_none()
    {
        return Err(ConfigError::invalid(
            "sources",
            "at least one [[sources]], [[shopify]], [[salesforce_cdc]] or [[wms]] block (or a [tracker]) is required",
        ));
    }
    let mut names = HashSet::new();
    // Value: (index, name) of the first source that claimed it, named in the error.
    let mut streams: HashMap<String, (usize, &str)> = HashMap::new();
    let mut slots: HashMap<(String, u16, &str), (usize, &str)> = HashMap::new();
    for (i, s) in config.sources.iter().enumerate() {
        let key = |k: &str| format!("sources[{i}].{k}");
        if !is_token(&s.name, false) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{:?} must be letters, digits, '_' or '-'", s.name),
            ));
        }
        if !names.insert(s.name.clone()) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("{:?} is used by another source", s.name),
            ));
        }
        if !is_identifier(&s.slot) {
            return Err(ConfigError::invalid(
                key("slot"),
                format!(
                    "{:?} must be lower-case letters, digits and '_' (PostgreSQL slot name rules)",
                    s.slot
                ),
            ));
        }
        if s.publication.is_empty() || s.publication.contains('"') {
            return Err(ConfigError::invalid(
                key("publication"),
                "must be a non-empty name without quotes",
            ));
        }
        for (t, table) in s.tables.iter().enumerate() {
            let ok = table.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !b.contains('.') && !table.contains('"')
            });
            if !ok {
                return Err(ConfigError::invalid(
                    format!("sources[{i}].tables[{t}]"),
                    format!("{table:?} must be written schema.table"),
                ));
            }
        }
        if s.create_publication && s.tables.is_empty() {
            return Err(ConfigError::invalid(
                key("tables"),
                "create_publication = true needs the list of tables",
            ));
        }
        if !(1..=64).contains(&s.snapshot_parallelism) {
            return Err(ConfigError::invalid(
                key("snapshot_parallelism"),
                "must be between 1 and 64",
            ));
        }
        if s.snapshot_chunk_rows == 0 {
            return Err(ConfigError::invalid(
                key("snapshot_chunk_rows"),
                "must be at least 1",
            ));
        }
        for (name, value) in [
            ("snapshot_rows_per_message", s.snapshot_rows_per_message),
            ("changes_per_message", s.changes_per_message),
        ] {
            if !(1..=MAX_EVENTS_PER_MESSAGE).contains(&value) {
                return Err(ConfigError::invalid(
                    key(name),
                    format!("must be between 1 and {MAX_EVENTS_PER_MESSAGE}"),
                ));
            }
        }
        if s.heartbeat_interval_secs == 0 {
            return Err(ConfigError::invalid(
                key("heartbeat_interval_secs"),
                "must be at least 1",
            ));
        }
        if s.status_interval_ms < 10 {
            return Err(ConfigError::invalid(
                key("status_interval_ms"),
                "must be at least 10",
            ));
        }
        if s.connection.host.is_empty() {
            return Err(ConfigError::invalid(
                key("connection.host"),
                "must not be empty",
            ));
        }
        validate_stream(&key("stream"), &s.stream)?;
        let stream = nats.resolved_stream(s);
        if !is_token(&stream.name, false) {
            return Err(ConfigError::invalid(
                key("stream.name"),
                format!("{:?} must be letters, digits, '_' or '-'", stream.name),
            ));
        }
        if let Some((j, other)) = streams.insert(stream.name.clone(), (i, &s.name)) {
            return Err(ConfigError::invalid(
                key("stream.name"),
                format!(
                    "stream {:?} of source {:?} is also the stream of sources[{j}] ({other:?}); \
                     each source needs its own stream (set [sources.stream] name)",
                    stream.name, s.name
                ),
            ));
        }
        let (host, port) = server_of(&s.connection);
        if let Some((j, other)) = slots.insert((host.clone(), port, &s.slot), (i, &s.name)) {
            return Err(ConfigError::invalid(
                key("slot"),
                format!(
                    "slot {:?} of source {:?} is also the slot of sources[{j}] ({other:?}) on the same \
                     PostgreSQL server ({host}:{port}); a slot has one reader and one history, so \
                     give each source its own slot name",
                    s.slot, s.name
                ),
            ));
        }
    }
    Ok(())
}

/// Publishers and sinks must agree on the subject layout: a sink filtering on partition
/// tokens would never see unpartitioned events, and the other way round.
fn validate_partitions(config: &Config) -> Result<(), ConfigError> {
    let range = 1..=crate::MAX_PARTITIONS;
    let domain = config.domain.as_ref().map(|d| d.partitions);
    let sinks = config.sinks.as_ref().map(|s| s.partitions);
    for (key, value) in [("domain.partitions", domain), ("sinks.partitions", sinks)] {
        if value.is_some_and(|p| !range.contains(&p)) {
            return Err(ConfigError::invalid(
                key,
                format!("must be between 1 and {}", crate::MAX_PARTITIONS),
            ));
        }
    }
    if let (Some(d), Some(s)) = (domain, sinks) {
        if d != s {
            return Err(ConfigError::invalid(
                "sinks.partitions",
                format!(
                    "is {s} but domain.partitions is {d}: the domain stage puts the partition \
                     in the subject and the sinks filter on it, so both must be equal"
                ),
            ));
        }
    }
    Ok(())
}

/// The server a source connects to, as far as the configuration tells: slot names are
/// unique per server (not per database), so two sources on one server need distinct slots.
/// The host is compared case-insensitively and the loopback spellings (`localhost`,
/// `127.0.0.1`, `::1`) count as one host; other aliases of one machine (a DNS name and its
/// address) are not resolved here (docs/dba.md says so).
fn server_of(c: &ConnectionConfig) -> (String, u16) {
    let host = c
        .host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host = match host.as_str() {
        "localhost" | "127.0.0.1" | "::1" | "0:0:0:0:0:0:0:1" => "localhost".to_string(),
        _ => host,
    };
    (host, c.port)
}

fn validate_stream(key: &str, s: &StreamConfig) -> Result<(), ConfigError> {
    if let Some(r) = s.replicas {
        if !(1..=5).contains(&r) {
            return Err(ConfigError::invalid(
                format!("{key}.replicas"),
                "must be between 1 and 5",
            ));
        }
    }
    if s.duplicate_window_secs == Some(0) {
        return Err(ConfigError::invalid(
            format!("{key}.duplicate_window_secs"),
            "must be at least 1",
        ));
    }
    if let Some(b) = s.max_bytes {
        if b == 0 || b < -1 {
            return Err(ConfigError::invalid(
                format!("{key}.max_bytes"),
                "must be -1 (no limit) or positive",
            ));
        }
    }
    Ok(())
}

fn is_token(s: &str, dotted: bool) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if dotted {
        s.split('.').all(part_ok)
    } else {
        part_ok(s)
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

//! The WMS lifecycle webhooks are a source: `[[wms]]` like `[[shopify]]`, with the old
//! `[sinks.wms.webhooks]` still read for one release behind a warning (issue #12).

const BASE: &str = r#"[nats]
servers = ["nats://127.0.0.1:4222"]
"#;

const SECRET: &str = "k7Qp2Zx9Lm4Vb8Nc";

const OLD: &str = r#"
[sinks.wms]
base_url = "http://127.0.0.1:1"
api_key = "k"
[sinks.wms.webhooks]
listen = "127.0.0.1:9001"
path = "/hooks/old"
secret = "k7Qp2Zx9Lm4Vb8Nc"
"#;

const NEW: &str = r#"
[[wms]]
listen = "127.0.0.1:9002"
path = "/hooks/new"
secret = "k7Qp2Zx9Lm4Vb8Nc"
timestamp_tolerance_secs = 60
"#;

const HA: &str = "\n[ha]\ninstance_id = \"a\"\n";

fn parse(text: &str) -> Result<tributary_config::Config, String> {
    tributary_config::parse(text).map_err(|e| e.to_string())
}

#[test]
fn the_wms_feed_under_its_own_key() -> Result<(), String> {
    let config = parse(&format!("{BASE}{NEW}"))?;
    let feed = config.wms_feed().ok_or("no WMS feed")?;
    assert_eq!(feed.key, "wms[0]");
    assert_eq!(feed.cfg.listen, "127.0.0.1:9002");
    assert_eq!(feed.cfg.path, "/hooks/new");
    assert_eq!(feed.cfg.timestamp_tolerance_secs, 60);
    assert_eq!(feed.cfg.stream, "SAAS_WMS", "defaults as before");
    assert!(config.deprecations().is_empty());
    assert!(config.sinks.is_none(), "no WMS sink needed for the feed");
    Ok(())
}

#[test]
fn the_old_key_still_works_with_a_warning_naming_the_new_one() -> Result<(), String> {
    let config = parse(&format!("{BASE}{OLD}"))?;
    let feed = config.wms_feed().ok_or("no WMS feed")?;
    assert_eq!(feed.key, "sinks.wms.webhooks");
    assert_eq!(feed.cfg.path, "/hooks/old");
    let warnings = config.deprecations();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("`sinks.wms.webhooks`"), "{warnings:?}");
    assert!(warnings[0].contains("`[[wms]]`"), "{warnings:?}");
    Ok(())
}

#[test]
fn both_keys_or_two_feeds_are_refused_by_key() {
    let both = parse(&format!("{BASE}{OLD}{NEW}")).expect_err("both keys");
    assert!(both.contains("`sinks.wms.webhooks`"), "{both}");
    assert!(both.contains("[[wms]]"), "{both}");
    let two = parse(&format!("{BASE}{NEW}{NEW}")).expect_err("two feeds");
    assert!(two.contains("`wms[1]`"), "{two}");
}

#[test]
fn a_weak_secret_is_refused_under_either_key() {
    for (text, key) in [
        (NEW, "`wms[0].secret`"),
        (OLD, "`sinks.wms.webhooks.secret`"),
    ] {
        let weak = text.replace(SECRET, "short");
        let e = parse(&format!("{BASE}{weak}")).expect_err("a weak secret");
        assert!(e.contains(key), "{e}");
        assert!(!e.contains("short"), "secret echoed: {e}");
    }
}

#[test]
fn the_wms_feed_runs_under_ha_with_either_key() {
    // Its webhook server runs on every replica, its mapping consumer is a leased unit.
    for text in [NEW, OLD] {
        let config = parse(&format!("{BASE}{text}{HA}")).expect("a SaaS feed under [ha]");
        assert!(config.wms_feed().is_some());
    }
}

//! `[sinks.erp]`: defaults, and errors that name the key.

const BASE: &str = r#"nats = { servers = ["nats://127.0.0.1:4222"] }
sources = [{ name = "erp", publication = "p", slot = "s", connection = { host = "h", user = "u", dbname = "d" } }]
[sinks.erp]
connection = { host = "erp-db", user = "inbox", dbname = "erp" }
"#;

/// The error of loading and checking the sinks (`Sinks::prepare` runs the same check).
fn error_of(extra: &str) -> String {
    let text = format!("{BASE}{extra}");
    let checked = tributary_config::parse(&text).map(|c| c.sinks.map(|s| s.validate()));
    match checked {
        Ok(Some(Err(e))) | Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error for:\n{text}"),
    }
}

#[test]
fn defaults_take_storefront_orders_refunds_and_returns() {
    let config = tributary_config::parse(BASE).expect("valid");
    let erp = config.sinks.and_then(|s| s.erp).expect("[sinks.erp]");
    assert_eq!(erp.table, "tributary_inbox");
    assert_eq!(
        erp.table_parts(),
        ("public".to_string(), "tributary_inbox".to_string())
    );
    assert_eq!(
        erp.events,
        [
            "order.placed",
            "order.status_changed",
            "refund.created",
            "return.requested",
            "return.received",
            "fulfillment.updated"
        ]
    );
    assert_eq!(erp.systems, ["shopify"]);
    assert_eq!(erp.entity_systems["return"], ["salesforce", "wms"]);
    assert_eq!(erp.entity_systems["fulfillment"], ["wms"]);
    assert_eq!(erp.batch_size, 50);
    assert_eq!(erp.delivery.max_wait_secs, 600);
}

#[test]
fn bad_values_name_their_key() {
    for (extra, key) in [
        ("table = \"erp.inbox.x\"\n", "sinks.erp.table"),
        ("table = \"in box\"\n", "sinks.erp.table"),
        ("events = [\"order.>\"]\n", "sinks.erp.events"),
        ("events = []\n", "sinks.erp.events"),
        ("systems = []\n", "sinks.erp.systems"),
        ("batch_size = 0\n", "sinks.erp.batch_size"),
        (
            "[sinks.erp.delivery]\nwait_retry_ms = 0\n",
            "sinks.erp.delivery.wait_retry_ms",
        ),
    ] {
        let e = error_of(extra);
        assert!(e.contains(key), "{extra:?}: {e}");
    }
}

//! `domain.partitions` and `sinks.partitions`: the publishers' subject layout and the sinks'
//! consumers must agree, and both stay within 1 ..= 256; the errors name the key.

const BASE: &str = r#"nats = { servers = ["nats://127.0.0.1:4222"] }
sources = [{ name = "erp", publication = "p", slot = "s", connection = { host = "h", user = "u", dbname = "d" } }]
"#;

fn with(domain: Option<u32>, sinks: Option<u32>) -> String {
    let mut text = BASE.to_string();
    if let Some(p) = domain {
        text.push_str(&format!("\n[domain]\npartitions = {p}\n"));
    }
    if let Some(p) = sinks {
        text.push_str(&format!("\n[sinks]\npartitions = {p}\n"));
    }
    text
}

fn error_of(text: &str) -> String {
    match tributary_config::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn default_is_one_partition() {
    let config = tributary_config::parse(&with(None, None)).expect("valid");
    assert!(config.domain.is_none() && config.sinks.is_none());
    let text = format!("{BASE}\n[domain]\n[sinks]\n");
    let config = tributary_config::parse(&text).expect("valid");
    assert_eq!(config.domain.map(|d| d.partitions), Some(1));
    assert_eq!(config.sinks.map(|s| s.partitions), Some(1));
}

#[test]
fn equal_partitions_are_accepted() {
    let config = tributary_config::parse(&with(Some(16), Some(16))).expect("valid");
    assert_eq!(config.sinks.map(|s| s.partitions), Some(16));
    // A bridge running only the sinks (the domain stage elsewhere) states its own count.
    tributary_config::parse(&with(None, Some(16))).expect("valid");
}

#[test]
fn differing_partitions_name_the_sinks_key() {
    let e = error_of(&with(Some(16), Some(8)));
    assert!(e.contains("sinks.partitions"), "{e}");
    assert!(e.contains("domain.partitions is 16"), "{e}");
}

#[test]
fn out_of_range_partitions_name_their_key() {
    for (text, key) in [
        (with(Some(0), None), "domain.partitions"),
        (with(None, Some(257)), "sinks.partitions"),
    ] {
        let e = error_of(&text);
        assert!(e.contains(key) && e.contains("between 1 and 256"), "{e}");
    }
}

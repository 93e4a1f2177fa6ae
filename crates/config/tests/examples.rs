//! Every example configuration under config/ parses and validates; errors name their key.

use std::path::PathBuf;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

#[test]
fn every_example_config_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(config_dir()).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config =
                tributary_config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!config.sources.is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 3, "found {seen} example configs");
}

const MINIMAL: &str = r#"
[nats]
servers = ["nats://127.0.0.1:4222"]
[[sources]]
name = "erp"
publication = "p"
slot = "s"
[sources.connection]
host = "h"
user = "u"
dbname = "d"
"#;

fn error_of(text: &str) -> String {
    match tributary_config::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = tributary_config::parse(MINIMAL).expect("valid");
    let s = c.nats.resolved_stream(&c.sources[0]);
    assert_eq!(s.name, "CDC_ERP");
    assert_eq!(c.nats.subject_prefix, "cdc");
    assert_eq!(c.sources[0].connection.port, 5432);
}

#[test]
fn errors_name_the_key() {
    let e = error_of(&MINIMAL.replace("[nats]\n", "[nats]\nbogus = 1\n"));
    assert!(e.contains("bogus") && e.contains("unknown field"), "{e}");
    let e = error_of(&MINIMAL.replace("slot = \"s\"\n", ""));
    assert!(e.contains("missing field `slot`"), "{e}");
    let e = error_of(&MINIMAL.replace("slot = \"s\"", "slot = \"Not Valid\""));
    assert!(e.contains("sources[0].slot"), "{e}");
    let e = error_of(&MINIMAL.replace("[nats]\n", "[nats]\nack_window = 0\n"));
    assert!(e.contains("nats.ack_window"), "{e}");
    let e = error_of(&MINIMAL.replace("user = \"u\"", "user = \"u\"\nsslmode = \"sometimes\""));
    assert!(e.contains("sslmode") || e.contains("sometimes"), "{e}");
    let two = format!("{MINIMAL}\n[[sources]]\nname = \"erp\"\npublication = \"p\"\nslot = \"t\"\n[sources.connection]\nhost = \"h\"\nuser = \"u\"\ndbname = \"d\"\n");
    assert!(error_of(&two).contains("sources[1].name"));
    for key in ["snapshot_rows_per_message", "changes_per_message"] {
        for bad in ["0", "1001"] {
            let e =
                error_of(&MINIMAL.replace("slot = \"s\"", &format!("slot = \"s\"\n{key} = {bad}")));
            assert!(
                e.contains(&format!("sources[0].{key}")) && e.contains("1000"),
                "{e}"
            );
        }
    }
    let batched = MINIMAL.replace(
        "slot = \"s\"",
        "slot = \"s\"\nsnapshot_rows_per_message = 500",
    );
    let c = tributary_config::parse(&batched).expect("valid");
    assert_eq!(c.sources[0].snapshot_rows_per_message, 500);
    let c = tributary_config::parse(MINIMAL).expect("valid");
    assert_eq!(
        c.sources[0].snapshot_rows_per_message, 1,
        "one row per message by default"
    );
    assert_eq!(
        c.sources[0].changes_per_message, 1,
        "one change per message by default"
    );
}

#[test]
fn secrets_are_never_printed() {
    std::env::set_var("TRIBUTARY_TEST_SECRET", "hunter2");
    let text = MINIMAL.replace(
        "user = \"u\"",
        "user = \"u\"\npassword = \"literal-secret\"",
    );
    let c = tributary_config::parse(&text).expect("valid");
    let debug = format!("{c:?}");
    assert!(!debug.contains("literal-secret"), "{debug}");
    let text = MINIMAL.replace(
        "user = \"u\"",
        "user = \"u\"\npassword = { env = \"TRIBUTARY_TEST_SECRET\" }",
    );
    let c = tributary_config::parse(&text).expect("valid");
    let secret = c.sources[0].connection.password.as_ref().expect("set");
    assert_eq!(secret.resolve().expect("resolves"), "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
}

//! Secrets are never echoed by config errors, in any shape the text gets them wrong, while
//! the error still names the key and the line (issue #11).

const BASE: &str = r#"[nats]
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

const SECRET: &str = "s3cr3t-Hunter2";

fn error_of(text: &str) -> String {
    match tributary_config::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The error for `text`, which holds SECRET on `line`: it must name `key` and the line, and
/// show no part of the secret.
fn check(text: &str, key: &str, line: usize) {
    let e = error_of(text);
    assert!(!e.contains(SECRET), "secret echoed:\n{e}\nfor:\n{text}");
    assert!(
        !e.contains("Hunter2") && !e.contains("s3cr3t"),
        "part echoed:\n{e}"
    );
    assert!(
        e.contains(&format!("`{key}")),
        "key {key} not named:\n{e}\nfor:\n{text}"
    );
    assert!(
        e.contains(&format!("line {line},")),
        "line {line} not named:\n{e}"
    );
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}\n")
}

/// Line number (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

#[test]
fn source_password_in_every_wrong_shape() {
    let shapes = [
        format!("password = \"{SECRET}"),
        format!("password = \"{SECRET}\\q\""),
        format!("password = {{ value = \"{SECRET}\" }}"),
        format!("password = {{ env = \"X\", value = \"{SECRET}\" }}"),
        format!("password = [\"{SECRET}\"]"),
        format!("password = {{ env = \"{SECRET}\", file = \"{SECRET}\" }}"),
        format!("pasword = \"{SECRET}\""),
    ];
    for shape in shapes {
        let text = with(&shape);
        let line = line_of(&text, "word =");
        let key = if shape.starts_with("pasword") {
            "sources.connection.pasword"
        } else {
            "sources.connection.password"
        };
        check(&text, key, line);
    }
}

/// Multi-line strings: the error is on a later line (or at the end), which has no key of
/// its own; the table is named, the secret is not shown.
#[test]
fn multi_line_secrets() {
    for shape in [
        format!("password = '''{SECRET}"),
        format!("password = \"\"\"\n{SECRET}\n\"\"\" nonsense"),
        format!("password = \"\"\"\n{SECRET}"),
    ] {
        let e = error_of(&with(&shape));
        assert!(!e.contains("s3cr3t") && !e.contains("Hunter2"), "{e}");
        assert!(
            e.contains("`sources.connection") && e.contains("line 1"),
            "{e}"
        );
    }
}

#[test]
fn a_wrong_type_is_refused_without_quoting_it() {
    let text = with("password = 987654321");
    let e = error_of(&text);
    assert!(!e.contains("987654321"), "{e}");
    assert!(e.contains("a secret is a string"), "{e}");
    check(
        &with(&format!("password = \"{SECRET}\"\nport = \"{SECRET}\"")),
        "sources.connection.port",
        13,
    );
}

#[test]
fn secret_in_an_inline_table() {
    let text = BASE.replace(
        "[sources.connection]\nhost = \"h\"\nuser = \"u\"\ndbname = \"d\"\n",
        &format!("connection = {{ host = \"h\", user = \"u\", dbname = \"d\", password = \"{SECRET}\", bogus = 1 }}\n"),
    );
    check(&text, "sources.connection", line_of(&text, "connection ="));
    let text = BASE.replace(
        "[sources.connection]\nhost = \"h\"\nuser = \"u\"\ndbname = \"d\"\n",
        &format!("connection = {{ host = \"h\", user = \"u\", dbname = \"d\", password = {{ value = \"{SECRET}\" }} }}\n"),
    );
    check(
        &text,
        "sources.connection.password",
        line_of(&text, "connection ="),
    );
}

#[test]
fn nats_credentials() {
    for key in ["password", "token", "nkey_seed"] {
        for shape in [
            format!("{key} = \"{SECRET}"),
            format!("{key} = {{ value = \"{SECRET}\" }}"),
            format!("{key} = 12"),
        ] {
            let text = BASE.replace("[nats]\n", &format!("[nats]\n{shape}\n"));
            let e = error_of(&text);
            assert!(!e.contains(SECRET) && !e.contains("= 12"), "{e}");
            assert!(
                e.contains(&format!("`nats.{key}`")) && e.contains("line 2,"),
                "{e}"
            );
        }
    }
}

#[test]
fn saas_and_sink_secrets() {
    let cases = [
        ("[[shopify]]\nname = \"web\"\n", "webhook_secret", "shopify"),
        ("[[shopify]]\nname = \"web\"\nwebhook_secret = \"x\"\n[shopify.admin]\nurl = \"http://a\"\n", "access_token", "shopify.admin"),
        ("[[salesforce_cdc]]\nname = \"sf\"\nlogin_url = \"http://l\"\nclient_id = \"c\"\n", "client_secret", "salesforce_cdc"),
        ("[[salesforce_cdc]]\nname = \"sf\"\nlogin_url = \"http://l\"\nclient_id = \"c\"\n", "private_key", "salesforce_cdc"),
        ("[sinks.wms]\nbase_url = \"http://w\"\n", "api_key", "sinks.wms"),
        ("[sinks.wms]\nbase_url = \"http://w\"\napi_key = \"k\"\n[sinks.wms.webhooks]\n", "secret", "sinks.wms.webhooks"),
        ("[[wms]]\n", "secret", "wms"),
        ("[sinks.shopify]\nbase_url = \"http://s\"\n", "access_token", "sinks.shopify"),
        ("[sinks.salesforce]\n", "client_secret", "sinks.salesforce"),
        ("[sinks.salesforce]\n", "jwt_private_key", "sinks.salesforce"),
    ];
    for (table, key, path) in cases {
        for shape in [
            format!("{key} = \"{SECRET}"),
            format!("{key} = {{ value = \"{SECRET}\" }}"),
            format!("{key} = {{ file = \"/f\", env = \"E\", x = \"{SECRET}\" }}"),
        ] {
            let text = with(&format!("{table}{shape}"));
            check(
                &text,
                &format!("{path}.{key}"),
                line_of(&text, &format!("{key} =")),
            );
        }
    }
}

#[test]
fn good_secrets_still_parse() {
    let c = tributary_config::parse(&with("password = { env = \"PGPASSWORD\" }"));
    assert!(c.is_ok(), "{c:?}");
    let c = tributary_config::parse(&with(&format!("password = \"{SECRET}\"")));
    let debug = format!("{c:?}");
    assert!(c.is_ok() && !debug.contains(SECRET), "{debug}");
}

//! The sample retail configuration (config/retail/bridge.toml + domain.toml) loads, and every
//! mapping and ownership path resolves against the compiled descriptors; errors name the key.

use std::path::PathBuf;

use tributary_domain::DomainStage;

fn sample_text() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/retail");
    let bridge = std::fs::read_to_string(dir.join("bridge.toml")).expect("bridge.toml");
    let domain = std::fs::read_to_string(dir.join("domain.toml")).expect("domain.toml");
    format!("{bridge}\n{domain}")
}

fn compile_error(text: &str) -> String {
    let config = tributary_config::parse(text).expect("parses");
    match DomainStage::compile(&config) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sample_mappings_compile() {
    let config = tributary_config::parse(&sample_text()).expect("sample config is valid");
    let mappings = DomainStage::compile(&config).expect("mappings compile");
    assert!(mappings.len() >= 14, "{}", mappings.len());
    let domain = config.domain.expect("domain section");
    assert_eq!(domain.stream, "RETAIL");
    assert_eq!(domain.ownership.len(), 2);
}

#[test]
fn bad_mappings_name_their_key() {
    let text = sample_text();
    let e = compile_error(&text.replace(
        "\"order.total.amount\" = \"total\"",
        "\"order.totl.amount\" = \"total\"",
    ));
    assert!(
        e.contains("has no field `totl`") && e.contains("domain.mappings["),
        "{e}"
    );
    let e =
        compile_error(&text.replace("\"inventory.sku\" = \"sku\"", "\"invntory.sku\" = \"sku\""));
    assert!(e.contains("not an entity"), "{e}");
    let e = compile_error(&text.replace(
        "\"order.store_id\" = \"store_id\"",
        "\"order.lines\" = \"store_id\"",
    ));
    assert!(e.contains("repeated"), "{e}");
    let e = compile_error(&text.replace(
        "{ constant = \"completed\" }",
        "{ constant = \"x\", column = \"y\" }",
    ));
    assert!(e.contains("exactly one"), "{e}");
    let e = compile_error(&text.replace(
        "\"inventory.on_hand\" = \"on_hand\"",
        "\"inventory.on_hand\" = { constant = \"many\" }",
    ));
    assert!(e.contains("constant \"many\""), "{e}");
    let e = compile_error(&text.replace(
        "name = \"pos_sale\"\nsource = \"pos\"",
        "name = \"pos_sale\"\nsource = \"till\"",
    ));
    assert!(e.contains("no source is named \"till\""), "{e}");
    let e = compile_error(&text.replace("name = \"erp_stock\"", "name = \"erp_price\""));
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn unknown_keys_are_refused() {
    let text = sample_text().replace(
        "parent_wait_ms = 2000",
        "parent_wait_ms = 2000\nparent_wait = 1",
    );
    let e = tributary_config::parse(&text).expect_err("unknown key");
    assert!(e.to_string().contains("parent_wait"), "{e}");
}

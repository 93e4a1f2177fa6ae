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

/// A mapping reading a column the arriving relation does not have (a migration renamed it) is
/// a configuration error that stops the stage; a NULL in a column the table has is not (that
/// change is dead-lettered by the mapping itself).
#[test]
fn a_column_missing_from_the_relation_is_a_config_error_a_null_is_not() {
    use tributary_core::{Classify, ErrorClass};
    use tributary_proto::cdc::v1::{ChangeEvent, Column};

    let config = tributary_config::parse(&sample_text()).expect("sample config is valid");
    let mappings = DomainStage::compile(&config).expect("mappings compile");
    let (index, created) = mappings
        .iter()
        .enumerate()
        .find(|(_, m)| m.config.name == "erp_customer_created")
        .expect("the sample maps customer inserts");
    let change = |names: &[&str]| ChangeEvent {
        source: "erp".into(),
        schema: "public".into(),
        table: "customers".into(),
        columns: names
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let all = [
        "id",
        "email",
        "first_name",
        "last_name",
        "phone",
        "marketing_opt_in",
        "updated_at",
    ];
    created
        .check_columns(index, &change(&all))
        .expect("every column the mapping reads is there");
    let renamed: Vec<&str> = all
        .iter()
        .map(|c| if *c == "first_name" { "given_name" } else { c })
        .collect();
    let e = created
        .check_columns(index, &change(&renamed))
        .expect_err("first_name was renamed");
    assert_eq!(e.class(), ErrorClass::CONFIG);
    let text = e.to_string();
    assert!(
        text.contains(&format!("domain.mappings[{index}]"))
            && text.contains("erp_customer_created")
            && text.contains("`first_name`")
            && text.contains("erp public.customers"),
        "names the mapping, the column and the table: {text}"
    );
}

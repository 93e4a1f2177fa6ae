//! Schema governance: the current protos stay wire compatible with the committed descriptor
//! set (`proto/descriptors/tributary.binpb`), and the checker catches what breaks.
//!
//! After adding fields or messages, refresh the committed set so that later changes are
//! checked against them too:
//! `TRIBUTARY_BLESS_DESCRIPTORS=1 cargo test -p tributary-proto --test compat`.

use std::path::PathBuf;

use prost::Message as _;
use tributary_proto::compat;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn current_protos_are_compatible_with_the_committed_descriptor_set() {
    let committed_path = root().join("proto/descriptors/tributary.binpb");
    if std::env::var_os("TRIBUTARY_BLESS_DESCRIPTORS").is_some() {
        std::fs::write(&committed_path, tributary_proto::DESCRIPTOR_SET).expect("write");
    }
    let committed = std::fs::read(&committed_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with TRIBUTARY_BLESS_DESCRIPTORS=1",
            committed_path.display()
        )
    });
    let violations =
        compat::check_encoded(&committed, tributary_proto::DESCRIPTOR_SET).expect("decodes");
    assert!(
        violations.is_empty(),
        "breaking changes against proto/descriptors/tributary.binpb (make a v2 package instead):\n{}",
        violations
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Compiles `order.proto` with `edit` applied, next to the unchanged others.
fn compile_edited(edit: impl Fn(String) -> String) -> Vec<u8> {
    let dir = tempdir();
    let src = root().join("proto");
    let rel = "tributary/retail/v1/order.proto";
    for f in ["tributary/retail/v1/common.proto", rel] {
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        let text = std::fs::read_to_string(src.join(f)).expect("read proto");
        let text = if f == rel { edit(text) } else { text };
        std::fs::write(to, text).expect("write proto");
    }
    let fds = protox::compile([rel], [&dir]).expect("edited proto compiles");
    let _ = std::fs::remove_dir_all(&dir);
    fds.encode_to_vec()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tributary-compat-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn removed_field_fails_the_check() {
    let old = compile_edited(|t| t);
    let new = compile_edited(|t| t.replace("  string payment_state = 7;\n", ""));
    let v = compat::check_encoded(&old, &new).expect("decodes");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].element, "tributary.retail.v1.Order.payment_state");
    assert!(v[0].reason.contains("removed"), "{}", v[0]);
}

#[test]
fn removed_and_reserved_field_passes() {
    let old = compile_edited(|t| t);
    let new = compile_edited(|t| t.replace("  string payment_state = 7;\n", "  reserved 7;\n"));
    assert!(compat::check_encoded(&old, &new)
        .expect("decodes")
        .is_empty());
}

#[test]
fn added_field_passes_the_check() {
    let old = compile_edited(|t| t);
    let new = compile_edited(|t| {
        t.replace(
            "  string store_id = 11;\n",
            "  string store_id = 11;\n  string promotion_code = 13;\n",
        )
    });
    assert!(compat::check_encoded(&old, &new)
        .expect("decodes")
        .is_empty());
}

#[test]
fn changed_type_and_renumbered_field_fail_the_check() {
    let old = compile_edited(|t| t);
    let new = compile_edited(|t| t.replace("int64 quantity = 4;", "string quantity = 4;"));
    let v = compat::check_encoded(&old, &new).expect("decodes");
    assert!(
        v.iter()
            .any(|v| v.element == "tributary.retail.v1.OrderLine.quantity"
                && v.reason.contains("type changed")),
        "{v:?}"
    );
    let new = compile_edited(|t| {
        t.replace("string channel = 4;", "string channel = 13;")
            .replace("Money total = 5;", "Money total = 5;\n  string note = 4;")
    });
    let v = compat::check_encoded(&old, &new).expect("decodes");
    assert!(
        v.iter()
            .any(|v| v.element == "tributary.retail.v1.Order.channel"),
        "a reused number is caught: {v:?}"
    );
}

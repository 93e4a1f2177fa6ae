//! Compiles `proto/` with protox (pure Rust) so that no system `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "tributary/cdc/v1/change.proto",
        "tributary/retail/v1/common.proto",
        "tributary/retail/v1/customer.proto",
        "tributary/retail/v1/catalog.proto",
        "tributary/retail/v1/order.proto",
        "tributary/retail/v1/inventory.proto",
        "tributary/retail/v1/fulfillment.proto",
        "tributary/retail/v1/returns.proto",
        "tributary/retail/v1/event.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptor_set.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    prost_build::Config::new()
        .bytes(["."])
        // Boxed so that an order with its address does not make every `DomainEvent` larger
        // (clippy::large_enum_variant on the entity oneof).
        .boxed(".tributary.retail.v1.Order.shipping_address")
        .compile_fds(fds)?;
    Ok(())
}

//! Protobuf types generated from `proto/`, and the encoded descriptor set for schema publishing.

/// `tributary.cdc.v1`: row-level change events.
pub mod cdc {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tributary.cdc.v1.rs"));
    }
}

/// `tributary.retail.v1`: canonical retail domain events (customers, orders, stock, ...).
pub mod retail {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tributary.retail.v1.rs"));
    }
}

pub mod batch;
pub mod compat;

/// The `FileDescriptorSet` of every `.proto` file, as published for consumers.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

pub use prost::Message;

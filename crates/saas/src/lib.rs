//! SaaS change feeds treated like database CDC: the same `tributary.cdc.v1.ChangeEvent`
//! envelope on JetStream, nothing lost (answered only after the JetStream ack), nothing twice
//! (`Nats-Msg-Id`), and canonical domain events on the `RETAIL` stream.
//!
//! Shopify ([`shopify`]), the WMS's signed lifecycle webhooks ([`wms`]) and Salesforce Change
//! Data Capture over the Pub/Sub API ([`salesforce`]).

pub mod dead_letter;
mod error;
pub mod json_change;
pub mod listener;
pub mod mapping_consumer;
pub mod metrics;
pub mod parts;
pub mod salesforce;
pub mod shopify;
mod stream_spec;
pub mod streams;
pub mod time;
pub mod wms;

pub use error::SaasError;
pub use parts::{FeedParts, Receiver};

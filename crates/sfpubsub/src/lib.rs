//! The Salesforce Pub/Sub API (`eventbus.v1`) as tonic client and server stubs, generated from
//! `proto/salesforce/pubsub_api.proto`, plus the Change Data Capture helpers both sides need:
//! the Avro shape of a change event ([`schema`]) and the field bitmaps of its header
//! ([`bitmap`]). The CDC source (`tributary-saas`) and the emulator (`tributary-sandbox`)
//! share this crate so that they cannot drift apart on the wire; the source and the Salesforce
//! sink share its OAuth2 JWT bearer signer ([`jwt`]).

pub use apache_avro;

pub mod bitmap;
mod datum;
pub mod jwt;
pub mod schema;

/// Generated messages, `pub_sub_client::PubSubClient` and `pub_sub_server::PubSub`.
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("eventbus.v1");
}

/// The trailer Salesforce puts next to a gRPC status to say what went wrong.
pub const ERROR_CODE_TRAILER: &str = "error-code";
/// `error-code` of a CUSTOM replay id that is unknown or older than the retention window.
pub const REPLAY_ID_CORRUPTED: &str =
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";
/// Salesforce's cap on events outstanding per Subscribe stream.
pub const MAX_OUTSTANDING: i32 = 100;
/// `recordIds` of a GAP_OVERFLOW event: no record in particular.
pub const OVERFLOW_RECORD_ID: &str = "000000000000000AAA";

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("Avro schema: {0}")]
    Schema(String),
    #[error("Avro payload: {0}")]
    Payload(String),
    #[error("bitmap {0:?} is not `0x<hex>` or `<pos>-0x<hex>`")]
    Bitmap(String),
}

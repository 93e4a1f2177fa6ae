//! Relation schemas by reference (`[[sources]] schema = "reference"`): each version of a
//! table's description is stored once in the KV bucket [`BUCKET`] under its id, and change
//! events carry `schema_id` instead of their column list.
//!
//! ```text
//!  source: Relation message ──► RelationSchema{id} ──create-if-absent (acked)──► KV tributary_cdc_schemas
//!          then events with schema_id = id ──► CDC_<SOURCE>
//!  consumer: ChangeEvent{schema_id} ──► SchemaResolver (cache; KV get on a miss) ──► columns, key_columns
//! ```
//!
//! A KV bucket rather than a subject of the CDC stream: a consumer resolves an id with one
//! get, whatever the stream's retention has deleted since, and the bucket keeps one value per
//! id however often replicas or restarts store it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use prost::Message as _;
use tokio::sync::OnceCell;
use tributary_core::{Classify, ErrorClass};
use tributary_proto::cdc::v1::{ChangeEvent, RelationSchema};

use crate::NatsError;

/// The KV bucket holding every `tributary.cdc.v1.RelationSchema`, keyed by its id.
pub const BUCKET: &str = "tributary_cdc_schemas";

/// A schema stored on another replica of the bucket may reach the one answering a direct get a
/// moment later: a miss is read again this many times before the id counts as unknown.
const MISS_RETRIES: u32 = 5;
const MISS_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("KV bucket {BUCKET}: {action} schema {id}: {message}")]
    Kv {
        id: String,
        action: &'static str,
        message: String,
    },
    #[error(
        "schema {id} is not in the KV bucket {BUCKET}: the bucket was deleted or purged, or the \
         event comes from another NATS deployment"
    )]
    Unknown { id: String },
    #[error("schema {id} in the KV bucket {BUCKET} does not decode: {message}")]
    Corrupt { id: String, message: String },
    #[error(
        "schema id {id} is stored in the KV bucket {BUCKET} for another description; ids are \
         never reused, so the bucket holds a value the bridge did not write"
    )]
    Conflict { id: String },
}

impl Classify for SchemaError {
    fn class(&self) -> ErrorClass {
        match self {
            SchemaError::Nats(e) => Classify::class(e),
            SchemaError::Kv { .. } => ErrorClass::TRANSIENT,
            SchemaError::Unknown { .. } => ErrorClass::Definite {
                reason: "unknown_schema",
            },
            SchemaError::Corrupt { .. } | SchemaError::Conflict { .. } => ErrorClass::CORRUPT_STATE,
        }
    }
}

/// Opens the bucket, creating it when missing (the bridge's sources and domain stage).
pub async fn open_bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, NatsError> {
    crate::kv::open_bucket(
        js,
        BUCKET,
        "Tributary relation schemas by id (ChangeEvent.schema_id)",
        "schemas",
        replicas,
    )
    .await
}

/// Stores `schema` under its id unless it is there already; returns once the server has
/// acknowledged it (or shown it stored), so an event naming it may be published. Idempotent:
/// replicas and restarts storing the same description find the same value.
pub async fn store(kv: &kv::Store, schema: &RelationSchema) -> Result<(), SchemaError> {
    let id = &schema.id;
    let value = schema.encode_to_vec();
    match kv.create(id, value.clone().into()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let stored = kv.get(id).await.map_err(|e| SchemaError::Kv {
                id: id.clone(),
                action: "reading",
                message: e.to_string(),
            })?;
            match stored {
                Some(bytes) if bytes.as_ref() == value.as_slice() => Ok(()),
                // Same id, same description, encoded by another version: still the same one.
                Some(bytes) => match RelationSchema::decode(bytes) {
                    Ok(other) if &other == schema => Ok(()),
                    _ => Err(SchemaError::Conflict { id: id.clone() }),
                },
                // Deleted between the create and the get: store it again.
                None => kv
                    .put(id, value.into())
                    .await
                    .map(drop)
                    .map_err(|e| SchemaError::Kv {
                        id: id.clone(),
                        action: "storing",
                        message: e.to_string(),
                    }),
            }
        }
        Err(e) => Err(SchemaError::Kv {
            id: id.clone(),
            action: "storing",
            message: e.to_string(),
        }),
    }
}

/// Fills in `columns` and `key_columns` of events that carry a `schema_id`, with a cache by id
/// (a schema never changes under its id, so nothing is ever evicted for staleness).
pub struct SchemaResolver {
    js: jetstream::Context,
    kv: OnceCell<kv::Store>,
    cache: Mutex<HashMap<String, Arc<RelationSchema>>>,
}

impl SchemaResolver {
    /// The bucket is opened on the first reference, so inline-only deployments never need it.
    pub fn new(js: jetstream::Context) -> Self {
        SchemaResolver {
            js,
            kv: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `event` in place; events with inline columns (or none at all) are left as is.
    pub async fn resolve(&self, event: &mut ChangeEvent) -> Result<(), SchemaError> {
        if event.schema_id.is_empty() || !event.columns.is_empty() {
            return Ok(());
        }
        let schema = self.get(&event.schema_id).await?;
        event.columns = schema.columns.clone();
        event.key_columns = schema.key_columns.clone();
        Ok(())
    }

    /// The schema stored under `id`, from the cache or the bucket.
    pub async fn get(&self, id: &str) -> Result<Arc<RelationSchema>, SchemaError> {
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let kv = self
            .kv
            .get_or_try_init(|| async {
                self.js
                    .get_key_value(BUCKET)
                    .await
                    .map_err(|e| SchemaError::Kv {
                        id: id.to_string(),
                        action: "opening the bucket for",
                        message: e.to_string(),
                    })
            })
            .await?;
        let mut attempts = 0;
        let bytes = loop {
            let entry = kv.get(id).await.map_err(|e| SchemaError::Kv {
                id: id.to_string(),
                action: "reading",
                message: e.to_string(),
            })?;
            match entry {
                Some(bytes) => break bytes,
                None if attempts < MISS_RETRIES => {
                    attempts += 1;
                    tokio::time::sleep(MISS_DELAY).await;
                }
                None => return Err(SchemaError::Unknown { id: id.to_string() }),
            }
        };
        let schema = RelationSchema::decode(bytes).map_err(|e| SchemaError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        if schema.id != id {
            return Err(SchemaError::Corrupt {
                id: id.to_string(),
                message: format!("it names itself {:?}", schema.id),
            });
        }
        let schema = Arc::new(schema);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id.to_string(), schema.clone());
        }
        Ok(schema)
    }

    fn cached(&self, id: &str) -> Option<Arc<RelationSchema>> {
        self.cache.lock().ok()?.get(id).cloned()
    }
}

//! Salesforce record ids → the entity keys the bridge wrote into them as external ids.
//!
//! The Salesforce sink upserts by `external_id_field` = the domain entity's key, so a change
//! that carries that field (the bridge's own writes included: their echoes are read here
//! before they are dropped) says which entity the record is. Later changes of the record carry
//! only the changed fields; the crosswalk (KV `tributary_saas`,
//! `salesforce.<feed>.xwalk.<entity>.<record id>`) lets them map to that entity's key instead
//! of `SF-<record id>`: an agent's edit of a bridge-written Contact updates the ERP customer.
//! The resolved keys are stored in the raw event (`externalIds`), so re-mapping the raw
//! stream later gives the same keys.

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::kv;
use serde_json::{Map, Value};
use tributary_nats::kv::key_token;

use crate::SaasError;

/// Fields of an Order that name another record whose key is worth resolving.
const ORDER_REFERENCES: &[(&str, &str)] = &[("AccountId", "Account")];

pub(crate) struct Crosswalk {
    field: String,
    feed: String,
    kv: kv::Store,
    cache: Mutex<HashMap<String, Option<String>>>,
}

impl Crosswalk {
    pub(crate) fn new(feed: &str, field: &str, kv: kv::Store) -> Self {
        Crosswalk {
            field: field.to_string(),
            feed: feed.to_string(),
            kv,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, entity: &str, id: &str) -> String {
        format!(
            "salesforce.{}.xwalk.{}.{}",
            key_token(&self.feed),
            key_token(entity),
            key_token(id)
        )
    }

    fn cached(&self, key: &str) -> Option<Option<String>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn remember(&self, key: String, value: Option<String>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a feed touching millions of records keeps them in KV, not in memory.
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(key, value);
    }

    /// Records `id → fields[external id field]` for every record of a change that carries it.
    pub(crate) async fn learn(
        &self,
        entity: &str,
        ids: &[String],
        fields: &Map<String, Value>,
    ) -> Result<(), SaasError> {
        let Some(value) = fields
            .get(&self.field)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        else {
            return Ok(());
        };
        for id in ids {
            let key = self.key(entity, id);
            if self.cached(&key).flatten().as_deref() == Some(value) {
                continue;
            }
            self.kv
                .put(&key, value.to_string().into_bytes().into())
                .await
                .map_err(|e| SaasError::nats(format!("KV put {key}"), e))?;
            self.remember(key, Some(value.to_string()));
        }
        Ok(())
    }

    /// The entity key recorded for a record, if any.
    pub(crate) async fn resolve(
        &self,
        entity: &str,
        id: &str,
    ) -> Result<Option<String>, SaasError> {
        let key = self.key(entity, id);
        if let Some(known) = self.cached(&key) {
            return Ok(known);
        }
        let found = self
            .kv
            .get(&key)
            .await
            .map_err(|e| SaasError::nats(format!("KV get {key}"), e))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|v| !v.is_empty());
        self.remember(key, found.clone());
        Ok(found)
    }

    /// `externalIds` of a raw event: the entity keys of its records and of the records its
    /// fields name (an Order's account), for those the crosswalk knows.
    pub(crate) async fn external_ids(
        &self,
        entity: &str,
        ids: &[String],
        fields: &Map<String, Value>,
    ) -> Result<Map<String, Value>, SaasError> {
        let mut out = Map::new();
        for id in ids {
            if let Some(key) = self.resolve(entity, id).await? {
                out.insert(id.clone(), Value::String(key));
            }
        }
        if entity == "Order" {
            for (field, object) in ORDER_REFERENCES {
                if let Some(id) = fields.get(*field).and_then(Value::as_str) {
                    if let Some(key) = self.resolve(object, id).await? {
                        out.insert(id.to_string(), Value::String(key));
                    }
                }
            }
        }
        Ok(out)
    }
}

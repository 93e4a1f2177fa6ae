//! The tracker's KV bucket: one record per process under `order.<key>` / `return.<key>`
//! (keys escaped with [`key_token`]), written with compare-and-set on the KV revision so
//! that a replica that lost its lease and one that took over never overwrite each other.
//! `link.<own|copy>.<id>` maps an order's id in another system (`shopify:<gid>`) to the
//! record of the storefront's own order (`own`) and to the record that carries it on
//! (`copy`: the ERP's order of it). `dead_letter.<stream>.<seq>.<parked>` marks a dead
//! letter's resolution as counted (`resolution.rs`).

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt as _;
use tributary_nats::kv::key_token;

use crate::process::{Kind, Process};
use crate::TrackerError;

pub struct Store {
    kv: kv::Store,
    bucket: String,
}

impl Store {
    /// Opens the bucket, creating it (the tracker at start-up).
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Store, TrackerError> {
        let kv = tributary_nats::kv::open_bucket(
            js,
            bucket,
            "Tributary order-to-cash tracker: one record per order and return",
            "tracker",
            replicas,
        )
        .await?;
        Ok(Store {
            kv,
            bucket: bucket.to_string(),
        })
    }

    /// Opens an existing bucket without creating it (the operator commands); None when the
    /// tracker has never run.
    pub async fn existing(
        js: &jetstream::Context,
        bucket: &str,
    ) -> Result<Option<Store>, TrackerError> {
        match js.get_key_value(bucket).await {
            Ok(kv) => Ok(Some(Store {
                kv,
                bucket: bucket.to_string(),
            })),
            Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => Ok(None),
            Err(e) => Err(TrackerError::nats(format!("KV bucket {bucket}"), e)),
        }
    }

    pub fn key(kind: Kind, key: &str) -> String {
        format!("{}.{}", kind.as_str(), key_token(key))
    }

    /// The record and its revision, None when the process is new.
    pub async fn load(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<(Process, u64)>, TrackerError> {
        self.load_at(&Self::key(kind, key)).await
    }

    pub async fn load_at(&self, k: &str) -> Result<Option<(Process, u64)>, TrackerError> {
        let entry = self
            .kv
            .entry(k)
            .await
            .map_err(|e| TrackerError::nats(format!("KV {} get {k}", self.bucket), e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let p =
                    serde_json::from_slice(&e.value).map_err(|err| TrackerError::CorruptState {
                        key: format!("{}/{k}", self.bucket),
                        message: err.to_string(),
                    })?;
                Ok(Some((p, e.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Stores the record if it is still at `revision` (0: new): the new revision, or None
    /// when another writer came first (the caller reloads and applies again).
    pub async fn save(&self, p: &Process, revision: u64) -> Result<Option<u64>, TrackerError> {
        let k = Self::key(p.kind, &p.key);
        let bytes = serde_json::to_vec(p).map_err(|e| TrackerError::CorruptState {
            key: k.clone(),
            message: e.to_string(),
        })?;
        let what = || format!("KV {} write {k}", self.bucket);
        if revision == 0 {
            match self.kv.create(&k, bytes.into()).await {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(TrackerError::nats(what(), e)),
            }
        } else {
            match self.kv.update(&k, bytes.into(), revision).await {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(TrackerError::nats(what(), e)),
            }
        }
    }

    /// Creates `k` unless it exists: true when this call created it (a marker that something
    /// was counted once, e.g. a dead letter's resolution).
    pub async fn create_once(&self, k: &str, value: Vec<u8>) -> Result<bool, TrackerError> {
        match self.kv.create(k, value.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(TrackerError::nats(
                format!("KV {} write {k}", self.bucket),
                e,
            )),
        }
    }

    /// Every record's KV key (`order.*` and `return.*`).
    pub async fn keys(&self) -> Result<Vec<String>, TrackerError> {
        let what = || format!("KV {} keys", self.bucket);
        let keys = self
            .kv
            .keys()
            .await
            .map_err(|e| TrackerError::nats(what(), e))?;
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| TrackerError::nats(what(), e))?;
        Ok(keys
            .into_iter()
            .filter(|k| k.starts_with("order.") || k.starts_with("return."))
            .collect())
    }

    fn link_key(own: bool, link: &str) -> String {
        let side = if own { "own" } else { "copy" };
        format!("link.{side}.{}", key_token(link))
    }

    /// The order key recorded for `link` on one side, if any.
    pub async fn link(&self, own: bool, link: &str) -> Result<Option<String>, TrackerError> {
        let k = Self::link_key(own, link);
        let entry = self
            .kv
            .get(&k)
            .await
            .map_err(|e| TrackerError::nats(format!("KV {} get {k}", self.bucket), e))?;
        Ok(entry.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records `key` for `link` on one side (the same value again is harmless).
    pub async fn set_link(&self, own: bool, link: &str, key: &str) -> Result<(), TrackerError> {
        let k = Self::link_key(own, link);
        self.kv
            .put(&k, key.as_bytes().to_vec().into())
            .await
            .map_err(|e| TrackerError::nats(format!("KV {} write {k}", self.bucket), e))?;
        Ok(())
    }

    /// Every record, in key order.
    pub async fn all(&self) -> Result<Vec<Process>, TrackerError> {
        let mut keys = self.keys().await?;
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some((p, _)) = self.load_at(&k).await? {
                out.push(p);
            }
        }
        Ok(out)
    }
}

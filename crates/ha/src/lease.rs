//! One lease: acquire with `create`, renew with compare-and-set, release with a revision-checked
//! delete, and the [`Fence`] that every side effect of the unit consults.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tributary_core::Fence;

use crate::metrics as m;
use crate::HaError;

const UNIT_PREFIX: &str = "unit.";

/// The record stored under a unit's key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The unit (unescaped name).
    pub unit: String,
    /// The replica holding it.
    pub instance: String,
    /// When this holder acquired it (Unix ms, the holder's clock; for display only).
    pub acquired_at_ms: u64,
    /// The KV revision of this record: the fencing token (not stored, filled on read).
    #[serde(skip)]
    pub revision: u64,
}

/// The lease bucket, shared by every unit of a replica.
#[derive(Clone)]
pub struct LeaseStore {
    kv: kv::Store,
    bucket: String,
    ttl: Duration,
    margin: Duration,
    instance: String,
}

impl LeaseStore {
    /// Opens (or creates) the bucket with `max_age = ttl`: a key not renewed within `ttl`
    /// expires on the server.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
        replicas: usize,
        instance: &str,
    ) -> Result<LeaseStore, HaError> {
        if ttl < Duration::from_secs(1) {
            return Err(HaError::Config {
                key: "ha.lease_ttl_ms".into(),
                message: format!(
                    "{} ms is too short to renew in (at least 1000)",
                    ttl.as_millis()
                ),
            });
        }
        let kv = tributary_nats::kv::open_bucket_with_max_age(
            js,
            bucket,
            "Tributary work-unit leases and replica heartbeats",
            "ha",
            replicas,
            Some(ttl),
        )
        .await
        .map_err(|source| HaError::Bucket {
            bucket: bucket.to_string(),
            source,
        })?;
        // Every holder's safety rests on the server expiring keys after exactly the TTL it
        // counts with: a bucket made with another TTL (an older config) must not be used.
        let mut stream = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .map_err(|e| HaError::kv(bucket, "bucket info", e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| HaError::kv(bucket, "bucket info", e))?;
        if info.config.max_age != ttl {
            return Err(HaError::Config {
                key: "ha.lease_ttl_ms".into(),
                message: format!(
                    "the lease bucket {bucket} expires keys after {} ms, not {} ms: every replica \
                     must use the bucket's TTL. To change it, stop every replica, delete the \
                     bucket (nats kv rm {bucket}) and start them with the new value",
                    info.config.max_age.as_millis(),
                    ttl.as_millis()
                ),
            });
        }
        Ok(LeaseStore {
            kv,
            bucket: bucket.to_string(),
            ttl,
            // Clock rates differ a little between hosts; a fifth of the TTL (at least 200 ms)
            // keeps the holder's idea of "still mine" well inside the server's expiry.
            margin: (ttl / 5).max(Duration::from_millis(200)),
            instance: instance.to_string(),
        })
    }

    /// The lease TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// This replica's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn kv(&self) -> &kv::Store {
        &self.kv
    }

    /// How long after a renew was sent the holder may still act.
    pub fn validity(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }

    /// Tries to take `unit`: Some(lease) when nobody holds it, None when someone does.
    pub async fn try_acquire(&self, unit: &str) -> Result<Option<Lease>, HaError> {
        let key = unit_key(unit)?;
        let info = LeaseInfo {
            unit: unit.to_string(),
            instance: self.instance.clone(),
            acquired_at_ms: unix_ms(),
            revision: 0,
        };
        let value = encode(&key, &info)?;
        let sent = Instant::now();
        match self.kv.create(&key, value.clone()).await {
            Ok(revision) => {
                debug!(unit, revision, "lease acquired");
                Ok(Some(Lease::new(
                    self.clone(),
                    key,
                    info,
                    value,
                    revision,
                    sent,
                )))
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(HaError::kv(&key, "create", e)),
        }
    }

    /// Who holds `unit` now (None: nobody).
    pub async fn holder(&self, unit: &str) -> Result<Option<LeaseInfo>, HaError> {
        let key = unit_key(unit)?;
        self.read(&key).await
    }

    /// The keys under `prefix` that have a message in the bucket (put or delete marker).
    ///
    /// Read from the stream's subject list (one request) rather than with `keys()`: that
    /// creates a consumer per call, and a key that expires (`max_age`) between the consumer's
    /// creation and its delivery leaves it waiting for an idle heartbeat — seconds in which a
    /// replica's ownership loop would stall past its heartbeat TTL.
    pub(crate) async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, HaError> {
        use futures::TryStreamExt as _;
        let filter = format!("{}{prefix}>", self.kv.prefix);
        let subjects: Vec<(String, usize)> = self
            .kv
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| HaError::kv(prefix, "keys", e))?
            .try_collect()
            .await
            .map_err(|e| HaError::kv(prefix, "keys", e))?;
        let mut keys: Vec<String> = subjects
            .into_iter()
            .filter_map(|(subject, _)| subject.strip_prefix(&self.kv.prefix).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Every held lease (for `status`).
    pub async fn leases(&self) -> Result<Vec<LeaseInfo>, HaError> {
        let keys = self.keys_with_prefix(UNIT_PREFIX).await?;
        let mut out = Vec::new();
        for key in &keys {
            if let Some(info) = self.read(key).await? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.unit.cmp(&b.unit));
        Ok(out)
    }

    async fn read(&self, key: &str) -> Result<Option<LeaseInfo>, HaError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| HaError::kv(key, "get", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let mut info: LeaseInfo =
                    serde_json::from_slice(&e.value).map_err(|source| HaError::Record {
                        key: key.to_string(),
                        source,
                    })?;
                info.revision = e.revision;
                Ok(Some(info))
            }
            _ => Ok(None),
        }
    }
}

/// A held lease. Keep it renewed with [`Lease::hold`]; hand the [`Fence`] to the unit.
pub struct Lease {
    store: LeaseStore,
    key: String,
    info: LeaseInfo,
    value: Bytes,
    fence: Fence,
}

impl Lease {
    fn new(
        store: LeaseStore,
        key: String,
        mut info: LeaseInfo,
        value: Bytes,
        revision: u64,
        sent: Instant,
    ) -> Lease {
        info.revision = revision;
        let fence = Fence::new(&info.unit, revision, sent + store.validity());
        Lease {
            store,
            key,
            info,
            value,
            fence,
        }
    }

    /// The unit this lease is for.
    pub fn unit(&self) -> &str {
        &self.info.unit
    }

    /// The current fencing token (the KV revision of the last write).
    pub fn revision(&self) -> u64 {
        self.fence.token()
    }

    /// What the unit consults before each side effect.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// One renew (compare-and-set on the held revision). A lost compare means someone else
    /// holds the key now: the fence is marked lost at once.
    pub async fn renew(&mut self) -> Result<(), HaError> {
        if self.fence.is_lost() {
            return Err(HaError::kv(&self.key, "renew", LostLease));
        }
        let sent = Instant::now();
        let revision = self.fence.token();
        match self
            .store
            .kv
            .update(&self.key, self.value.clone(), revision)
            .await
        {
            Ok(new_revision) => {
                self.fence
                    .extend(new_revision, sent + self.store.validity());
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.fence.mark_lost();
                Err(HaError::kv(&self.key, "renew", e))
            }
            Err(e) => Err(HaError::kv(&self.key, "renew", e)),
        }
    }

    /// Renews every TTL/3 until `stop` (Ok: still held, release it) or until the lease is lost
    /// (Err): a refused compare-and-set, or no successful renew before the validity runs out.
    /// In both lost cases the fence is marked lost before this returns, so the unit stops before
    /// the server can let anyone else take the key.
    pub async fn hold(&mut self, stop: &CancellationToken) -> Result<(), HaError> {
        let every = self.store.ttl / 3;
        let unit = self.info.unit.clone();
        let mut next = Instant::now() + every;
        loop {
            let deadline = self.fence.valid_until();
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.fence.mark_lost();
                    warn!(unit = %unit, "lease not renewed in time; unit stopped (self-fenced)");
                    return Err(HaError::kv(&self.key, "renew", LostLease));
                }
                _ = tokio::time::sleep_until(next.into()) => {}
            }
            // A renew that hangs past the validity is as good as lost.
            let attempt = tokio::time::timeout_at(deadline.into(), self.renew()).await;
            match attempt {
                Ok(Ok(())) => next = Instant::now() + every,
                Ok(Err(e)) if self.fence.is_lost() => {
                    warn!(unit = %unit, error = %e, "lease taken over; unit stopped");
                    return Err(e);
                }
                Ok(Err(e)) => {
                    metrics::counter!(m::RENEW_FAILURES, "unit" => unit.clone()).increment(1);
                    debug!(unit = %unit, error = %e, "lease renew failed; retrying");
                    next = Instant::now() + Duration::from_millis(250).min(every);
                }
                Err(_) => {} // the deadline arm fires on the next turn
            }
        }
    }

    /// Gives the unit up at once (a revision-checked delete, so another holder's key is never
    /// removed). The fence is marked lost first: nothing may act on it afterwards.
    pub async fn release(self) -> Result<(), HaError> {
        let revision = self.fence.token();
        self.fence.mark_lost();
        match self
            .store
            .kv
            .delete_expect_revision(&self.key, Some(revision))
            .await
        {
            Ok(()) => {
                info!(unit = %self.info.unit, revision, "lease released");
                Ok(())
            }
            Err(e) => Err(HaError::kv(&self.key, "release", e)),
        }
    }
}

/// A lease that was taken over or ran out.
#[derive(Debug, thiserror::Error)]
#[error("the lease is no longer held")]
struct LostLease;

fn unit_key(unit: &str) -> Result<String, HaError> {
    if unit.is_empty() {
        return Err(HaError::InvalidUnit(unit.to_string()));
    }
    Ok(format!(
        "{UNIT_PREFIX}{}",
        tributary_nats::kv::key_token(unit)
    ))
}

fn encode(key: &str, info: &LeaseInfo) -> Result<Bytes, HaError> {
    serde_json::to_vec(info)
        .map(Bytes::from)
        .map_err(|source| HaError::Record {
            key: key.to_string(),
            source,
        })
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

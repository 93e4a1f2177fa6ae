//! Key-value buckets and object stores for Tributary's durable state (snapshot progress,
//! entity versions, cursors, schemas): opened or created the same way everywhere, with keys
//! escaped the same way, and marked as the bridge's like its streams ([`crate::ownership`]).
//!
//! async-nats's `kv::Config` and `object_store::Config` carry no stream metadata, so the
//! backing streams (`KV_<bucket>`, `OBJ_<bucket>`) are created here through the stream API,
//! with the settings async-nats would give them plus the mark, in one request: a bucket is
//! never seen without its mark.

use std::time::Duration;

use async_nats::jetstream::{
    self, context::GetStreamErrorKind, kv, object_store, stream, ErrorCode,
};
use tracing::info;

use crate::error::{create_is_transient, get_is_transient};
use crate::ownership::{self, Ownership};
use crate::NatsError;

/// Descriptions of the buckets older Tributary versions created start with this.
const LEGACY_DESCRIPTION: &str = "Tributary";

/// Opens `bucket`, creating it (file storage, one revision per key) when it does not exist.
/// `component` is recorded in the ownership mark.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    component: &str,
    replicas: usize,
) -> Result<kv::Store, NatsError> {
    open_bucket_with_max_age(js, bucket, description, component, replicas, None).await
}

/// [`open_bucket`] whose keys expire `max_age` after their last write (leases, heartbeats).
pub async fn open_bucket_with_max_age(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    component: &str,
    replicas: usize,
    max_age: Option<std::time::Duration>,
) -> Result<kv::Store, NatsError> {
    let config = stream::Config {
        max_age: max_age.unwrap_or_default(),
        name: format!("KV_{bucket}"),
        description: Some(description.to_string()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    claim_store_stream(js, config, component).await?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| NatsError::api(&format!("KV_{bucket}"), "opening the KV bucket", true, e))
}

/// Opens the object store `bucket`, creating it (file storage) when it does not exist.
pub async fn open_object_store(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    component: &str,
    replicas: usize,
) -> Result<object_store::ObjectStore, NatsError> {
    let config = stream::Config {
        name: format!("OBJ_{bucket}"),
        description: Some(description.to_string()),
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        max_age: Duration::ZERO,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        ..Default::default()
    };
    claim_store_stream(js, config, component).await?;
    js.get_object_store(bucket).await.map_err(|e| {
        NatsError::api(
            &format!("OBJ_{bucket}"),
            "opening the object store",
            true,
            e,
        )
    })
}

/// Creates the backing stream with the mark, or checks that the existing one is the bridge's
/// (marking one an older Tributary created). Its settings are not changed.
async fn claim_store_stream(
    js: &jetstream::Context,
    mut config: stream::Config,
    component: &str,
) -> Result<(), NatsError> {
    let name = config.name.clone();
    let existing = match js.get_stream(&name).await {
        Ok(s) => s.cached_info().config.clone(),
        Err(e) => {
            if !matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
            {
                let transient = get_is_transient(&e.kind());
                return Err(NatsError::api(&name, "reading its info", transient, e));
            }
            ownership::mark(&mut config.metadata, component);
            return match js.create_stream(config).await {
                Ok(_) => {
                    info!(stream = %name, component, "created bucket");
                    Ok(())
                }
                Err(e) => {
                    let transient = create_is_transient(&e.kind());
                    Err(NatsError::api(&name, "creating it", transient, e))
                }
            };
        }
    };
    match ownership::ownership(&existing, &config.subjects, Some(LEGACY_DESCRIPTION)) {
        Ownership::Marked => Ok(()),
        Ownership::Foreign(detail) => Err(NatsError::Foreign {
            stream: name,
            detail,
            fix: "the bucket names are config keys domain.state_bucket, domain.schema_bucket and \
                  sinks.state_bucket; tributary_snapshots, tributary_saas and tributary_cdc_schemas \
                  are fixed"
                .into(),
        }),
        Ownership::Legacy => {
            let mut marked = existing;
            ownership::mark(&mut marked.metadata, component);
            info!(stream = %name, component, "adopting a bucket an older Tributary created: adding the ownership mark");
            js.update_stream(&marked).await.map(drop).map_err(|e| {
                let transient = create_is_transient(&e.kind());
                NatsError::api(&name, "adding the ownership mark", transient, e)
            })
        }
    }
}

/// KV keys allow `[-/_=.a-zA-Z0-9]`; anything else is written as `=XX`.
pub fn key_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        "=".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_what_kv_keys_do_not_allow() {
        assert_eq!(super::key_token("SO-1"), "SO-1");
        assert_eq!(super::key_token("a.b c"), "a=2Eb=20c");
        assert_eq!(super::key_token(""), "=");
    }
}

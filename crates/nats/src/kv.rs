//! Key-value buckets for Tributary's durable state (snapshot progress, entity versions,
//! cursors): opened or created the same way everywhere, with keys escaped the same way.

use async_nats::jetstream::{self, kv};

use crate::NatsError;

/// Opens `bucket`, creating it (file storage, one revision per key) when it does not exist.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, NatsError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: bucket.to_string(),
        description: description.to_string(),
        history: 1,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| NatsError::Stream {
        stream: format!("KV bucket {bucket}"),
        message: e.to_string(),
    })
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

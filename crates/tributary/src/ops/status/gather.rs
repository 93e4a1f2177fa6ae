//! What `status` reads from NATS beyond the sources: sinks, feeds and snapshot progress.

use super::{FeedStatus, SinkStatus};

/// The feeds of the configuration with their raw stream size and stored positions.
pub(super) async fn feed_statuses(
    js: &async_nats::jetstream::Context,
    config: &tributary_config::Config,
) -> Vec<FeedStatus> {
    use futures::StreamExt as _;
    let feeds = config
        .shopify
        .iter()
        .map(|s| ("shopify", s.name.as_str(), s.stream.as_str()))
        .chain(
            config
                .salesforce_cdc
                .iter()
                .map(|s| ("salesforce", s.name.as_str(), s.stream.as_str())),
        );
    let kv = js
        .get_key_value(tributary_saas::shopify::STATE_BUCKET)
        .await
        .ok();
    let mut keys = Vec::new();
    if let Some(kv) = &kv {
        if let Ok(mut list) = kv.keys().await {
            while let Some(Ok(k)) = list.next().await {
                keys.push(k);
            }
        }
    }
    let mut out = Vec::new();
    for (kind, name, stream) in feeds {
        let mut st = FeedStatus {
            feed: format!("{kind}:{name}"),
            stream: stream.to_string(),
            ..Default::default()
        };
        match js.get_stream(stream).await {
            Ok(mut s) => match s.info().await {
                Ok(info) => st.messages = Some(info.state.messages),
                Err(e) => st.error = Some(format!("stream {stream}: {e}")),
            },
            Err(e) => st.error = Some(format!("stream {stream}: {e}")),
        }
        let prefix = format!("{kind}.{}.", tributary_nats::kv::key_token(name));
        for key in keys.iter().filter(|k| k.starts_with(&prefix)) {
            let Some(kv) = &kv else { break };
            if let Ok(Some(v)) = kv.get(key).await {
                st.positions.push((
                    key[prefix.len()..].to_string(),
                    describe_position(&String::from_utf8_lossy(&v)),
                ));
            }
        }
        out.push(st);
    }
    out
}

/// A stored position as a person reads it: a cursor as is; a Salesforce position as its replay
/// id and the commit time of the last event stored.
fn describe_position(raw: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.to_string();
    };
    let replay = v["replay_id"].as_str().unwrap_or("?");
    match v["clock_micros"].as_i64().filter(|c| *c > 0) {
        Some(us) => format!(
            "replay id {replay}, last change committed {}",
            super::super::micros_rfc3339(us).unwrap_or_else(|| us.to_string())
        ),
        None => format!("replay id {replay}"),
    }
}

pub(super) async fn sink_statuses(
    js: &async_nats::jetstream::Context,
    config: &tributary_config::Config,
) -> Vec<SinkStatus> {
    let Some(sinks) = &config.sinks else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if sinks.wms.is_some() {
        names.push("wms");
    }
    if sinks.shopify.is_some() {
        names.push("shopify");
    }
    if sinks.salesforce.is_some() {
        names.push("salesforce");
    }
    if sinks.erp.is_some() {
        names.push("erp");
    }
    let mut out = Vec::new();
    for name in names {
        let consumers = tributary_sinks::partition_consumers(sinks, name);
        let mut st = SinkStatus {
            sink: name.to_string(),
            consumer: match consumers.as_slice() {
                [one] => one.name.clone(),
                // Partitions (`-p07`) and, with two priority classes, `-low` consumers.
                many if many.iter().any(|c| c.class.is_some()) => format!(
                    "{} ({} consumers: high and low class, {} partition(s) each)",
                    tributary_sinks::consumer_name(name),
                    many.len(),
                    sinks.partitions
                ),
                many => format!(
                    "{} ({} partitions)",
                    tributary_sinks::consumer_name(name),
                    many.len()
                ),
            },
            ..Default::default()
        };
        // Partitioned: one row for the sink, its figures summed over the partitions (the
        // ack floor is the lowest: every event below it is applied in every partition).
        match js.get_stream(&sinks.stream).await {
            Ok(stream) => {
                for part in &consumers {
                    match stream.consumer_info(&part.name).await {
                        Ok(info) => {
                            let floor = info.ack_floor.stream_sequence;
                            st.ack_floor = Some(st.ack_floor.map_or(floor, |f| f.min(floor)));
                            st.pending = Some(st.pending.unwrap_or(0) + info.num_pending);
                            st.in_flight = Some(st.in_flight.unwrap_or(0) + info.num_ack_pending);
                        }
                        Err(e) => {
                            st.error
                                .get_or_insert_with(|| format!("consumer {}: {e}", part.name));
                        }
                    }
                }
            }
            Err(e) => st.error = Some(format!("stream {}: {e}", sinks.stream)),
        }
        if let Ok(dlq) = js.get_stream(&sinks.dead_letter_stream).await {
            let subject = format!("dlq.sink.{name}");
            let mut count = 0;
            if let Ok(mut subjects) = dlq.info_with_subjects(&subject).await {
                while let Ok(Some((_, n))) = futures::TryStreamExt::try_next(&mut subjects).await {
                    count += n as u64;
                }
            }
            st.dead_letters = Some(count);
        }
        out.push(st);
    }
    out
}

pub(super) async fn read_snapshot(
    js: &async_nats::jetstream::Context,
    source: &str,
) -> Option<tributary_pipeline::SnapshotState> {
    let kv = js
        .get_key_value(tributary_pipeline::SNAPSHOT_BUCKET)
        .await
        .ok()?;
    let bytes = kv
        .get(source.replace(['.', '*', '>', ' '], "_"))
        .await
        .ok()??;
    serde_json::from_slice(&bytes).ok()
}

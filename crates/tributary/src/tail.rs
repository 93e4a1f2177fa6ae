//! `tributary tail --subject S`: the events of a subject printed as JSON, decoded with the
//! protobuf descriptor set the bridge published (`tributary_schemas`, docs/consumers.md), so
//! that what is printed is what a consumer reading the schemas at run time sees.
//!
//! The message type follows from the stream holding the subject: domain events on the domain
//! stream and the sinks' dead letters, row changes on a source's stream and the domain stage's
//! dead letters; the SaaS feeds' raw streams hold JSON already. `--message-type` overrides.
//! Row changes naming their schema by reference (`schema_id`) are printed with the columns
//! and key columns of that schema filled in, read from the KV bucket `tributary_cdc_schemas`.
//! A batch (`...<op>_batch`, a `ChangeEventBatch`) is printed as its events, one record each
//! with its `batch_index`; `--count` counts events.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use base64::Engine as _;
use futures::StreamExt as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tributary_config::Config;
use tributary_nats::schemas::SchemaResolver;
use tributary_proto::batch::{is_batch_subject, split_batch};
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::Message as _;

use crate::ops::Format;

pub const DOMAIN_EVENT: &str = "tributary.retail.v1.DomainEvent";
pub const CHANGE_EVENT: &str = "tributary.cdc.v1.ChangeEvent";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (the one `tributary run` uses).
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// Subject filter with NATS wildcards, e.g. `retail.v1.order.>` or `cdc.erp.>`.
    #[arg(long)]
    pub subject: String,
    /// Start at this stream sequence (default: only events stored from now on).
    #[arg(long, conflicts_with = "from_time")]
    pub from_seq: Option<u64>,
    /// Start at the events stored at or after this time (RFC 3339).
    #[arg(long, value_parser = crate::replay::parse_time)]
    pub from_time: Option<OffsetDateTime>,
    /// Stop after this many events (default: follow until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Fully qualified protobuf message to decode as (default: by stream, see above).
    #[arg(long)]
    pub message_type: Option<String>,
    /// `table`: a header line and indented JSON per event; `json`: one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// How the payloads of a stream are turned into JSON.
enum Decoder {
    Protobuf(MessageDescriptor),
    Json,
}

impl Decoder {
    fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        match self {
            Decoder::Protobuf(desc) => {
                let message = DynamicMessage::decode(desc.clone(), payload)
                    .map_err(|e| format!("not a {}: {e}", desc.full_name()))?;
                let options = SerializeOptions::new().stringify_64_bit_integers(false);
                message
                    .serialize_with_options(serde_json::value::Serializer, &options)
                    .map_err(|e| format!("as JSON: {e}"))
            }
            Decoder::Json => serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}")),
        }
    }
}

/// `payload` as JSON: a JSON payload as is (the SaaS feeds' envelopes), otherwise decoded as
/// the protobuf message `kind` with the descriptor set compiled into this binary.
pub fn decode_payload(kind: &str, payload: &[u8]) -> Result<Value, String> {
    if let Ok(value) = serde_json::from_slice::<Value>(payload) {
        return Ok(value);
    }
    let pool = DescriptorPool::decode(tributary_proto::DESCRIPTOR_SET)
        .map_err(|e| format!("the compiled descriptor set: {e}"))?;
    let desc = pool
        .get_message_by_name(kind)
        .ok_or_else(|| format!("no message {kind} in the descriptor set"))?;
    Decoder::Protobuf(desc).decode(payload)
}

/// The descriptor set published in the schema bucket; the one compiled into this binary when
/// none is published yet (said on stderr).
async fn descriptors(js: &jetstream::Context, config: &Config) -> anyhow::Result<DescriptorPool> {
    let bucket = config
        .domain
        .as_ref()
        .map(|d| d.schema_bucket.clone())
        .unwrap_or_else(|| "tributary_schemas".into());
    let published = async {
        let store = js.get_object_store(&bucket).await.ok()?;
        let mut object = store.get(tributary_domain::DESCRIPTOR_OBJECT).await.ok()?;
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
            .await
            .ok()?;
        Some(bytes)
    };
    let bytes = match published.await {
        Some(bytes) => bytes,
        None => {
            eprintln!(
                "note: no descriptor set published in object store {bucket}; decoding with this binary's"
            );
            tributary_proto::DESCRIPTOR_SET.to_vec()
        }
    };
    DescriptorPool::decode(bytes.as_slice())
        .with_context(|| format!("the descriptor set in {bucket} does not decode"))
}

/// The message type stored in `stream` by default.
fn stream_type(config: &Config, stream: &str) -> Option<&'static str> {
    if let Some(domain) = &config.domain {
        if domain.stream == stream {
            return Some(DOMAIN_EVENT);
        }
        if domain.dead_letter_stream == stream {
            return Some(CHANGE_EVENT);
        }
    }
    if let Some(sinks) = &config.sinks {
        if sinks.stream == stream || sinks.dead_letter_stream == stream {
            return Some(DOMAIN_EVENT);
        }
    }
    config
        .sources
        .iter()
        .any(|s| config.nats.resolved_stream(s).name == stream)
        .then_some(CHANGE_EVENT)
}

fn decoder(
    pool: &DescriptorPool,
    config: &Config,
    stream: &str,
    requested: Option<&str>,
) -> anyhow::Result<Decoder> {
    let Some(name) = requested.or_else(|| stream_type(config, stream)) else {
        let feed = config.shopify.iter().map(|s| s.stream.as_str());
        let feed = feed.chain(config.salesforce_cdc.iter().map(|s| s.stream.as_str()));
        if feed.clone().any(|s| s == stream) || stream.starts_with("SAAS_") {
            return Ok(Decoder::Json);
        }
        bail!("stream {stream} is not one of the bridge's; give --message-type");
    };
    let desc = pool
        .get_message_by_name(name)
        .with_context(|| format!("the descriptor set has no message {name}"))?;
    Ok(Decoder::Protobuf(desc))
}

/// A change event's payload with its schema reference resolved; other payloads as they are.
async fn with_schema(
    schemas: &SchemaResolver,
    decoder: &Decoder,
    payload: &bytes::Bytes,
) -> Result<bytes::Bytes, String> {
    let is_change = matches!(decoder, Decoder::Protobuf(d) if d.full_name() == CHANGE_EVENT);
    let Some(mut event) = is_change
        .then(|| ChangeEvent::decode(payload.clone()).ok())
        .flatten()
        .filter(|e| !e.schema_id.is_empty() && e.columns.is_empty())
    else {
        return Ok(payload.clone());
    };
    schemas
        .resolve(&mut event)
        .await
        .map_err(|e| e.to_string())?;
    Ok(event.encode_to_vec().into())
}

/// The payloads to print for one message: its events when it is a batch
/// (`...<op>_batch`, a `ChangeEventBatch`), else the payload itself.
fn parts(decoder: &Decoder, msg: &jetstream::Message) -> Vec<Result<bytes::Bytes, String>> {
    let is_change = matches!(decoder, Decoder::Protobuf(d) if d.full_name() == CHANGE_EVENT);
    if !is_change || !is_batch_subject(msg.subject.as_str()) {
        return vec![Ok(msg.payload.clone())];
    }
    match split_batch(&msg.payload) {
        Ok(events) => events.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e.to_string())],
    }
}

/// A message that cannot be taken apart: where it is stored, why, and its payload in base64.
fn undecodable(stream: &str, msg: &jetstream::Message, error: String) -> anyhow::Result<Value> {
    let info = msg
        .info()
        .map_err(|e| anyhow::anyhow!("message without metadata: {e}"))?;
    let raw = base64::engine::general_purpose::STANDARD.encode(&msg.payload);
    Ok(json!({
        "stream": stream,
        "seq": info.stream_sequence,
        "subject": msg.subject.as_str(),
        "time": rfc3339(info.published),
        "error": error,
        "payload_base64": raw,
    }))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// One printed event: where it is stored, its `Tributary-*` headers and the decoded payload
/// (or why it does not decode, with the payload in base64).
fn record(
    stream: &str,
    decoder: &Decoder,
    msg: &jetstream::Message,
    payload: Result<bytes::Bytes, String>,
) -> anyhow::Result<Value> {
    let info = msg
        .info()
        .map_err(|e| anyhow::anyhow!("message without metadata: {e}"))?;
    let mut out = Map::new();
    out.insert("stream".into(), json!(stream));
    out.insert("seq".into(), json!(info.stream_sequence));
    out.insert("subject".into(), json!(msg.subject.as_str()));
    out.insert("time".into(), json!(rfc3339(info.published)));
    let headers: Map<String, Value> = msg
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .filter(|(k, _)| k.to_string().starts_with("Tributary-"))
        .filter_map(|(k, v)| Some((k.to_string(), json!(v.first()?.as_str()))))
        .collect();
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Object(headers));
    }
    let payload = payload.unwrap_or_else(|e| {
        out.insert("schema_error".into(), json!(e));
        msg.payload.clone()
    });
    match decoder.decode(&payload) {
        Ok(event) => out.insert("event".into(), event),
        Err(e) => {
            out.insert("error".into(), json!(e));
            let raw = base64::engine::general_purpose::STANDARD.encode(&msg.payload);
            out.insert("payload_base64".into(), json!(raw))
        }
    };
    Ok(Value::Object(out))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = tributary_config::load(&args.config)?;
    let js = crate::ops::connect_jetstream(&config).await?;
    let stream_name = js
        .stream_by_subject(args.subject.clone())
        .await
        .with_context(|| format!("no stream stores subject {}", args.subject))?;
    let pool = descriptors(&js, &config).await?;
    let decoder = decoder(&pool, &config, &stream_name, args.message_type.as_deref())?;
    let deliver_policy = match (args.from_seq, args.from_time) {
        (Some(start_sequence), _) => DeliverPolicy::ByStartSequence { start_sequence },
        (None, Some(start_time)) => DeliverPolicy::ByStartTime { start_time },
        (None, None) => DeliverPolicy::New,
    };
    let stream = js
        .get_stream(&stream_name)
        .await
        .with_context(|| format!("stream {stream_name}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: args.subject.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .with_context(|| format!("reading {stream_name}"))?;
    let mut messages = consumer
        .messages()
        .await
        .with_context(|| format!("reading {stream_name}"))?;
    let schemas = SchemaResolver::new(js.clone());
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut printed = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        let msg = tokio::select! {
            next = messages.next() => next,
            _ = &mut ctrl_c => break,
        };
        let msg = msg
            .context("the stream read ended")?
            .map_err(|e| anyhow::anyhow!("reading {stream_name}: {e}"))?;
        for (index, part) in parts(&decoder, &msg).into_iter().enumerate() {
            let mut record = match part {
                Ok(payload) => {
                    let payload = with_schema(&schemas, &decoder, &payload).await;
                    record(&stream_name, &decoder, &msg, payload)?
                }
                Err(e) => undecodable(&stream_name, &msg, e)?,
            };
            if is_batch_subject(msg.subject.as_str()) {
                record["batch_index"] = json!(index);
            }
            match args.format {
                Format::Json => println!("{}", serde_json::to_string(&record)?),
                Format::Table => println!(
                    "#{} {} {}\n{}",
                    record["seq"],
                    msg.subject,
                    record["time"].as_str().unwrap_or_default(),
                    serde_json::to_string_pretty(record.get("event").unwrap_or(&record))?
                ),
            }
            printed += 1;
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
        }
    }
    Ok(())
}

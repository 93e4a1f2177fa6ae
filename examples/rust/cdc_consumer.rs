//! Example: a Rust consumer of Tributary's row-change events (`tributary.cdc.v1.ChangeEvent`).
//!
//! Reads a source's stream (e.g. `CDC_ERP`) from the start with a durable pull consumer and
//! prints each change as one line: subject, operation, schema id and the row by column name.
//! Events of a source with `schema = "reference"` carry `schema_id` instead of their columns:
//! the description is read once per id from the KV bucket `tributary_cdc_schemas` (key = id,
//! value = `tributary.cdc.v1.RelationSchema`) and cached; an id never changes meaning, so the
//! cache needs no invalidation, and the bridge stores a schema before any event naming it.
//!
//! ```sh
//! cargo run -p tributary --example cdc_consumer -- nats://127.0.0.1:4222 CDC_ERP my-service 10
//! ```
//! Arguments: server URL, stream, durable consumer name, number of events (0 = forever; a
//! batch of snapshot reads is printed whole, so it may print a few more).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, kv};
use futures::StreamExt;
use tributary_proto::batch::is_batch_subject;
use tributary_proto::cdc::v1::{
    value::Kind, ChangeEvent, ChangeEventBatch, Column, RelationSchema, Value,
};
use tributary_proto::Message as _;

/// Column descriptions by schema id, fetched from the bucket on first sight.
struct Schemas {
    js: jetstream::Context,
    bucket: Option<kv::Store>,
    by_id: HashMap<String, RelationSchema>,
}

impl Schemas {
    /// The event's columns and key columns: inline, or from the schema its id names.
    async fn columns(&mut self, event: &ChangeEvent) -> anyhow::Result<(Vec<Column>, Vec<String>)> {
        if event.schema_id.is_empty() {
            return Ok((event.columns.clone(), event.key_columns.clone()));
        }
        if !self.by_id.contains_key(&event.schema_id) {
            if self.bucket.is_none() {
                self.bucket = Some(self.js.get_key_value("tributary_cdc_schemas").await?);
            }
            let bucket = self.bucket.as_ref().context("schema bucket")?;
            let bytes = bucket
                .get(&event.schema_id)
                .await?
                .with_context(|| format!("schema {} not stored", event.schema_id))?;
            let schema = RelationSchema::decode(bytes)?;
            self.by_id.insert(event.schema_id.clone(), schema);
        }
        let schema = &self.by_id[&event.schema_id];
        Ok((schema.columns.clone(), schema.key_columns.clone()))
    }
}

fn show(value: &Value) -> String {
    match &value.kind {
        None | Some(Kind::Null(_)) => "NULL".into(),
        Some(Kind::Unchanged(_)) => "(unchanged)".into(),
        Some(Kind::Int(i)) => i.to_string(),
        Some(Kind::Bool(b)) => b.to_string(),
        Some(Kind::Decimal(s) | Kind::Text(s) | Kind::Uuid(s) | Kind::Json(s) | Kind::Enum(s)) => {
            s.clone()
        }
        Some(Kind::Float(f)) => f.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let stream_name = args.next().unwrap_or_else(|| "CDC_ERP".into());
    let durable = args.next().unwrap_or_else(|| "rust-cdc-example".into());
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(0);

    let js = jetstream::new(async_nats::connect(&server).await?);
    let stream = js
        .get_stream(&stream_name)
        .await
        .with_context(|| format!("stream {stream_name}"))?;
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let mut schemas = Schemas {
        js: js.clone(),
        bucket: None,
        by_id: HashMap::new(),
    };
    let mut messages = consumer.messages().await?;
    let mut seen = 0;
    while count == 0 || seen < count {
        let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("no event within 30 s")?
            .context("subscription ended")??;
        // A source with `snapshot_rows_per_message` or `changes_per_message` above 1 publishes
        // batches (`ChangeEventBatch` on `...<op>_batch`): one message, several events.
        let events = if is_batch_subject(msg.subject.as_str()) {
            ChangeEventBatch::decode(msg.payload.clone())?.events
        } else {
            vec![ChangeEvent::decode(msg.payload.clone())?]
        };
        for event in &events {
            let (columns, keys) = schemas.columns(event).await?;
            let row = event.after.as_ref().or(event.before.as_ref());
            let values = row.map(|r| r.values.as_slice()).unwrap_or_default();
            let fields: Vec<String> = columns
                .iter()
                .zip(values)
                .map(|(c, v)| format!("{}={}", c.name, show(v)))
                .collect();
            let schema = match event.schema_id.as_str() {
                "" => "inline",
                id => id,
            };
            println!(
                "{} op={} schema={schema} key=[{}] {}",
                msg.subject,
                event.op().as_str_name(),
                keys.join(","),
                fields.join(" ")
            );
        }
        // Ack after handling: a crash before this line redelivers the change (dedupe by
        // event_id if handling is not idempotent).
        msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        seen += events.len();
    }
    Ok(())
}

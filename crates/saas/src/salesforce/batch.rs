//! One FetchResponse's events: schema (cached by id), Avro decoding, echo suppression,
//! publishing with `Nats-Msg-Id`, gap read-backs; every ack awaited before the caller stores
//! the batch's replay id.
//!
//! Each message's ack is awaited before the next is published. Pipelining would be faster, but
//! a message lost while a later one is stored (a reconnect between them: async-nats resends
//! what it buffered) would be stored after it on the retry, out of replay order. One round trip
//! per change is far above what an org's change feed delivers (100 events per Salesforce round
//! trip).

use std::sync::Arc;

use tracing::warn;
use tributary_sfpubsub::apache_avro::Schema;
use tributary_sfpubsub::pb::{ConsumerEvent, SchemaRequest};
use tributary_sfpubsub::{schema, OVERFLOW_RECORD_ID};

use super::auth::Session;
use super::envelope::{self, Raw};
use super::position::Position;
use super::subscriber::{End, TopicStream};
use crate::metrics as m;
use crate::time::format_rfc3339_millis;
use crate::SaasError;

impl TopicStream {
    pub(super) async fn schema(
        &self,
        session: &Arc<Session>,
        id: &str,
    ) -> Result<Arc<Schema>, End> {
        if let Some(s) = self.feed.schemas.lock().await.get(id) {
            return Ok(s.clone());
        }
        let req = self.request(
            session,
            SchemaRequest {
                schema_id: id.to_string(),
            },
        );
        let info = self
            .client()
            .get_schema(req)
            .await
            .map_err(|s| self.classify("GetSchema", &s, session, false))?
            .into_inner();
        let parsed = schema::parse_schema(&info.schema_json)
            .map_err(|e| End::Fatal(SaasError::http(format!("schema {id}"), e)))?;
        let parsed = Arc::new(parsed);
        self.feed
            .schemas
            .lock()
            .await
            .insert(id.to_string(), parsed.clone());
        Ok(parsed)
    }

    /// Decodes and publishes one batch, awaiting every ack; returns the last commit time.
    pub(super) async fn process(
        &self,
        session: &Arc<Session>,
        events: Vec<ConsumerEvent>,
        clock: &mut Position,
    ) -> Result<Option<i64>, End> {
        let feed = self.name();
        let mut last_commit = None;
        metrics::counter!(m::SAAS_RECEIVED, "feed" => feed.clone()).increment(events.len() as u64);
        for ce in events {
            let Some(ev) = ce.event else {
                metrics::counter!(m::SAAS_REJECTED, "feed" => feed.clone(), "reason" => "no_event")
                    .increment(1);
                warn!(replay_id = %envelope::hex(&ce.replay_id), "consumer event without an event");
                continue;
            };
            let sch = self.schema(session, &ev.schema_id).await?;
            let decoded = match schema::decode(&sch, &ev.payload) {
                Ok(d) => d,
                Err(e) => {
                    // Stored anyway (Avro as base64) so nothing disappears without a trace.
                    metrics::counter!(m::SAAS_REJECTED, "feed" => feed.clone(), "reason" => "decode").increment(1);
                    warn!(error = %e, event = %ev.id, "undecodable change event stored raw");
                    use base64::Engine;
                    let raw = Raw {
                        event_id: format!("{feed}:{}", ev.id),
                        feed: &feed,
                        tenant: &session.tenant_id,
                        entity: "unknown",
                        change_type: "UNDECODED",
                        read_back: false,
                        commit_micros: clock.tick(None),
                        origin: String::new(),
                        payload: serde_json::json!({"replayId": envelope::hex(&ce.replay_id), "topic": self.topic,
                            "schemaId": ev.schema_id, "avroBase64": base64::engine::general_purpose::STANDARD.encode(&ev.payload),
                            "error": e.to_string()}),
                    };
                    self.publish(&raw).await?;
                    continue;
                }
            };
            let entity = decoded.header_str("entityName").to_string();
            let change_type = decoded.header_str("changeType").to_string();
            let origin = decoded.header_str("changeOrigin").to_string();
            let commit_ms = decoded
                .header
                .get("commitTimestamp")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            last_commit = Some(commit_ms);
            let record_ids = decoded.record_ids();
            if let Some(cw) = &self.feed.crosswalk {
                cw.learn(&entity, &record_ids, &decoded.fields).await?;
            }
            if envelope::is_echo(&origin, self.feed.cfg.echo_client_id.as_deref()) {
                metrics::counter!(m::SAAS_ECHOES, "feed" => feed.clone()).increment(1);
                continue;
            }
            let raw = Raw {
                event_id: format!("{feed}:{}", ev.id),
                feed: &feed,
                tenant: &session.tenant_id,
                entity: &entity,
                change_type: &change_type,
                read_back: false,
                commit_micros: clock.tick(Some(commit_ms)),
                origin: origin.clone(),
                payload: self
                    .with_external_ids(
                        &entity,
                        &record_ids,
                        &decoded.fields,
                        envelope::body(
                            &ce.replay_id,
                            &self.topic,
                            &ev.schema_id,
                            &decoded.header,
                            &decoded.fields,
                        ),
                    )
                    .await?,
            };
            self.publish(&raw).await?;
            let read_back: Vec<String> = if change_type == "GAP_OVERFLOW" {
                metrics::counter!(m::SAAS_OVERFLOWS, "feed" => feed.clone()).increment(1);
                // The records are not named: those of the entity modified up to the commit.
                let lookback_ms = self.feed.cfg.overflow_lookback_secs as i64 * 1000;
                let from = format_rfc3339_millis((commit_ms - lookback_ms) * 1000);
                let to = format_rfc3339_millis((commit_ms + 1000) * 1000);
                let ids =
                    super::readback::modified_ids(&self.feed, session, &entity, &from, &to).await?;
                warn!(%entity, records = ids.len(), %from, %to, "GAP_OVERFLOW: more than 100,000 changes in one transaction; re-reading the entity's records modified in the window");
                ids
            } else if change_type.starts_with("GAP_") {
                decoded
                    .record_ids()
                    .into_iter()
                    .filter(|id| id != OVERFLOW_RECORD_ID && !id.contains('*'))
                    .collect()
            } else {
                Vec::new()
            };
            {
                for id in &read_back {
                    let record = super::readback::read(&self.feed, session, &entity, id).await?;
                    metrics::counter!(m::SAAS_READBACKS, "feed" => feed.clone()).increment(1);
                    let mut header = decoded.header.clone();
                    header.insert("recordIds".into(), serde_json::json!([id]));
                    let fields = record.unwrap_or_default();
                    let ids = [id.clone()];
                    if let Some(cw) = &self.feed.crosswalk {
                        cw.learn(&entity, &ids, &fields).await?;
                    }
                    let raw = Raw {
                        event_id: format!("{feed}:{}:{id}", ev.id),
                        feed: &feed,
                        tenant: &session.tenant_id,
                        entity: &entity,
                        change_type: if fields.is_empty() {
                            "GAP_DELETE"
                        } else {
                            &change_type
                        },
                        read_back: !fields.is_empty(),
                        commit_micros: clock.tick(Some(commit_ms)),
                        origin: "readback".into(),
                        payload: self
                            .with_external_ids(
                                &entity,
                                &ids,
                                &fields,
                                envelope::body(
                                    &ce.replay_id,
                                    &self.topic,
                                    &ev.schema_id,
                                    &header,
                                    &fields,
                                ),
                            )
                            .await?,
                    };
                    self.publish(&raw).await?;
                }
            }
        }
        if let Some(ms) = last_commit {
            let lag = (crate::time::now_micros() / 1000 - ms).max(0) as f64 / 1000.0;
            metrics::gauge!(m::SAAS_LAG, "feed" => feed).set(lag);
        }
        Ok(last_commit)
    }

    /// The raw body with `externalIds` (record id → entity key) for the records the
    /// crosswalk knows; unchanged without a crosswalk.
    async fn with_external_ids(
        &self,
        entity: &str,
        ids: &[String],
        fields: &serde_json::Map<String, serde_json::Value>,
        mut body: serde_json::Value,
    ) -> Result<serde_json::Value, End> {
        if let Some(cw) = &self.feed.crosswalk {
            let known = cw.external_ids(entity, ids, fields).await?;
            if let (false, Some(obj)) = (known.is_empty(), body.as_object_mut()) {
                obj.insert("externalIds".into(), serde_json::Value::Object(known));
            }
        }
        Ok(body)
    }

    /// Publishes one raw event and awaits its ack.
    pub(super) async fn publish(&self, raw: &Raw<'_>) -> Result<(), End> {
        use prost::Message as _;
        let change = envelope::change_event(raw);
        let subject = if raw.read_back {
            envelope::subject(raw.feed, raw.entity, "readback")
        } else {
            envelope::subject(raw.feed, raw.entity, raw.change_type)
        };
        let mut headers = async_nats::header::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, raw.event_id.as_str());
        let failed = |e: crate::error::BoxError| {
            End::Transient(SaasError::nats(format!("publish to {subject}"), e))
        };
        self.fence
            .check()
            .map_err(|e| End::Transient(SaasError::Fenced(e)))?;
        let ack = self
            .feed
            .js
            .publish_with_headers(subject.clone(), headers, change.encode_to_vec().into())
            .await
            .map_err(|e| failed(e.into()))?
            .await
            .map_err(|e| failed(e.into()))?;
        let feed = raw.feed.to_string();
        if ack.duplicate {
            metrics::counter!(m::SAAS_DEDUPLICATED, "feed" => feed).increment(1);
        } else {
            metrics::counter!(m::SAAS_PUBLISHED, "feed" => feed).increment(1);
        }
        Ok(())
    }
}

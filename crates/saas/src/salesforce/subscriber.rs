//! One Subscribe stream per topic, supervised.
//!
//! ```text
//!  KV position ──CUSTOM replay id──► Subscribe ──FetchResponse(≤ batch_size events)──► decode (schema cache)
//!       ▲                               ▲  │                                     │ echo: dropped
//!       │                               │  └─ keepalive: store latest_replay_id  ▼
//!       │                 FetchRequest(n consumed)      publish, Nats-Msg-Id = <feed>:<event uuid>
//!       │                                                 (gap: + REST read-back as READ)
//!       └──────── store the batch's last replay id ◄── every JetStream ack of the batch
//! ```
//!
//! Progress tracking: the replay id is stored only after JetStream acknowledged every message
//! of its batch, so a crash resumes after a stored batch and the redelivered tail is dropped by
//! `Nats-Msg-Id` (the stream's duplicate window covers Salesforce's 72 h retention).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{info, warn, Instrument};
use tributary_config::{ReplayIdExpired, SalesforceCdcConfig, SalesforceStart};
use tributary_sfpubsub::apache_avro::Schema;
use tributary_sfpubsub::pb::pub_sub_client::PubSubClient;
use tributary_sfpubsub::pb::{ConsumerEvent, FetchRequest, ReplayPreset, SchemaRequest};
use tributary_sfpubsub::{schema, ERROR_CODE_TRAILER, OVERFLOW_RECORD_ID};

use super::auth::{Auth, Session};
use super::envelope::{self, Raw};
use super::position::Position;
use crate::metrics as m;
use crate::SaasError;

/// One `[[salesforce_cdc]]` org, shared by its topic streams.
pub(crate) struct Feed {
    pub cfg: SalesforceCdcConfig,
    pub auth: Auth,
    pub channel: Channel,
    pub js: jetstream::Context,
    pub kv: kv::Store,
    pub schemas: tokio::sync::Mutex<HashMap<String, Arc<Schema>>>,
}

/// How a Subscribe stream ended.
enum End {
    Stopped,
    Unauthenticated(Arc<Session>),
    ReplayExpired,
    Transient(SaasError),
    Fatal(SaasError),
}

impl From<SaasError> for End {
    fn from(e: SaasError) -> Self {
        End::Transient(e)
    }
}

fn grpc(what: &str, s: &Status) -> SaasError {
    SaasError::Grpc {
        what: what.to_string(),
        code: format!("{:?}", s.code()),
        message: s.message().to_string(),
    }
}

fn error_code(s: &Status) -> String {
    s.metadata()
        .get(ERROR_CODE_TRAILER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub(crate) struct TopicStream {
    pub feed: Arc<Feed>,
    pub topic: String,
    /// Set after an expired replay id with `earliest`/`latest`, until a position is stored.
    preset_override: Option<ReplayPreset>,
    /// A position was stored since the last restart (the backoff starts over).
    progressed: bool,
}

impl TopicStream {
    pub fn new(feed: Arc<Feed>, topic: String) -> Self {
        TopicStream {
            feed,
            topic,
            preset_override: None,
            progressed: false,
        }
    }

    fn name(&self) -> String {
        self.feed.cfg.name.clone()
    }

    fn kv_key(&self) -> String {
        format!(
            "salesforce.{}.{}",
            tributary_nats::kv::key_token(&self.feed.cfg.name),
            tributary_nats::kv::key_token(&self.topic)
        )
    }

    /// Restarts the stream on transient errors (backoff), at once after a token refresh;
    /// returns Err only for what an operator must fix.
    pub async fn supervise(mut self, stop: CancellationToken) -> Result<(), SaasError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            self.progressed = false;
            let end = self.stream(&stop).await;
            if self.progressed {
                backoff = Duration::from_millis(250);
            }
            let (reason, wait) = match end {
                End::Stopped => return Ok(()),
                End::Fatal(e) => return Err(e),
                End::Unauthenticated(stale) => match self.feed.auth.refresh(&stale).await {
                    Ok(_) => ("unauthenticated", Duration::ZERO),
                    Err(e) => {
                        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "token refresh failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        ("unauthenticated", wait)
                    }
                },
                End::ReplayExpired => {
                    metrics::counter!(m::SAAS_REPLAY_EXPIRED, "feed" => self.name()).increment(1);
                    let preset = match self.feed.cfg.on_replay_id_expired {
                        ReplayIdExpired::Fail => {
                            return Err(SaasError::ReplayIdExpired {
                                feed: self.name(),
                                topic: self.topic.clone(),
                            })
                        }
                        ReplayIdExpired::Earliest => ReplayPreset::Earliest,
                        ReplayIdExpired::Latest => ReplayPreset::Latest,
                    };
                    warn!(?preset, "stored replay id past retention: resubscribing as on_replay_id_expired says");
                    self.preset_override = Some(preset);
                    ("replay_id_expired", Duration::ZERO)
                }
                End::Transient(e) => {
                    warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Subscribe stream failed; resubscribing from the stored replay id");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    ("error", wait)
                }
            };
            metrics::counter!(m::SAAS_RESTARTS, "feed" => self.name(), "reason" => reason)
                .increment(1);
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn request<T>(&self, session: &Session, body: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(body);
        let md = req.metadata_mut();
        for (k, v) in [
            ("accesstoken", &session.access_token),
            ("instanceurl", &session.instance_url),
            ("tenantid", &session.tenant_id),
        ] {
            if let Ok(v) = v.parse() {
                md.insert(k, v);
            }
        }
        req
    }

    fn client(&self) -> PubSubClient<Channel> {
        PubSubClient::new(self.feed.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// What ended a call: UNAUTHENTICATED, an expired CUSTOM replay id, or anything else.
    fn classify(&self, what: &str, s: &Status, session: &Arc<Session>, custom: bool) -> End {
        let code = error_code(s);
        match s.code() {
            Code::Unauthenticated => End::Unauthenticated(session.clone()),
            Code::InvalidArgument
                if custom && (code.contains("replayid") || s.message().contains("replayid")) =>
            {
                End::ReplayExpired
            }
            Code::NotFound | Code::PermissionDenied => End::Fatal(grpc(what, s)),
            _ => End::Transient(grpc(what, s)),
        }
    }

    async fn stream(&mut self, stop: &CancellationToken) -> End {
        let session = match self.feed.auth.session().await {
            Ok(s) => s,
            Err(e) => return End::Transient(e),
        };
        let stored = match self.feed.kv.get(self.kv_key()).await {
            Ok(v) => v.filter(|b| !b.is_empty()),
            Err(e) => return End::Transient(SaasError::nats("KV position", e)),
        };
        let stored = match stored.map(|b| Position::decode(&b)) {
            Some(Some(p)) => Some(p),
            Some(None) => {
                return End::Fatal(SaasError::config(
                    format!("KV {} key {}", crate::shopify::STATE_BUCKET, self.kv_key()),
                    "the stored position is not readable; delete the key to start from initial_position",
                ))
            }
            None => None,
        };
        // The feed clock goes on from the stored one, also when the replay id is abandoned.
        let mut position = stored.clone().unwrap_or_default();
        let (preset, replay_id) = match (self.preset_override, stored) {
            (Some(p), _) => (p, Vec::new()),
            (None, Some(p)) => (ReplayPreset::Custom, p.replay_id),
            (None, None) => match self.feed.cfg.initial_position {
                SalesforceStart::Latest => (ReplayPreset::Latest, Vec::new()),
                SalesforceStart::Earliest => (ReplayPreset::Earliest, Vec::new()),
            },
        };
        let custom = preset == ReplayPreset::Custom;
        let batch = self.feed.cfg.batch_size.clamp(1, 100) as i32;
        let span = tracing::info_span!("salesforce_cdc", feed = %self.feed.cfg.name, topic = %self.topic, position = tracing::field::Empty);
        async move {
            info!(?preset, replay_id = %envelope::hex(&replay_id), "subscribing");
            let (tx, rx) = mpsc::channel::<FetchRequest>(8);
            let first = FetchRequest {
                topic_name: self.topic.clone(),
                replay_preset: preset as i32,
                replay_id,
                num_requested: batch,
                auth_refresh: String::new(),
            };
            if tx.send(first).await.is_err() {
                return End::Transient(SaasError::http("subscribe", "request channel closed"));
            }
            let outbound =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
                );
            let request = self.request(&session, outbound);
            let mut inbound = match self.client().subscribe(request).await {
                Ok(r) => r.into_inner(),
                Err(s) => return self.classify("Subscribe", &s, &session, custom),
            };
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return End::Stopped,
                    m = inbound.message() => m,
                };
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return End::Transient(SaasError::http(
                            "Subscribe",
                            "stream ended by the server",
                        ))
                    }
                    Err(s) => return self.classify("Subscribe", &s, &session, custom),
                };
                if resp.events.is_empty() {
                    // Keepalive: nothing of this topic up to latest_replay_id remains unread.
                    let latest = resp.latest_replay_id;
                    if !latest.is_empty() && position.replay_id != latest {
                        position.replay_id = latest;
                        if let Err(e) = self.store(&position, None).await {
                            return End::Transient(e);
                        }
                        self.progressed = true;
                    }
                    continue;
                }
                let n = resp.events.len() as i32;
                let Some(last) = resp.events.last().map(|e| e.replay_id.clone()) else {
                    continue;
                };
                let mut next = position.clone();
                let commit_ms = match self.process(&session, resp.events, &mut next).await {
                    Ok(ms) => ms,
                    Err(end) => return end,
                };
                next.replay_id = last;
                if let Err(e) = self.store(&next, commit_ms).await {
                    return End::Transient(e);
                }
                position = next;
                self.progressed = true;
                self.preset_override = None;
                // Flow control: ask for as many as were consumed.
                let more = FetchRequest {
                    topic_name: self.topic.clone(),
                    num_requested: n,
                    ..Default::default()
                };
                if tx.send(more).await.is_err() {
                    return End::Transient(SaasError::http("Subscribe", "request channel closed"));
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The replay id after the JetStream acks of everything before it.
    async fn store(&self, position: &Position, commit_ms: Option<i64>) -> Result<(), SaasError> {
        self.feed
            .kv
            .put(self.kv_key(), position.encode().into())
            .await
            .map_err(|e| SaasError::nats("KV position", e))?;
        tracing::Span::current().record("position", envelope::hex(&position.replay_id));
        if let Some(ms) = commit_ms {
            metrics::gauge!(m::SAAS_POSITION, "feed" => self.name()).set(ms as f64 / 1000.0);
        }
        Ok(())
    }

    async fn schema(&self, session: &Arc<Session>, id: &str) -> Result<Arc<Schema>, End> {
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
    async fn process(
        &self,
        session: &Arc<Session>,
        events: Vec<ConsumerEvent>,
        clock: &mut Position,
    ) -> Result<Option<i64>, End> {
        let feed = self.name();
        let mut acks = Vec::with_capacity(events.len());
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
                    acks.push(self.publish(&raw).await?);
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
                payload: envelope::body(
                    &ce.replay_id,
                    &self.topic,
                    &ev.schema_id,
                    &decoded.header,
                    &decoded.fields,
                ),
            };
            acks.push(self.publish(&raw).await?);
            if change_type == "GAP_OVERFLOW" {
                metrics::counter!(m::SAAS_OVERFLOWS, "feed" => feed.clone()).increment(1);
                warn!(%entity, "GAP_OVERFLOW: more than 100,000 changes in one transaction; the records are not re-read");
            } else if change_type.starts_with("GAP_") {
                for id in decoded
                    .record_ids()
                    .iter()
                    .filter(|id| *id != OVERFLOW_RECORD_ID && !id.contains('*'))
                {
                    let record = super::readback::read(&self.feed, session, &entity, id).await?;
                    metrics::counter!(m::SAAS_READBACKS, "feed" => feed.clone()).increment(1);
                    let mut header = decoded.header.clone();
                    header.insert("recordIds".into(), serde_json::json!([id]));
                    let fields = record.unwrap_or_default();
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
                        payload: envelope::body(
                            &ce.replay_id,
                            &self.topic,
                            &ev.schema_id,
                            &header,
                            &fields,
                        ),
                    };
                    acks.push(self.publish(&raw).await?);
                }
            }
        }
        for ack in acks {
            let ack = ack
                .await
                .map_err(|e| End::Transient(SaasError::nats("publish ack", e)))?;
            if ack.duplicate {
                metrics::counter!(m::SAAS_DEDUPLICATED, "feed" => feed.clone()).increment(1);
            } else {
                metrics::counter!(m::SAAS_PUBLISHED, "feed" => feed.clone()).increment(1);
            }
        }
        if let Some(ms) = last_commit {
            let lag = (crate::time::now_micros() / 1000 - ms).max(0) as f64 / 1000.0;
            metrics::gauge!(m::SAAS_LAG, "feed" => feed).set(lag);
        }
        Ok(last_commit)
    }

    async fn publish(&self, raw: &Raw<'_>) -> Result<jetstream::context::PublishAckFuture, End> {
        use prost::Message as _;
        let change = envelope::change_event(raw);
        let subject = if raw.read_back {
            envelope::subject(raw.feed, raw.entity, "readback")
        } else {
            envelope::subject(raw.feed, raw.entity, raw.change_type)
        };
        let mut headers = async_nats::header::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, raw.event_id.as_str());
        self.feed
            .js
            .publish_with_headers(subject.clone(), headers, change.encode_to_vec().into())
            .await
            .map_err(|e| End::Transient(SaasError::nats(format!("publish to {subject}"), e)))
    }
}

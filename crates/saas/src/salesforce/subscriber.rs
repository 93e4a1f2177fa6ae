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
use tributary_core::RetryPolicy;
use tributary_sfpubsub::apache_avro::Schema;
use tributary_sfpubsub::pb::pub_sub_client::PubSubClient;
use tributary_sfpubsub::pb::{FetchRequest, ReplayPreset};
use tributary_sfpubsub::ERROR_CODE_TRAILER;

use super::auth::{Auth, Session};
use super::envelope;
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
    /// Record ids → entity keys, with `external_id_field` set.
    pub crosswalk: Option<super::crosswalk::Crosswalk>,
}

/// How a Subscribe stream ended.
pub(super) enum End {
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

pub(super) fn grpc(what: &str, s: &Status) -> SaasError {
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

/// Resubscribing after a failed Subscribe stream or token refresh.
const RESUBSCRIBE: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(30),
    multiplier: 2,
    // Reset by progress (a stored position), not by time.
    healthy_after: Duration::MAX,
};

pub(crate) struct TopicStream {
    pub feed: Arc<Feed>,
    pub topic: String,
    /// Set after an expired replay id with `earliest`/`latest`, until a position is stored.
    preset_override: Option<ReplayPreset>,
    /// A position was stored since the last restart (the backoff starts over).
    progressed: bool,
    /// Under `[ha]`, the lease of this topic's unit: checked before every publish and
    /// position write.
    pub fence: tributary_core::Fence,
}

/// One subscribed topic as a component (under `[ha]` a unit: one replica reads the topic
/// and writes its replay position).
pub(crate) struct TopicUnit {
    pub feed: Arc<Feed>,
    pub topic: String,
    pub fence: tributary_core::FenceCell,
}

impl tributary_core::Component for TopicUnit {
    fn name(&self) -> String {
        format!("salesforce_cdc {} {}", self.feed.cfg.name, self.topic)
    }

    fn run<'a>(
        &'a self,
        stop: &'a CancellationToken,
    ) -> tributary_core::BoxFuture<'a, Result<(), tributary_core::Failure>> {
        Box::pin(async move {
            let mut stream = TopicStream::new(self.feed.clone(), self.topic.clone());
            stream.fence = self.fence.get();
            Ok(stream.supervise(stop.clone()).await?)
        })
    }

    fn set_fence(&self, fence: tributary_core::Fence) -> bool {
        self.fence.set(fence);
        true
    }
}

impl TopicStream {
    pub fn new(feed: Arc<Feed>, topic: String) -> Self {
        TopicStream {
            feed,
            topic,
            preset_override: None,
            progressed: false,
            fence: tributary_core::Fence::always(),
        }
    }

    pub(super) fn name(&self) -> String {
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
    /// returns Err only for what an operator must fix. Not [`tributary_core::supervise`]:
    /// a stream ends for reasons that are not errors (an expired token, an expired replay
    /// id with a preset), which restart it at once; its backoff starts over once a position
    /// was stored rather than after a healthy period.
    pub async fn supervise(mut self, stop: CancellationToken) -> Result<(), SaasError> {
        let mut backoff = RESUBSCRIBE.backoff();
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            self.progressed = false;
            let end = self.stream(&stop).await;
            if self.progressed {
                backoff.reset();
            }
            let (reason, wait) = match end {
                End::Stopped => return Ok(()),
                End::Fatal(e) => return Err(e),
                End::Unauthenticated(stale) => match self.feed.auth.refresh(&stale).await {
                    Ok(_) => ("unauthenticated", Duration::ZERO),
                    Err(e) => {
                        let wait = backoff.after_failure(Duration::ZERO, None);
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "token refresh failed");
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
                    let wait = backoff.after_failure(Duration::ZERO, None);
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "Subscribe stream failed; resubscribing from the stored replay id");
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

    pub(super) fn request<T>(&self, session: &Session, body: T) -> tonic::Request<T> {
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

    pub(super) fn client(&self) -> PubSubClient<Channel> {
        PubSubClient::new(self.feed.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// What ended a call: UNAUTHENTICATED, an expired CUSTOM replay id, or anything else.
    pub(super) fn classify(
        &self,
        what: &str,
        s: &Status,
        session: &Arc<Session>,
        custom: bool,
    ) -> End {
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
        self.fence.check()?;
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
}

//! Pub/Sub API emulator: a tonic gRPC server (`eventbus.v1.PubSub`) over the CDC log of a
//! [`Salesforce`] emulator, sharing its tokens and records.
//!
//! ```text
//!  client ─Subscribe(FetchRequest…)─► auth metadata (accesstoken of the REST emulator, instanceurl, tenantid)
//!                                    │ first request: topic, replay preset, replay id
//!                                    ▼
//!                 session: owed = Σ num_requested (≤ 100) ─► FetchResponse(events ≤ owed)
//!                          idle ─► keepalive FetchResponse(latest_replay_id)
//!                          token expired ─► UNAUTHENTICATED; reset ─► UNAVAILABLE
//! ```

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};
use tributary_sfpubsub::pb::pub_sub_server::{PubSub, PubSubServer};
use tributary_sfpubsub::pb::{
    ConsumerEvent, FetchRequest, FetchResponse, ProducerEvent, PublishRequest, PublishResponse,
    ReplayPreset, SchemaInfo, SchemaRequest, TopicInfo, TopicRequest,
};
use tributary_sfpubsub::{ERROR_CODE_TRAILER, MAX_OUTSTANDING, REPLAY_ID_CORRUPTED};

use super::{lock, Salesforce};
use crate::error::{Result, SandboxError};

/// The emulated org's id (also the prefix of its access tokens).
pub const TENANT_ID: &str = "00D000000000001AAA";
/// Salesforce sends a keepalive within 270 s of idleness.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(270);

/// A running Pub/Sub emulator; stopped on drop.
pub struct RunningPubSub {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningPubSub {
    /// `http://127.0.0.1:<port>`: the endpoint a client connects to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningPubSub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[derive(Clone)]
struct Service {
    sf: Salesforce,
    keepalive: Arc<Mutex<Duration>>,
}

/// Serves the Pub/Sub API for `sf` on `bind` (port 0: a free one). `keepalive`: how long an idle
/// stream waits before an empty FetchResponse (tests use well under Salesforce's 270 s).
pub async fn start(sf: Salesforce, bind: SocketAddr, keepalive: Duration) -> Result<RunningPubSub> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(SandboxError::Bind)?;
    let addr = listener.local_addr().map_err(SandboxError::Bind)?;
    let svc = Service {
        sf,
        keepalive: Arc::new(Mutex::new(keepalive)),
    };
    let (tx, rx) = oneshot::channel();
    let incoming = tokio_stream_of(listener);
    let task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(PubSubServer::new(svc))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "Pub/Sub emulator stopped");
        }
    });
    Ok(RunningPubSub {
        addr,
        stop: Some(tx),
        task,
    })
}

/// Accepted connections as the stream tonic serves.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| s);
        Some((next, l))
    })
}

fn status_with_code(code: Code, message: &str, error_code: &str) -> Status {
    let mut md = MetadataMap::new();
    if let Ok(v) = MetadataValue::try_from(error_code) {
        md.insert(ERROR_CODE_TRAILER, v);
    }
    Status::with_metadata(code, format!("{message} ({error_code})"), md)
}

/// The object a topic names; `None` for `/data/ChangeEvents` (all of them).
fn topic_object(sf: &Salesforce, topic: &str) -> std::result::Result<Option<String>, Status> {
    if topic == "/data/ChangeEvents" {
        return Ok(None);
    }
    let object = topic
        .strip_prefix("/data/")
        .and_then(|t| t.strip_suffix("ChangeEvent"))
        .map(|o| {
            o.strip_suffix("__")
                .map(|c| format!("{c}__c"))
                .unwrap_or(o.to_string())
        });
    match object {
        Some(o) if sf.with_state(|s| s.cdc.schemas.contains_key(&o)) => Ok(Some(o)),
        _ => Err(status_with_code(
            Code::NotFound,
            &format!("topic {topic} does not exist or is not selected for Change Data Capture"),
            "sfdc.platform.eventbus.grpc.service.topic.not.found",
        )),
    }
}

impl Service {
    /// The three auth headers; the token must be a live token of the REST emulator.
    fn auth(&self, md: &MetadataMap) -> std::result::Result<String, Status> {
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let (token, instance, tenant) = (get("accesstoken"), get("instanceurl"), get("tenantid"));
        if token.is_empty() || instance.is_empty() || tenant.is_empty() {
            return Err(status_with_code(
                Code::Unauthenticated,
                "accesstoken, instanceurl and tenantid are required",
                "sfdc.platform.eventbus.grpc.service.auth.error",
            ));
        }
        if !self.token_live(token) {
            return Err(unauthenticated());
        }
        Ok(token.to_string())
    }

    fn token_live(&self, token: &str) -> bool {
        self.sf
            .with_state(|s| s.tokens.get(token).is_some_and(|exp| *exp > Instant::now()))
    }
}

fn unauthenticated() -> Status {
    status_with_code(
        Code::Unauthenticated,
        "the access token is invalid or expired",
        "sfdc.platform.eventbus.grpc.service.auth.error",
    )
}

type FetchStream = Pin<Box<dyn Stream<Item = std::result::Result<FetchResponse, Status>> + Send>>;
type PublishStream =
    Pin<Box<dyn Stream<Item = std::result::Result<PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PubSub for Service {
    type SubscribeStream = FetchStream;
    type PublishStreamStream = PublishStream;

    async fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> std::result::Result<Response<FetchStream>, Status> {
        let token = self.auth(request.metadata())?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let session = Session {
            svc: self.clone(),
            token,
            tx,
        };
        tokio::spawn(session.run(inbound));
        let out = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> std::result::Result<Response<SchemaInfo>, Status> {
        self.auth(request.metadata())?;
        let id = request.into_inner().schema_id;
        let json = self.sf.with_state(|s| {
            s.cdc
                .schemas
                .values()
                .find(|sc| sc.id == id)
                .map(|sc| sc.json.clone())
        });
        match json {
            Some(schema_json) => Ok(Response::new(SchemaInfo {
                schema_json,
                schema_id: id,
                rpc_id: rpc_id(),
            })),
            None => Err(status_with_code(
                Code::NotFound,
                &format!("schema {id} not found"),
                "sfdc.platform.eventbus.grpc.schema.not.found",
            )),
        }
    }

    async fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> std::result::Result<Response<TopicInfo>, Status> {
        self.auth(request.metadata())?;
        let topic = request.into_inner().topic_name;
        let object = topic_object(&self.sf, &topic)?;
        // `/data/ChangeEvents` carries several schemas; Salesforce reports none for it.
        let schema_id = object
            .and_then(|o| {
                self.sf
                    .with_state(|s| s.cdc.schemas.get(&o).map(|sc| sc.id.clone()))
            })
            .unwrap_or_default();
        Ok(Response::new(TopicInfo {
            topic_name: topic,
            tenant_guid: TENANT_ID.into(),
            can_publish: false,
            can_subscribe: true,
            schema_id,
            rpc_id: rpc_id(),
        }))
    }

    async fn publish(
        &self,
        _request: Request<PublishRequest>,
    ) -> std::result::Result<Response<PublishResponse>, Status> {
        Err(Status::unimplemented("change event channels are read-only"))
    }

    async fn publish_stream(
        &self,
        _request: Request<Streaming<PublishRequest>>,
    ) -> std::result::Result<Response<PublishStream>, Status> {
        Err(Status::unimplemented("change event channels are read-only"))
    }
}

fn rpc_id() -> String {
    format!("rpc-{:016x}", rand::random::<u64>())
}

/// One Subscribe stream.
struct Session {
    svc: Service,
    token: String,
    tx: mpsc::Sender<std::result::Result<FetchResponse, Status>>,
}

impl Session {
    async fn run(self, mut inbound: Streaming<FetchRequest>) {
        let first = match inbound.message().await {
            Ok(Some(r)) => r,
            _ => return,
        };
        if let Err(status) = self.serve(first, &mut inbound).await {
            let _ = self.tx.send(Err(status)).await;
        }
    }

    /// Where delivery starts: the replay number after which events are sent.
    fn start_after(&self, first: &FetchRequest) -> std::result::Result<u64, Status> {
        let corrupted = || {
            status_with_code(
                Code::InvalidArgument,
                "the replay id is invalid or outside the retention window",
                REPLAY_ID_CORRUPTED,
            )
        };
        self.svc.sf.with_state(|s| {
            s.cdc.subscribes += 1;
            let log = &s.cdc;
            match ReplayPreset::try_from(first.replay_preset).unwrap_or(ReplayPreset::Latest) {
                ReplayPreset::Latest => Ok(log.latest_replay()),
                ReplayPreset::Earliest => Ok(log.expired_through),
                ReplayPreset::Custom => {
                    let bytes: [u8; 8] = first
                        .replay_id
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupted())?;
                    let replay = u64::from_be_bytes(bytes);
                    let retained = log
                        .events
                        .binary_search_by_key(&replay, |e| e.replay)
                        .is_ok();
                    // The latest id stays valid while nothing newer exists (keepalives carry it).
                    if retained || (replay == log.latest_replay() && replay > 0) {
                        Ok(replay)
                    } else {
                        Err(corrupted())
                    }
                }
            }
        })
    }

    async fn serve(
        &self,
        first: FetchRequest,
        inbound: &mut Streaming<FetchRequest>,
    ) -> std::result::Result<(), Status> {
        let object = topic_object(&self.svc.sf, &first.topic_name)?;
        let mut cursor = self.start_after(&first)?;
        let mut owed = first.num_requested.clamp(0, MAX_OUTSTANDING);
        let (mut notify, mut resets) = self
            .svc
            .sf
            .with_state(|s| (s.cdc.notify.subscribe(), s.cdc.resets.subscribe()));
        resets.borrow_and_update();
        let mut idle_since = tokio::time::Instant::now();
        loop {
            if !self.svc.token_live(&self.token) {
                return Err(unauthenticated());
            }
            notify.borrow_and_update();
            let (batch, latest) = self.svc.sf.with_state(|s| {
                let log = &s.cdc;
                let start = log.events.partition_point(|e| e.replay <= cursor);
                let batch: Vec<_> = log
                    .events
                    .iter()
                    .skip(start)
                    .filter(|e| object.as_deref().is_none_or(|o| o == e.object))
                    .take(owed.max(0) as usize)
                    .cloned()
                    .collect();
                let latest = log.latest_replay();
                s.cdc.delivered += batch.len() as u64;
                (batch, latest)
            });
            if let Some(last) = batch.last() {
                cursor = last.replay;
                owed -= batch.len() as i32;
                let events = batch
                    .into_iter()
                    .map(|e| ConsumerEvent {
                        replay_id: e.replay_id(),
                        event: Some(ProducerEvent {
                            id: e.event_id,
                            schema_id: e.schema_id,
                            payload: e.payload,
                            headers: vec![],
                        }),
                    })
                    .collect::<Vec<_>>();
                let response = FetchResponse {
                    latest_replay_id: cursor.to_be_bytes().to_vec(),
                    events,
                    rpc_id: rpc_id(),
                    pending_num_requested: owed,
                };
                if self.tx.send(Ok(response)).await.is_err() {
                    return Ok(());
                }
                idle_since = tokio::time::Instant::now();
                continue;
            }
            // Nothing for this topic up to `latest` (when owed > 0): the position moves on.
            if owed > 0 {
                cursor = cursor.max(latest);
            }
            let keepalive = *lock(&self.svc.keepalive);
            tokio::select! {
                msg = inbound.message() => match msg {
                    Ok(Some(r)) => owed = (owed + r.num_requested.max(0)).min(MAX_OUTSTANDING),
                    _ => return Ok(()),
                },
                _ = notify.changed() => {}
                _ = resets.changed() => {
                    return Err(status_with_code(Code::Unavailable, "stream reset by the server", "sfdc.platform.eventbus.grpc.service.unavailable"));
                }
                _ = tokio::time::sleep_until(idle_since + keepalive) => {
                    // `cursor` is past everything delivered and nothing undelivered of this
                    // topic, so a client may store it as its position.
                    let response = FetchResponse {
                        events: vec![],
                        latest_replay_id: cursor.to_be_bytes().to_vec(),
                        rpc_id: rpc_id(),
                        pending_num_requested: owed,
                    };
                    if self.tx.send(Ok(response)).await.is_err() {
                        return Ok(());
                    }
                    idle_since = tokio::time::Instant::now();
                }
            }
        }
    }
}

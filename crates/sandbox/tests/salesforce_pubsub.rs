//! The Pub/Sub API emulator speaks the protocol as Salesforce does: auth metadata, flow
//! control (never more than requested, at most 100 outstanding), replay presets, the
//! `replayid.corrupted` trailer, schemas, keepalives, REST writes as change events.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tributary_sandbox::salesforce::pubsub::{self, RunningPubSub};
use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
use tributary_sandbox::RunningEmulator;
use tributary_sfpubsub::pb::pub_sub_client::PubSubClient;
use tributary_sfpubsub::pb::{
    FetchRequest, FetchResponse, ReplayPreset, SchemaRequest, TopicRequest,
};
use tributary_sfpubsub::{schema, REPLAY_ID_CORRUPTED};

struct Org {
    rest: RunningEmulator<Salesforce>,
    grpc: RunningPubSub,
    token: String,
}

async fn org() -> Org {
    let rest = salesforce::start(SalesforceOptions::default())
        .await
        .unwrap();
    let grpc = pubsub::start(
        rest.handle().clone(),
        ([127, 0, 0, 1], 0).into(),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    let token: Value = reqwest::Client::new()
        .post(format!("{}/services/oauth2/token", rest.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Org {
        token: token["access_token"].as_str().unwrap().to_string(),
        rest,
        grpc,
    }
}

fn accounts(sf: &Salesforce, n: usize) {
    for i in 0..n {
        let mut f = Map::new();
        f.insert("Name".into(), json!(format!("A{i}")));
        sf.cdc_create("Account", f);
    }
}

impl Org {
    async fn client(&self) -> PubSubClient<Channel> {
        PubSubClient::connect(self.grpc.url()).await.unwrap()
    }

    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(body);
        r.metadata_mut()
            .insert("accesstoken", self.token.parse().unwrap());
        r.metadata_mut()
            .insert("instanceurl", self.rest.base_url().parse().unwrap());
        r.metadata_mut()
            .insert("tenantid", pubsub::TENANT_ID.parse().unwrap());
        r
    }

    /// Opens a Subscribe stream with `first`; returns the sender for more FetchRequests.
    async fn subscribe(
        &self,
        first: FetchRequest,
    ) -> Result<(mpsc::Sender<FetchRequest>, Streaming<FetchResponse>), tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        tx.send(first).await.unwrap();
        let out =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        let stream = self
            .client()
            .await
            .subscribe(self.request(out))
            .await?
            .into_inner();
        Ok((tx, stream))
    }
}

fn fetch(topic: &str, preset: ReplayPreset, replay_id: Vec<u8>, n: i32) -> FetchRequest {
    FetchRequest {
        topic_name: topic.into(),
        replay_preset: preset as i32,
        replay_id,
        num_requested: n,
        auth_refresh: String::new(),
    }
}

/// Events received until the first keepalive (an empty response: nothing more is owed or left).
async fn until_keepalive(stream: &mut Streaming<FetchResponse>) -> (Vec<Vec<u8>>, i32) {
    let mut ids = Vec::new();
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if r.events.is_empty() {
            return (ids, r.pending_num_requested);
        }
        ids.extend(r.events.into_iter().map(|e| e.replay_id));
    }
}

#[tokio::test]
async fn flow_control_never_sends_more_than_requested_and_caps_at_100() {
    let org = org().await;
    accounts(org.rest.handle(), 250);
    let (tx, mut stream) = org
        .subscribe(fetch(
            "/data/AccountChangeEvent",
            ReplayPreset::Earliest,
            vec![],
            5,
        ))
        .await
        .unwrap();
    let (first, pending) = until_keepalive(&mut stream).await;
    assert_eq!(first.len(), 5);
    assert_eq!(pending, 0);
    // 500 requested: clamped to 100 outstanding.
    tx.send(fetch(
        "/data/AccountChangeEvent",
        ReplayPreset::Latest,
        vec![],
        500,
    ))
    .await
    .unwrap();
    let (second, _) = until_keepalive(&mut stream).await;
    assert_eq!(second.len(), 100);
    let all: Vec<_> = first.iter().chain(&second).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "replay order");
    let events = org.rest.handle().cdc_events();
    assert_eq!(all[0], &events[0].replay_id());

    // CUSTOM resumes strictly after the given id; replay fields of later requests are ignored.
    let (_tx, mut resumed) = org
        .subscribe(fetch(
            "/data/ChangeEvents",
            ReplayPreset::Custom,
            events[9].replay_id(),
            3,
        ))
        .await
        .unwrap();
    let (ids, _) = until_keepalive(&mut resumed).await;
    assert_eq!(
        ids,
        vec![
            events[10].replay_id(),
            events[11].replay_id(),
            events[12].replay_id()
        ]
    );
}

#[tokio::test]
async fn corrupted_or_expired_replay_ids_and_bad_tokens_are_refused() {
    let org = org().await;
    let sf = org.rest.handle().clone();
    accounts(&sf, 3);
    let old = sf.cdc_events()[0].replay_id();
    sf.cdc_expire_all();
    accounts(&sf, 2);
    for id in [old, b"garbage".to_vec()] {
        let (_tx, mut stream) = org
            .subscribe(fetch("/data/ChangeEvents", ReplayPreset::Custom, id, 10))
            .await
            .unwrap();
        let status = stream.message().await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.metadata().get("error-code").unwrap(),
            REPLAY_ID_CORRUPTED
        );
    }
    // EARLIEST: only what is retained.
    let (_tx, mut stream) = org
        .subscribe(fetch(
            "/data/ChangeEvents",
            ReplayPreset::Earliest,
            vec![],
            10,
        ))
        .await
        .unwrap();
    assert_eq!(until_keepalive(&mut stream).await.0.len(), 2);

    // A token that expires mid-stream ends it with UNAUTHENTICATED; new calls are refused.
    sf.expire_tokens();
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::Unauthenticated);
    let err = org
        .client()
        .await
        .get_topic(org.request(TopicRequest {
            topic_name: "/data/ChangeEvents".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let no_metadata = org
        .client()
        .await
        .get_topic(tonic::Request::new(TopicRequest {
            topic_name: "/data/ChangeEvents".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(no_metadata.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn rest_writes_become_change_events_with_their_origin_and_schema() {
    let org = org().await;
    let status = reqwest::Client::new()
        .patch(format!(
            "{}/services/data/v62.0/sobjects/Contact/External_Id__c/C-9",
            org.rest.base_url()
        ))
        .bearer_auth(&org.token)
        .header("Sforce-Call-Options", "client=tributary")
        .json(&json!({"LastName": "Doe", "Email": "d@x.com"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let topic = org
        .client()
        .await
        .get_topic(org.request(TopicRequest {
            topic_name: "/data/ContactChangeEvent".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(topic.can_subscribe);
    let (_tx, mut stream) = org
        .subscribe(fetch(
            "/data/ContactChangeEvent",
            ReplayPreset::Earliest,
            vec![],
            10,
        ))
        .await
        .unwrap();
    let r = stream.message().await.unwrap().unwrap();
    let event = r.events[0].event.clone().unwrap();
    assert_eq!(event.schema_id, topic.schema_id);
    let info = org
        .client()
        .await
        .get_schema(org.request(SchemaRequest {
            schema_id: event.schema_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let sch = schema::parse_schema(&info.schema_json).unwrap();
    let decoded = schema::decode(&sch, &event.payload).unwrap();
    assert_eq!(decoded.header_str("changeType"), "CREATE");
    assert_eq!(
        decoded.header_str("changeOrigin"),
        "com/salesforce/api/rest/62.0;client=tributary"
    );
    assert_eq!(decoded.fields["LastName"], "Doe");
    let changed = decoded.header["changedFields"].as_array().unwrap();
    assert!(changed.contains(&json!("Email")) && changed.contains(&json!("External_Id__c")));
    // Unknown topics are NOT_FOUND.
    let err = org
        .client()
        .await
        .get_topic(org.request(TopicRequest {
            topic_name: "/data/OpportunityChangeEvent".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

//! Salesforce Change Data Capture over the Pub/Sub API into JetStream: exactly once and in
//! replay order across `kill -9`, gap read-backs, echo suppression, token expiry, stream
//! resets, and the operator's choice when the stored replay id is past retention.
//!
//! The org is the sandbox's Salesforce emulator (REST + a tonic Pub/Sub server on free ports);
//! NATS is a real nats-server; the bridge is the `tributary` binary.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use support::*;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::salesforce::pubsub::{self, RunningPubSub};
use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
use tributary_sandbox::RunningEmulator;
use tributary_testkit::NatsServer;

const STREAM: &str = "SAAS_SALESFORCE";
const ECHO_CLIENT: &str = "tributary-bridge";

struct Org {
    rest: RunningEmulator<Salesforce>,
    grpc: RunningPubSub,
}

impl Org {
    async fn start() -> Result<Org> {
        Org::start_with(SalesforceOptions::default()).await
    }

    async fn start_with(opts: SalesforceOptions) -> Result<Org> {
        let rest = salesforce::start(opts).await?;
        let grpc = pubsub::start(
            rest.handle().clone(),
            ([127, 0, 0, 1], 0).into(),
            Duration::from_millis(300),
        )
        .await?;
        Ok(Org { rest, grpc })
    }

    fn sf(&self) -> &Salesforce {
        self.rest.handle()
    }
}

fn config(org: &Org, nats: &NatsServer, extra: &str) -> String {
    format!(
        "http_listen = \"127.0.0.1:{}\"\n[log]\nlevel = \"info\"\n[nats]\nservers = [\"{}\"]\n\
         [[salesforce_cdc]]\nname = \"org\"\nlogin_url = \"{}\"\nclient_id = \"sandbox-client\"\n\
         client_secret = \"sandbox-secret\"\npubsub_url = \"{}\"\ntopics = [\"/data/ChangeEvents\"]\n\
         echo_client_id = \"{ECHO_CLIENT}\"\ninitial_position = \"earliest\"\n{extra}",
        tributary_testkit::free_port(),
        nats.url(),
        org.rest.base_url(),
        org.grpc.url(),
    )
}

fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// One change of the synthetic workload: creates, then updates and some deletes, over
/// Account, Contact and Order; `i` decides which.
fn change(sf: &Salesforce, i: usize, ids: &mut Vec<String>) {
    let objects = ["Account", "Contact", "Order"];
    if ids.len() < 30 || i.is_multiple_of(5) {
        let object = objects[i % 3];
        let f = match object {
            "Account" => fields(&[("Name", json!(format!("Acme {i}")))]),
            "Contact" => fields(&[
                ("LastName", json!(format!("Doe {i}"))),
                ("Email", json!(format!("c{i}@example.com"))),
            ]),
            _ => fields(&[("Status", json!("Draft")), ("Currency__c", json!("EUR"))]),
        };
        ids.push(sf.cdc_create(object, f));
    } else if i.is_multiple_of(23) {
        let id = ids.remove(i % ids.len());
        sf.cdc_delete(&id);
    } else {
        let id = &ids[i % ids.len()];
        let f = if id.starts_with("801") {
            fields(&[("Status", json!(format!("S{i}")))])
        } else if id.starts_with("003") {
            fields(&[
                ("Phone", json!(format!("+1 555 {i}"))),
                ("Email", Value::Null),
            ])
        } else {
            fields(&[("Phone", json!(format!("+1 555 {i}")))])
        };
        sf.cdc_update(id, f);
    }
}

async fn count(client: &async_nats::Client, stream: &str) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

async fn wait_count(client: &async_nats::Client, n: u64, bridge: &Bridge, secs: u64) -> Result<()> {
    wait_until(Duration::from_secs(secs), async || {
        let c = count(client, STREAM).await;
        Ok(if c >= n {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "{STREAM} holds {c} messages, expected {n}\n{}",
                bridge.log()
            ))
        })
    })
    .await
}

/// The JSON payload of a raw Salesforce event.
fn payload(r: &Received) -> Value {
    let row = r.event.after.as_ref().or(r.event.before.as_ref());
    let text = row
        .and_then(|row| row.values.first())
        .and_then(|v| match v.kind.as_ref() {
            Some(tributary_proto::cdc::v1::value::Kind::Json(t)) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Every domain event on RETAIL, in stream order.
async fn retail(client: &async_nats::Client) -> Result<Vec<DomainEvent>> {
    let js = async_nats::jetstream::new(client.clone());
    let Ok(mut stream) = js.get_stream("RETAIL").await else {
        return Ok(vec![]);
    };
    let last = stream.info().await?.state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return Ok(out);
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .context("reading RETAIL timed out")?
    {
        let msg = msg?;
        let seq = msg
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        out.push(DomainEvent::decode(msg.payload.clone())?);
        if seq >= last {
            break;
        }
    }
    Ok(out)
}

async fn retail_until(
    client: &async_nats::Client,
    until: impl Fn(&[DomainEvent]) -> bool,
) -> Result<Vec<DomainEvent>> {
    wait_until(Duration::from_secs(30), async || {
        let events = retail(client).await?;
        Ok(if until(&events) {
            Check::Done(events)
        } else {
            Check::Pending(format!(
                "RETAIL holds {} events; the condition never held",
                events.len()
            ))
        })
    })
    .await
}

fn subject_of(e: &DomainEvent) -> (String, String, String) {
    let m = e.meta.clone().unwrap_or_default();
    (m.entity, m.event, m.entity_key)
}

fn temp_config(dir: &tempfile::TempDir, text: &str) -> Result<PathBuf> {
    write_config(dir.path(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_changes_exactly_once_in_replay_order_across_two_kill9() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let org = Org::start().await?;
    let sf = org.sf().clone();
    let dir = tempfile::tempdir()?;
    let path = temp_config(&dir, &config(&org, &nats, ""))?;
    const TOTAL: usize = 10_000;
    let mut ids = Vec::new();
    for i in 0..2_000 {
        change(&sf, i, &mut ids);
    }
    // The rest arrives while the bridge runs (and dies).
    let producer = {
        let sf = sf.clone();
        tokio::spawn(async move {
            let mut ids = ids;
            for i in 2_000..TOTAL {
                change(&sf, i, &mut ids);
                if i % 200 == 0 {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
        })
    };
    let mut bridge = Bridge::spawn(&path)?;
    for target in [3_000u64, 6_500] {
        wait_count(&client, target, &bridge, 60).await?;
        bridge.kill9().await?;
        bridge = Bridge::spawn(&path)?;
    }
    producer.await?;
    wait_count(&client, TOTAL as u64, &bridge, 60).await?;
    // A little longer: anything stored twice would show up now.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stored = read_stream(&client, STREAM).await?;
    let expected: Vec<String> = sf
        .cdc_events()
        .iter()
        .map(|e| format!("org:{}", e.event_id))
        .collect();
    assert_eq!(expected.len(), TOTAL);
    let got: Vec<String> = stored.iter().map(|r| r.msg_id.clone()).collect();
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an event was stored twice");
    assert_eq!(got.len(), TOTAL, "every event stored once");
    assert!(got == expected, "events are stored in replay order");
    // For the record: how many were delivered again after the kills (dropped by Nats-Msg-Id
    // when they had been published, or published for the first time otherwise).
    eprintln!(
        "events delivered by the Pub/Sub API: {} for {TOTAL} changes",
        sf.cdc_delivered()
    );
    // The feed clock (commit time, nudged within a millisecond) strictly increases, also
    // across the restarts: the redelivered tail got the same values again.
    assert!(
        stored
            .windows(2)
            .all(|w| w[0].event.commit_time_micros < w[1].event.commit_time_micros),
        "commit_time_micros increases strictly along the topic"
    );
    // Bitmaps arrive as names, replay ids increase.
    let update = stored
        .iter()
        .map(payload)
        .find(|p| {
            p["ChangeEventHeader"]["changeType"] == "UPDATE"
                && p["ChangeEventHeader"]["entityName"] == "Contact"
        })
        .context("a Contact update")?;
    assert_eq!(
        update["ChangeEventHeader"]["changedFields"],
        json!(["Email", "Phone", "LastModifiedDate"])
    );
    assert_eq!(
        update["ChangeEventHeader"]["nulledFields"],
        json!(["Email"])
    );
    let subjects: BTreeSet<String> = stored.iter().map(|r| r.subject.clone()).collect();
    for s in [
        "saas.salesforce.org.Account.create",
        "saas.salesforce.org.Contact.update",
        "saas.salesforce.org.Order.delete",
    ] {
        assert!(subjects.contains(s), "{s} missing from {subjects:?}");
    }
    // The domain mapping ran across the kills too: whatever it published, it published once.
    let events = retail_until(&client, |e| e.len() >= 1_000).await?;
    let ids: BTreeSet<String> = events
        .iter()
        .map(|e| e.meta.clone().unwrap_or_default().event_id)
        .collect();
    assert_eq!(ids.len(), events.len(), "a domain event twice");
    let log = bridge.log();
    assert_eq!(bridge.stop().await?, 0, "clean stop\n{log}");
    Ok(())
}

/// A REST client acting as the Salesforce sink (or another integration).
async fn rest_upsert(org: &Org, client_id: &str, ext: &str, body: Value) -> Result<()> {
    let http = reqwest::Client::new();
    let base = org.rest.base_url();
    let token: Value = http
        .post(format!("{base}/services/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret")
        .send()
        .await?
        .json()
        .await?;
    let status = http
        .patch(format!(
            "{base}/services/data/v62.0/sobjects/Contact/External_Id__c/{ext}"
        ))
        .bearer_auth(token["access_token"].as_str().unwrap_or_default())
        .header("Sforce-Call-Options", format!("client={client_id}"))
        .json(&body)
        .send()
        .await?
        .status();
    if !status.is_success() {
        bail!("upsert answered {status}");
    }
    Ok(())
}

/// With `external_id_field`, the bridge's own write (its echo, dropped) teaches the feed which
/// entity the record is: an agent's later edit maps to the ERP's customer key, not `SF-<id>`,
/// and the raw event keeps the resolved key. A record nobody keyed stays `SF-<id>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_edit_of_a_bridge_written_contact_updates_the_erp_customer() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let org = Org::start().await?;
    let sf = org.sf().clone();
    let dir = tempfile::tempdir()?;
    let path = temp_config(
        &dir,
        &config(&org, &nats, "external_id_field = \"External_Id__c\"\n"),
    )?;
    let bridge = Bridge::spawn(&path)?;

    rest_upsert(
        &org,
        ECHO_CLIENT,
        "C-42",
        json!({"LastName": "Bridge", "Email": "c42@example.com"}),
    )
    .await?;
    let id = sf
        .record_by("Contact", "External_Id__c", "C-42")
        .context("C-42")?
        .id;
    // The echo comes before the edit on the topic, so the feed has learnt the key by then.
    sf.cdc_update(&id, fields(&[("Phone", json!("+1 555 0042"))]));
    let stranger = sf.cdc_create("Contact", fields(&[("LastName", json!("Walk-in"))]));

    let events = retail_until(&client, |e| {
        e.iter()
            .any(|e| subject_of(e) == ("customer".into(), "updated".into(), "C-42".into()))
            && e.iter()
                .any(|e| subject_of(e).2 == format!("SF-{stranger}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", bridge.log()))?;
    let edit = events
        .iter()
        .find(|e| subject_of(e).2 == "C-42")
        .context("the edit")?;
    match edit.entity.as_ref() {
        Some(Entity::Customer(c)) => {
            assert_eq!(c.customer_id, "C-42");
            assert_eq!(c.phone, "+1 555 0042");
            assert!(c
                .external_ids
                .iter()
                .any(|x| x.system == "salesforce" && x.id == id));
        }
        other => bail!("not a customer: {other:?}"),
    }
    assert!(
        !events.iter().any(|e| subject_of(e).2 == format!("SF-{id}")),
        "the keyed record was also published under its Salesforce id"
    );
    let kv = async_nats::jetstream::new(client.clone())
        .get_key_value("tributary_saas")
        .await?;
    let learnt = kv
        .get(format!("salesforce.org.xwalk.Contact.{id}"))
        .await?
        .context("the crosswalk entry")?;
    assert_eq!(&learnt[..], b"C-42");
    // Sources, domain stage, sinks and the Salesforce feed: all marked as the bridge's.
    let streams = marked_streams(&client).await?;
    for name in ["RETAIL", "KV_tributary_saas", "KV_tributary_domain"] {
        assert!(streams.iter().any(|s| s == name), "{name} in {streams:?}");
    }
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gaps_are_read_back_echoes_dropped_and_expired_tokens_refreshed() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let org = Org::start().await?;
    let sf = org.sf().clone();
    let dir = tempfile::tempdir()?;
    let path = temp_config(&dir, &config(&org, &nats, "batch_size = 10\n"))?;
    let bridge = Bridge::spawn(&path)?;

    // The bridge's own write comes back as a change event and is dropped; another app's is kept.
    rest_upsert(
        &org,
        ECHO_CLIENT,
        "C-1",
        json!({"LastName": "Echo", "Email": "e@x.com"}),
    )
    .await?;
    rest_upsert(&org, "marketing-app", "C-2", json!({"LastName": "Other"})).await?;
    // A change Salesforce could not put in an event: only a gap header, the record is re-read.
    let account = sf.cdc_create("Account", fields(&[("Name", json!("Before"))]));
    sf.cdc_gap(
        "GAP_UPDATE",
        &account,
        fields(&[("Name", json!("After the gap"))]),
    );
    // A transaction too large for events: its records are written without events and only an
    // overflow event names the entity; the records modified before it are re-read.
    let bulk: Vec<String> = (0..2)
        .map(|i| sf.insert_record("Order", fields(&[("Name", json!(format!("Bulk {i}")))])))
        .collect();
    sf.cdc_overflow("Order");
    // One event for an identical change of two records.
    let merged: Vec<String> = (0..2)
        .map(|i| sf.cdc_create("Contact", fields(&[("LastName", json!(format!("M{i}")))])))
        .collect();
    sf.cdc_update_merged(&merged, fields(&[("Phone", json!("+1 555 0100"))]));
    // 1 kept upsert + create + gap + its read-back + overflow + its 2 read-backs + 2 creates
    // + 1 merged update.
    wait_count(&client, 10, &bridge, 30).await?;

    // Tokens expire mid-stream and the stream is reset by the server: nothing is lost.
    let tokens_before = sf.tokens_issued();
    sf.expire_tokens();
    let mut ids = Vec::new();
    for i in 0..300 {
        change(&sf, i, &mut ids);
        if i == 150 {
            sf.cdc_reset_streams();
            sf.expire_tokens();
        }
    }
    wait_count(&client, 310, &bridge, 60).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = read_stream(&client, STREAM).await?;
    assert_eq!(
        stored.len(),
        310,
        "nothing lost or doubled\n{}",
        bridge.log()
    );
    assert!(
        sf.tokens_issued() > tokens_before,
        "a new token was fetched"
    );

    let payloads: Vec<Value> = stored.iter().map(payload).collect();
    assert!(
        !payloads.iter().any(|p| p["fields"]["LastName"] == "Echo"),
        "the bridge's own change was dropped"
    );
    let other = payloads
        .iter()
        .find(|p| p["fields"]["LastName"] == "Other")
        .context("another client's change is kept")?;
    assert!(other["ChangeEventHeader"]["changeOrigin"]
        .as_str()
        .unwrap_or_default()
        .ends_with("client=marketing-app"));
    let readback = stored
        .iter()
        .find(|r| r.event.origin == "readback")
        .context("a read-back after the gap")?;
    assert_eq!(readback.subject, "saas.salesforce.org.Account.readback");
    assert_eq!(payload(readback)["fields"]["Name"], "After the gap");
    assert!(stored
        .iter()
        .any(|r| r.subject == "saas.salesforce.org.Order.gap_overflow"));
    for (i, id) in bulk.iter().enumerate() {
        let back = stored
            .iter()
            .find(|r| {
                r.subject == "saas.salesforce.org.Order.readback"
                    && payload(r)["fields"]["Id"] == *id
            })
            .with_context(|| format!("overflow read-back of {id}"))?;
        assert_eq!(payload(back)["fields"]["Name"], format!("Bulk {i}"));
    }

    // Domain events: the other app's Contact is a customer, the read-back updates the Account;
    // the echo never becomes one.
    let account_key = format!("SF-{account}");
    let events = retail_until(&client, |e| {
        e.iter()
            .any(|e| subject_of(e) == ("customer".into(), "updated".into(), account_key.clone()))
    })
    .await?;
    let other_id = sf
        .record_by("Contact", "External_Id__c", "C-2")
        .context("C-2")?
        .id;
    let echo_id = sf
        .record_by("Contact", "External_Id__c", "C-1")
        .context("C-1")?
        .id;
    let created: Vec<&DomainEvent> = events
        .iter()
        .filter(|e| {
            subject_of(e)
                == (
                    "customer".into(),
                    "created".into(),
                    format!("SF-{other_id}"),
                )
        })
        .collect();
    assert_eq!(created.len(), 1);
    match created[0].entity.as_ref() {
        Some(Entity::Customer(c)) => assert_eq!(c.last_name, "Other"),
        other => bail!("not a customer: {other:?}"),
    }
    assert!(!events
        .iter()
        .any(|e| subject_of(e).2 == format!("SF-{echo_id}")));
    let after_gap = events
        .iter()
        .rev()
        .find(|e| subject_of(e).2 == account_key)
        .and_then(|e| match e.entity.as_ref() {
            Some(Entity::Customer(c)) => Some(c.name.clone()),
            _ => None,
        });
    assert_eq!(after_gap.as_deref(), Some("After the gap"));
    // The merged change is one raw event and a domain event per record.
    for id in &merged {
        let key = format!("SF-{id}");
        let events = retail_until(&client, |e| {
            e.iter()
                .any(|e| subject_of(e) == ("customer".into(), "updated".into(), key.clone()))
        })
        .await?;
        let phone = events
            .iter()
            .rev()
            .find(|e| subject_of(e).2 == key)
            .and_then(|e| match e.entity.as_ref() {
                Some(Entity::Customer(c)) => Some(c.phone.clone()),
                _ => None,
            });
        assert_eq!(phone.as_deref(), Some("+1 555 0100"));
    }
    // `tributary status` shows the feed: its raw stream and the stored replay position.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["status", "--format", "json", "--config"])
        .arg(&path)
        .output()?;
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).to_string())?;
    let feed = &report["feeds"][0];
    assert_eq!(feed["feed"], "salesforce:org", "{report}");
    assert_eq!(feed["messages"], json!(stored.len()), "{report}");
    let positions = feed["positions"].as_array().context("positions")?;
    assert!(
        positions.iter().any(|p| p[1]
            .as_str()
            .is_some_and(|v| v.starts_with("replay id ") && v.contains("committed"))),
        "{report}"
    );
    let metrics_log = bridge.log();
    assert_eq!(bridge.stop().await?, 0, "{metrics_log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_id_past_retention_stops_the_bridge_unless_the_operator_chose() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let org = Org::start().await?;
    let sf = org.sf().clone();
    let dir = tempfile::tempdir()?;
    let mut ids = Vec::new();
    for i in 0..10 {
        change(&sf, i, &mut ids);
    }
    let path = temp_config(&dir, &config(&org, &nats, ""))?;
    let bridge = Bridge::spawn(&path)?;
    wait_count(&client, 10, &bridge, 30).await?;
    assert_eq!(bridge.stop().await?, 0);

    // 72 h pass: the stored replay id is gone; five newer changes are retained.
    sf.cdc_expire_all();
    for i in 10..15 {
        change(&sf, i, &mut ids);
    }
    let (code, stderr) = run_to_exit(&path, Duration::from_secs(30)).await?;
    assert_ne!(code, 0, "the bridge stops");
    assert!(
        stderr.contains("on_replay_id_expired") && stderr.contains("retention"),
        "the operator is told what happened and which option decides: {stderr}"
    );
    assert_eq!(count(&client, STREAM).await, 10, "nothing skipped silently");

    // earliest: everything still retained.
    let path = temp_config(
        &dir,
        &config(&org, &nats, "on_replay_id_expired = \"earliest\"\n"),
    )?;
    let bridge = Bridge::spawn(&path)?;
    wait_count(&client, 15, &bridge, 30).await?;
    assert_eq!(bridge.stop().await?, 0);

    // latest: only changes after the resubscription (the retained ones in between are skipped).
    sf.cdc_expire_all();
    for i in 15..20 {
        change(&sf, i, &mut ids);
    }
    let path = temp_config(
        &dir,
        &config(&org, &nats, "on_replay_id_expired = \"latest\"\n"),
    )?;
    let subscribes = sf.cdc_subscribe_count();
    let bridge = Bridge::spawn(&path)?;
    // The refused CUSTOM subscription, then the LATEST one.
    wait_until(Duration::from_secs(30), async || {
        Ok(if sf.cdc_subscribe_count() >= subscribes + 2 {
            Check::Done(())
        } else {
            Check::Pending(format!("the bridge did not resubscribe\n{}", bridge.log()))
        })
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let skipped: BTreeSet<String> = sf
        .cdc_events()
        .iter()
        .map(|e| format!("org:{}", e.event_id))
        .collect();
    for i in 20..25 {
        change(&sf, i, &mut ids);
    }
    wait_count(&client, 20, &bridge, 30).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = read_stream(&client, STREAM).await?;
    assert_eq!(stored.len(), 20);
    assert!(stored.iter().all(|r| !skipped.contains(&r.msg_id)));
    assert!(
        bridge.log().contains("on_replay_id_expired"),
        "the skip is logged"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

/// The throwaway RSA key of the JWT bearer test (tests/fixtures; never used anywhere else).
fn test_key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/salesforce-jwt-test-key.pem")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwt_bearer_assertion_signed_with_the_private_key_gets_the_token() -> Result<()> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(test_key_path())?;
    let der = base64::engine::general_purpose::STANDARD.decode(
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let public = key.public().as_ref().to_vec();
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    // The emulator verifies the assertion's signature with the public key.
    let org = Org::start_with(SalesforceOptions {
        jwt_public_keys: vec![("sandbox-client".into(), public)],
        ..SalesforceOptions::default()
    })
    .await?;
    let sf = org.sf().clone();
    let mut ids = Vec::new();
    for i in 0..20 {
        change(&sf, i, &mut ids);
    }
    let text = config(&org, &nats, "")
        .replace("client_secret = \"sandbox-secret\"\n", "")
        + &format!(
            "auth = \"jwt_bearer\"\nusername = \"integration@example.com\"\nprivate_key = {{ file = \"{}\" }}\n",
            test_key_path().display()
        );
    let dir = tempfile::tempdir()?;
    let path = temp_config(&dir, &text)?;
    let bridge = Bridge::spawn(&path)?;
    wait_count(&client, 20, &bridge, 30).await?;
    let grants: Vec<String> = sf
        .requests()
        .matching("/services/oauth2/token")
        .iter()
        .filter_map(|r| {
            let body = String::from_utf8_lossy(&r.body).to_string();
            body.split('&')
                .find_map(|kv| kv.strip_prefix("grant_type=").map(str::to_string))
        })
        .collect();
    assert!(!grants.is_empty());
    assert!(
        grants.iter().all(|g| g.contains("jwt-bearer")),
        "{grants:?}"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keepalives_keep_a_quiet_topic_inside_retention() -> Result<()> {
    let nats = NatsServer::start().await?;
    let client = nats.connect().await?;
    let org = Org::start().await?;
    let sf = org.sf().clone();
    let dir = tempfile::tempdir()?;
    let text = config(&org, &nats, "").replace(
        "topics = [\"/data/ChangeEvents\"]",
        "topics = [\"/data/OrderChangeEvent\"]",
    );
    let path = temp_config(&dir, &text)?;
    let bridge = Bridge::spawn(&path)?;
    for _ in 0..3 {
        sf.cdc_create("Order", fields(&[("Status", json!("Draft"))]));
    }
    wait_count(&client, 3, &bridge, 20).await?;
    // Then only Accounts change: the Order topic is quiet, its keepalives carry newer ids.
    let mut accounts = Vec::new();
    for i in 0..5 {
        sf.cdc_create("Account", fields(&[("Name", json!(format!("Quiet {i}")))]));
        accounts.push(sf.cdc_events().last().context("events")?.replay_id());
    }
    let latest = accounts[4].clone();
    let js = async_nats::jetstream::new(client.clone());
    let key = "salesforce.org.=2Fdata=2FOrderChangeEvent";
    let want: String = latest.iter().map(|b| format!("{b:02x}")).collect();
    wait_until(Duration::from_secs(20), async || {
        let stored = js
            .get_key_value("tributary_saas")
            .await?
            .get(key)
            .await?
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            .and_then(|v| v["replay_id"].as_str().map(str::to_string));
        Ok(if stored.as_deref() == Some(want.as_str()) {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "position {stored:?}, expected {want}\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    assert_eq!(bridge.stop().await?, 0);
    // The Orders (and the first Accounts) age out. Without the keepalives the stored id would
    // be the last Order's, gone now; with them it is still retained and the topic resumes.
    sf.cdc_expire_through(&accounts[2]);
    let bridge = Bridge::spawn(&path)?;
    let order = sf.cdc_create("Order", fields(&[("Status", json!("Activated"))]));
    wait_count(&client, 4, &bridge, 20).await?;
    let stored = read_stream(&client, STREAM).await?;
    assert_eq!(stored.len(), 4);
    assert_eq!(
        payload(&stored[3])["ChangeEventHeader"]["recordIds"],
        json!([order])
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

//! Streams and buckets the bridge does not own, against a real nats-server: a stream of
//! another application is refused and left as it was; an operator's settings survive a
//! restart unless the configuration sets them; conflicts are permanent errors naming the
//! stream in the way; everything the bridge creates carries its mark.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tributary_config::{ResolvedStream, StorageKind, StreamConfig};
use tributary_nats::ownership::{COMPONENT_KEY, OWNER_KEY, OWNER_VALUE};
use tributary_nats::{ensure_stream, inspect_stream, NatsError, StreamSpec};
use tributary_testkit::NatsServer;

const WEEK: u64 = 7 * 24 * 3600;
const DAYS_30: u64 = 30 * 24 * 3600;

fn spec(explicit: StreamConfig) -> StreamSpec {
    StreamSpec {
        settings: ResolvedStream {
            name: "CDC_ERP".into(),
            storage: StorageKind::File,
            replicas: 1,
            max_age_secs: explicit.max_age_secs.unwrap_or(WEEK),
            max_bytes: -1,
            duplicate_window_secs: 120,
            explicit,
        },
        subjects: vec!["cdc.erp.>".into()],
        component: "source:erp".into(),
        name_key: "sources.stream.name",
    }
}

async fn server() -> (NatsServer, jetstream::Context) {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    (nats, js)
}

async fn config_of(js: &jetstream::Context, name: &str) -> stream::Config {
    let mut s = js.get_stream(name).await.expect("stream exists");
    s.info().await.expect("info").config.clone()
}

#[tokio::test]
async fn a_foreign_stream_of_the_bridges_name_is_refused_and_left_untouched() {
    let (_nats, js) = server().await;
    js.create_stream(stream::Config {
        name: "CDC_ERP".into(),
        subjects: vec!["billing.>".into()],
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .expect("foreign stream");
    for i in 0..3 {
        js.publish("billing.invoice", format!("{i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let before = config_of(&js, "CDC_ERP").await;

    let err = ensure_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect_err("a foreign stream is refused");
    assert!(matches!(err, NatsError::Foreign { .. }), "{err:?}");
    assert!(!err.is_transient(), "retrying cannot help: {err}");
    let text = err.to_string();
    assert!(
        text.contains("CDC_ERP") && text.contains("billing.>"),
        "{text}"
    );
    assert!(
        text.contains("sources.stream.name"),
        "names the key: {text}"
    );

    let mut after = js.get_stream("CDC_ERP").await.expect("still there");
    let info = after.info().await.expect("info");
    assert_eq!(info.config.subjects, before.subjects);
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert!(!info.config.metadata.contains_key(OWNER_KEY), "not marked");
    assert_eq!(info.state.messages, 3, "its messages are kept");
    // The other application still publishes.
    js.publish("billing.invoice", "4".into())
        .await
        .expect("publish")
        .await
        .expect("another application's publish is still stored");
}

#[tokio::test]
async fn an_operators_settings_are_kept_unless_the_configuration_sets_them() {
    let (_nats, js) = server().await;
    ensure_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect("created");
    let mut config = config_of(&js, "CDC_ERP").await;
    assert_eq!(config.max_age, Duration::from_secs(WEEK));
    config.max_age = Duration::from_secs(DAYS_30);
    js.update_stream(&config).await.expect("operator's change");

    // A restart with a configuration that does not set max_age: 30 days stay.
    let unset = spec(StreamConfig::default());
    let plan = inspect_stream(&js, &unset)
        .await
        .expect("inspect")
        .expect("exists");
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(
        plan.kept
            .iter()
            .any(|k| k.key == "max_age_secs" && k.old == DAYS_30.to_string()),
        "{:?}",
        plan.kept
    );
    ensure_stream(&js, &unset).await.expect("adopted");
    assert_eq!(
        config_of(&js, "CDC_ERP").await.max_age,
        Duration::from_secs(DAYS_30)
    );

    // The configuration sets it: applied, reported as old → new.
    let set = spec(StreamConfig {
        max_age_secs: Some(10 * 24 * 3600),
        ..Default::default()
    });
    let plan = inspect_stream(&js, &set)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    assert_eq!(plan.changes[0].key, "max_age_secs");
    assert_eq!(plan.changes[0].old, DAYS_30.to_string());
    assert_eq!(plan.changes[0].new, (10 * 24 * 3600).to_string());
    ensure_stream(&js, &set).await.expect("applied");
    assert_eq!(
        config_of(&js, "CDC_ERP").await.max_age,
        Duration::from_secs(10 * 24 * 3600)
    );
}

#[tokio::test]
async fn work_queue_retention_is_a_permanent_error_naming_the_stream() {
    let (_nats, js) = server().await;
    js.create_stream(stream::Config {
        name: "CDC_ERP".into(),
        subjects: vec!["cdc.erp.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("work-queue stream");
    let err = ensure_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect_err("refused");
    assert!(matches!(err, NatsError::Retention { .. }), "{err:?}");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("CDC_ERP") && text.contains("workqueue"),
        "{text}"
    );
    let config = config_of(&js, "CDC_ERP").await;
    assert_eq!(config.retention, stream::RetentionPolicy::WorkQueue);
    assert!(!config.metadata.contains_key(OWNER_KEY));
}

#[tokio::test]
async fn subjects_another_stream_captures_are_a_permanent_error_naming_it() {
    let (_nats, js) = server().await;
    js.create_stream(stream::Config {
        name: "EVERYTHING_CDC".into(),
        subjects: vec!["cdc.>".into()],
        ..Default::default()
    })
    .await
    .expect("overlapping stream");
    let err = ensure_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect_err("refused");
    match &err {
        NatsError::Overlap { others, .. } => assert_eq!(others, &["EVERYTHING_CDC"]),
        other => panic!("expected an overlap, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(err.to_string().contains("EVERYTHING_CDC"), "{err}");
    let check = tributary_nats::check_overlap(&js, &spec(StreamConfig::default())).await;
    assert!(
        matches!(check, Err(NatsError::Overlap { ref others, .. }) if others == &["EVERYTHING_CDC"]),
        "{check:?}"
    );
    assert!(js.get_stream("CDC_ERP").await.is_err(), "nothing created");
}

#[tokio::test]
async fn a_stream_of_an_older_tributary_is_adopted_and_marked() {
    let (_nats, js) = server().await;
    js.create_stream(stream::Config {
        name: "CDC_ERP".into(),
        subjects: vec!["cdc.erp.>".into()],
        max_age: Duration::from_secs(DAYS_30),
        ..Default::default()
    })
    .await
    .expect("unmarked stream");
    let plan = inspect_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect("inspect")
        .expect("exists");
    assert!(plan.adopt);
    ensure_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect("adopted");
    let config = config_of(&js, "CDC_ERP").await;
    assert_eq!(
        config.metadata.get(OWNER_KEY).map(String::as_str),
        Some(OWNER_VALUE)
    );
    assert_eq!(
        config.metadata.get(COMPONENT_KEY).map(String::as_str),
        Some("source:erp")
    );
    assert_eq!(config.max_age, Duration::from_secs(DAYS_30), "kept");
}

#[tokio::test]
async fn buckets_and_object_stores_carry_the_mark_and_foreign_ones_are_refused() {
    let (_nats, js) = server().await;
    let store = tributary_nats::kv::open_bucket(&js, "state", "Tributary test state", "sinks", 1)
        .await
        .expect("bucket");
    store.put("k", "v".into()).await.expect("put");
    assert_eq!(
        store.get("k").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let config = config_of(&js, "KV_state").await;
    assert_eq!(
        config.metadata.get(OWNER_KEY).map(String::as_str),
        Some(OWNER_VALUE)
    );
    assert_eq!(config.max_messages_per_subject, 1);
    // Opened again: the same bucket, no error.
    tributary_nats::kv::open_bucket(&js, "state", "Tributary test state", "sinks", 1)
        .await
        .expect("reopened");

    let objects =
        tributary_nats::kv::open_object_store(&js, "schemas", "Tributary schemas", "domain", 1)
            .await
            .expect("object store");
    objects
        .put("a.bin", &mut &b"abc"[..])
        .await
        .expect("put object");
    let config = config_of(&js, "OBJ_schemas").await;
    assert_eq!(
        config.metadata.get(COMPONENT_KEY).map(String::as_str),
        Some("domain")
    );

    // Another application's bucket of the same name.
    js.create_key_value(kv::Config {
        bucket: "billing".into(),
        description: "billing cursors".into(),
        ..Default::default()
    })
    .await
    .expect("foreign bucket");
    let err = tributary_nats::kv::open_bucket(&js, "billing", "Tributary x", "sinks", 1)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, NatsError::Foreign { .. }) && !err.is_transient(),
        "{err:?}"
    );
    assert!(err.to_string().contains("KV_billing"), "{err}");

    // A bucket an older Tributary created (its description): adopted.
    js.create_key_value(kv::Config {
        bucket: "legacy".into(),
        description: "Tributary sinks: last entity version applied per sink".into(),
        ..Default::default()
    })
    .await
    .expect("legacy bucket");
    tributary_nats::kv::open_bucket(&js, "legacy", "Tributary sinks", "sinks", 1)
        .await
        .expect("adopted");
    assert!(config_of(&js, "KV_legacy")
        .await
        .metadata
        .contains_key(OWNER_KEY));
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let (mut nats, _) = server().await;
    let client = nats.connect().await.expect("connect");
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client);
    nats.stop().await.expect("stop");
    let err = ensure_stream(&js, &spec(StreamConfig::default()))
        .await
        .expect_err("no server");
    assert!(err.is_transient(), "{err:?}");
}

/// The settings rule without a server: only explicit keys change, a storage change is refused.
#[test]
fn the_plan_applies_only_explicit_keys_and_refuses_a_storage_change() {
    let mut existing = stream::Config {
        name: "CDC_ERP".into(),
        subjects: vec!["cdc.erp.>".into()],
        storage: stream::StorageType::Memory,
        num_replicas: 3,
        max_age: Duration::from_secs(DAYS_30),
        max_bytes: 1 << 30,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    };
    tributary_nats::ownership::mark(&mut existing.metadata, "source:erp");

    let plan = tributary_nats::plan(&existing, &spec(StreamConfig::default())).expect("plan");
    assert!(!plan.needs_update() && plan.changes.is_empty());
    let kept: Vec<&str> = plan.kept.iter().map(|k| k.key).collect();
    assert_eq!(
        kept,
        [
            "storage",
            "replicas",
            "max_age_secs",
            "max_bytes",
            "duplicate_window_secs"
        ]
    );
    assert_eq!(plan.config.max_age, existing.max_age);

    let explicit = StreamConfig {
        replicas: Some(1),
        duplicate_window_secs: Some(120),
        ..Default::default()
    };
    let plan = tributary_nats::plan(&existing, &spec(explicit)).expect("plan");
    let changed: Vec<(&str, &str, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.key, c.old.as_str(), c.new.as_str()))
        .collect();
    assert_eq!(
        changed,
        [
            ("replicas", "3", "1"),
            ("duplicate_window_secs", "600", "120")
        ]
    );
    assert_eq!(plan.config.num_replicas, 1);
    assert_eq!(plan.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(plan.config.max_bytes, 1 << 30, "unset: kept");

    let storage = StreamConfig {
        storage: Some(StorageKind::File),
        ..Default::default()
    };
    let err = tributary_nats::plan(&existing, &spec(storage)).expect_err("refused");
    assert!(matches!(err, NatsError::Incompatible { .. }) && !err.is_transient());
    assert!(err.to_string().contains("storage"), "{err}");
}

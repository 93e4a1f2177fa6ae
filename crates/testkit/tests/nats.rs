//! Integration tests for the throwaway nats-servers.

#![allow(clippy::unwrap_used)]

use async_nats::jetstream::{self, stream};
use tributary_testkit::{NatsOptions, NatsServer};

#[tokio::test]
async fn jetstream_messages_survive_restarts() {
    let mut nats = NatsServer::start().await.unwrap();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
    let port = nats.port();

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "EVENTS".to_owned(),
        subjects: vec!["events.>".to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("events.a", "hello".into())
        .await
        .unwrap()
        .await
        .unwrap();
    drop(js);
    assert!(nats.store_dir().join("jetstream").exists());

    for round in 0..2u64 {
        nats.restart().await.unwrap();
        assert_eq!(nats.port(), port);
        let js = jetstream::new(nats.connect().await.unwrap());
        let mut events = js.get_stream("EVENTS").await.unwrap();
        assert_eq!(events.info().await.unwrap().state.messages, 1 + round);
        let msg = events.get_raw_message(1).await.unwrap();
        assert_eq!(msg.subject.as_str(), "events.a");
        assert_eq!(&msg.payload[..], b"hello");
        js.publish("events.b", "more".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    nats.stop().await.unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    nats.start_again().await.unwrap();
    let js = jetstream::new(nats.connect().await.unwrap());
    let mut events = js.get_stream("EVENTS").await.unwrap();
    assert_eq!(events.info().await.unwrap().state.messages, 3);

    let store = nats.store_dir().to_path_buf();
    drop(js);
    drop(nats);
    if std::env::var_os("TRIBUTARY_KEEP_TEST_DIRS").is_none() {
        assert!(!store.exists(), "store must be removed on drop");
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn user_and_token_auth() {
    let nats = NatsServer::start_with(NatsOptions {
        user: Some(("bridge".to_owned(), "pw".to_owned())),
        ..NatsOptions::default()
    })
    .await
    .unwrap();
    assert!(async_nats::connect(nats.url()).await.is_err());
    let client = nats.connect().await.unwrap();
    jetstream::new(client).query_account().await.unwrap();

    let nats = NatsServer::start_with(NatsOptions {
        token: Some("t0ken".to_owned()),
        sync_always: false,
        ..NatsOptions::default()
    })
    .await
    .unwrap();
    assert!(async_nats::ConnectOptions::with_token("bad".to_owned())
        .connect(nats.url())
        .await
        .is_err());
    nats.connect().await.unwrap();

    let both = NatsServer::start_with(NatsOptions {
        user: Some(("u".to_owned(), "p".to_owned())),
        token: Some("t".to_owned()),
        ..NatsOptions::default()
    })
    .await;
    assert!(matches!(
        both,
        Err(tributary_testkit::TestkitError::InvalidOptions(_))
    ));
}

#[tokio::test]
async fn server_log_is_written() {
    let nats = NatsServer::start().await.unwrap();
    let log = std::fs::read_to_string(nats.log_path()).unwrap();
    assert!(log.contains("Server is ready"), "{log}");
}

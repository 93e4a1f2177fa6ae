//! `reset_to_ack_floor` against a real nats-server: unacked messages come again at once.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use tributary_nats::consumer::{reset_to_ack_floor, Reset};
use tributary_testkit::NatsServer;

#[tokio::test]
async fn a_reset_consumer_redelivers_from_its_ack_floor_at_once() {
    let nats = NatsServer::start().await.expect("nats-server");
    let client = nats.connect().await.expect("connect");
    let js = jetstream::new(client);
    let s = js
        .create_stream(stream::Config {
            name: "R".into(),
            subjects: vec!["r.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    for i in 1..=10 {
        js.publish("r.x", format!("{i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let consumer = s
        .create_consumer(pull::Config {
            durable_name: Some("w".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            // Far longer than the test: a redelivery can only come from the reset.
            ack_wait: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(5)
        .messages()
        .await
        .expect("fetch");
    let mut seen = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        let seq = m.info().expect("info").stream_sequence;
        if seq <= 2 {
            m.ack().await.expect("ack");
        }
        seen.push(seq);
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    // Acks are asynchronous: wait until the floor shows them.
    let mut floor = 0;
    for _ in 0..100 {
        floor = s
            .consumer_info("w")
            .await
            .expect("info")
            .ack_floor
            .stream_sequence;
        if floor == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(floor, 2);

    let reset = reset_to_ack_floor(&js, "R", "w").await.expect("reset");
    assert_eq!(reset, Reset::Done { next_sequence: 3 });
    let info = s.consumer_info("w").await.expect("info");
    assert_eq!(info.num_ack_pending, 0);
    let mut again = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch");
    let mut redelivered = Vec::new();
    while let Some(m) = again.next().await {
        redelivered.push(m.expect("message").info().expect("info").stream_sequence);
    }
    assert_eq!(redelivered, vec![3, 4, 5]);

    // An unknown consumer is an error, not a silent success.
    assert!(reset_to_ack_floor(&js, "R", "nobody").await.is_err());
}

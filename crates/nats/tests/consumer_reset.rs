//! Consumers against a real nats-server: `reset_to_ack_floor` and `open_durable` have unacked
//! messages come again at once.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use tributary_nats::consumer::{open_durable, reset_to_ack_floor, Reset};
use tributary_nats::delivery_watch::DeliveryWatch;
use tributary_testkit::NatsServer;

/// A stream `name` on `<lowercase name>.>` holding `n` messages.
async fn stream_of(js: &jetstream::Context, name: &str, n: u32) -> stream::Stream {
    let prefix = name.to_lowercase();
    let s = js
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .expect("stream");
    for i in 1..=n {
        js.publish(format!("{prefix}.x"), format!("{i}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    s
}

/// Fetches up to `n` messages (acking only sequences 1 and 2) and returns their sequences.
async fn fetch(consumer: &jetstream::consumer::PullConsumer, n: usize) -> Vec<u64> {
    fetch_acking(consumer, n, 2).await
}

/// Fetches up to `n` messages, acks those up to sequence `ack_to` and returns their sequences.
async fn fetch_acking(
    consumer: &jetstream::consumer::PullConsumer,
    n: usize,
    ack_to: u64,
) -> Vec<u64> {
    let mut batch = consumer
        .fetch()
        .max_messages(n)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch");
    let mut seen = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        let seq = m.info().expect("info").stream_sequence;
        if seq <= ack_to {
            m.ack().await.expect("ack");
        }
        seen.push(seq);
    }
    seen
}

/// Acks are asynchronous: waits until the consumer's floor shows the two acked.
async fn wait_for_floor_2(s: &stream::Stream, consumer: &str) {
    let mut floor = 0;
    for _ in 0..100 {
        floor = s
            .consumer_info(consumer)
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
}

#[tokio::test]
async fn a_reset_consumer_redelivers_from_its_ack_floor_at_once() {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let s = stream_of(&js, "R", 10).await;
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
    assert_eq!(fetch(&consumer, 5).await, vec![1, 2, 3, 4, 5]);
    wait_for_floor_2(&s, "w").await;

    let reset = reset_to_ack_floor(&js, "R", "w").await.expect("reset");
    assert_eq!(reset, Reset::Done { next_sequence: 3 });
    let info = s.consumer_info("w").await.expect("info");
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(fetch(&consumer, 3).await, vec![3, 4, 5]);

    // An unknown consumer is an error, not a silent success.
    assert!(reset_to_ack_floor(&js, "R", "nobody").await.is_err());
}

/// `open_durable`, the one way workers open their consumer: created when missing; on the
/// next open its limits are updated in place and what it had not acked comes again at once.
#[tokio::test]
async fn open_durable_creates_then_updates_and_rewinds_in_place() {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let s = stream_of(&js, "O", 6).await;
    let config = |max_ack_pending| pull::Config {
        durable_name: Some("worker".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(600),
        max_ack_pending,
        filter_subject: "o.>".into(),
        ..Default::default()
    };
    let opened = open_durable(&js, &s, config(100)).await.expect("create");
    assert_eq!((opened.unacked, opened.rewound), (0, false));
    assert_eq!(fetch(&opened.consumer, 4).await, vec![1, 2, 3, 4]);
    wait_for_floor_2(&s, "worker").await;

    let reopened = open_durable(&js, &s, config(7)).await.expect("reopen");
    assert_eq!((reopened.unacked, reopened.rewound), (2, true));
    let info = s.consumer_info("worker").await.expect("info");
    assert_eq!(info.config.max_ack_pending, 7, "updated in place");
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(fetch(&reopened.consumer, 4).await, vec![3, 4, 5, 6]);
}

/// The new owner of a consumer whose old owner still has a pull request waiting: what the
/// server hands the old one is a gap in the new one's deliveries, seen before the next
/// message is handled; after `open_durable` rewinds, the watch starts at the floor and the
/// redelivered messages pass it in order.
#[tokio::test]
async fn deliveries_taken_by_a_stale_puller_are_a_gap_for_the_owner() {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let s = stream_of(&js, "W", 8).await;
    let config = pull::Config {
        durable_name: Some("owner".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(600),
        ..Default::default()
    };
    let mut consumer = open_durable(&js, &s, config.clone())
        .await
        .expect("open")
        .consumer;
    let mut watch = DeliveryWatch::start(&mut consumer).await.expect("watch");

    // The owner takes 1 and 2; a stale puller (another connection) takes 3 and 4.
    let mut first = consumer
        .fetch()
        .max_messages(2)
        .messages()
        .await
        .expect("fetch");
    while let Some(m) = first.next().await {
        let m = m.expect("message");
        watch
            .received(m.info().expect("info").consumer_sequence)
            .expect("in order");
        m.ack().await.expect("ack");
    }
    let stale = jetstream::new(nats.connect().await.expect("connect"));
    let stale_consumer: jetstream::consumer::PullConsumer = stale
        .get_consumer_from_stream("owner", "W")
        .await
        .expect("stale consumer");
    assert_eq!(
        fetch_acking(&stale_consumer, 2, 0).await,
        vec![3, 4],
        "taken, never acked"
    );

    // The owner's next delivery is 5: the gap is seen before 5 is handled.
    let mut next = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch");
    let m = next.next().await.expect("a message").expect("message");
    let info = m.info().expect("info");
    assert_eq!(info.stream_sequence, 5);
    let gap = watch.received(info.consumer_sequence).unwrap_err();
    assert_eq!((gap.expected, gap.seen), (3, 5));
    drop(next);

    // Reopened, the consumer rewinds to the floor (2); the stale puller is handed 3 and 4
    // again before the new session looks: the watch starts at the floor all the same.
    let opened = open_durable(&js, &s, config.clone()).await.expect("reopen");
    assert!(opened.rewound);
    let mut consumer = opened.consumer;
    assert_eq!(fetch_acking(&stale_consumer, 2, 0).await, vec![3, 4]);
    let mut watch = DeliveryWatch::start(&mut consumer).await.expect("watch");
    let mut next = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch");
    let m = next.next().await.expect("a message").expect("message");
    assert_eq!(m.info().expect("info").stream_sequence, 5);
    assert!(watch
        .received(m.info().expect("info").consumer_sequence)
        .is_err());
    drop(next);

    // With no stale puller left, a rewound session sees every delivery from the floor on.
    let opened = open_durable(&js, &s, config).await.expect("reopen");
    assert!(opened.rewound);
    let mut consumer = opened.consumer;
    let floor = consumer
        .info()
        .await
        .expect("info")
        .ack_floor
        .consumer_sequence;
    let mut watch = DeliveryWatch::start(&mut consumer).await.expect("watch");
    let mut again = consumer
        .fetch()
        .max_messages(6)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch");
    let mut seen = Vec::new();
    while let Some(m) = again.next().await {
        let m = m.expect("message");
        let info = m.info().expect("info");
        if seen.is_empty() {
            assert_eq!(info.consumer_sequence, floor + 1, "numbered from the floor");
        }
        watch
            .received(info.consumer_sequence)
            .expect("no gap after the rewind");
        seen.push(info.stream_sequence);
        m.ack().await.expect("ack");
    }
    assert_eq!(seen, vec![3, 4, 5, 6, 7, 8]);
}

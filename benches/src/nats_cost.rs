//! What nats-server spends to store one message, for each choice the bridge can make about
//! headers and payload size: the end-to-end profile shows nats-server as the largest CPU
//! consumer, and this isolates which part of a message it pays for.
//!
//! Every variant publishes the same number of messages into a fresh file-storage stream set
//! up like a source's (limits retention, a one-hour duplicate window), pipelined the way the
//! bridge publishes: plain publishes with an ack requested on every 256th message.

use anyhow::Context as _;
use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use std::future::IntoFuture as _;
use std::time::Instant;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};

use crate::env::{nats_server_pid, start_nats, Settings};
use crate::procfs;

pub struct Args {
    pub messages: u64,
    /// Payload sizes to try, bytes.
    pub sizes: Vec<usize>,
}

/// Which headers a message carries.
#[derive(Clone, Copy)]
enum Headers {
    /// What the bridge sends with `nats.msg_id_header = true`.
    IdAndExpectedSequence,
    /// What the bridge sends by default.
    ExpectedSequenceOnly,
    IdOnly,
    None,
}

impl Headers {
    fn label(self) -> &'static str {
        match self {
            Headers::IdAndExpectedSequence => "msg-id + expected-last-seq",
            Headers::ExpectedSequenceOnly => "expected-last-seq",
            Headers::IdOnly => "msg-id",
            Headers::None => "none",
        }
    }
}

const ACK_EVERY: u64 = 256;

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<()> {
    let nats = start_nats(settings.durability)
        .await
        .context("starting nats-server")?;
    let pid = nats_server_pid(&nats).context("cannot find the nats-server process")?;
    let client = nats.connect().await?;
    let js = jetstream::new(client.clone());
    println!(
        "{} messages per variant, load average {}",
        args.messages,
        procfs::load_average()
    );
    println!(
        "{:<28} {:>8} {:>12} {:>16} {:>10} {:>14}",
        "headers", "payload", "messages/s", "nats CPU µs/msg", "wall s", "nats RSS +MB"
    );
    let mut round = 0;
    for &size in &args.sizes {
        for headers in [
            Headers::None,
            Headers::IdOnly,
            Headers::ExpectedSequenceOnly,
            Headers::IdAndExpectedSequence,
        ] {
            round += 1;
            let name = format!("COST{round}");
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("cost{round}.>")],
                storage: stream::StorageType::File,
                duplicate_window: std::time::Duration::from_secs(3600),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {name}"))?;
            let payload = Bytes::from(vec![b'x'; size]);
            let cpu_before = procfs::cpu_secs(pid).unwrap_or(0.0);
            let rss_before = procfs::memory_kb(pid).map_or(0, |(rss, _)| rss);
            let started = Instant::now();
            publish(&client, &js, round, args.messages, &payload, headers).await?;
            let wall = started.elapsed().as_secs_f64();
            let cpu = procfs::cpu_secs(pid).unwrap_or(0.0) - cpu_before;
            let rss = procfs::memory_kb(pid).map_or(0, |(rss, _)| rss);
            println!(
                "{:<28} {:>8} {:>12.0} {:>16.2} {:>10.2} {:>14.1}",
                headers.label(),
                size,
                args.messages as f64 / wall,
                cpu * 1e6 / args.messages as f64,
                wall,
                (rss as f64 - rss_before as f64) / 1024.0
            );
            js.delete_stream(&name).await?;
        }
    }
    Ok(())
}

async fn publish(
    client: &async_nats::Client,
    js: &jetstream::Context,
    round: usize,
    messages: u64,
    payload: &Bytes,
    headers: Headers,
) -> anyhow::Result<()> {
    let subject = async_nats::Subject::from(format!("cost{round}.erp.public.orders.insert"));
    let mut acks = FuturesOrdered::new();
    for i in 1..=messages {
        let mut map = HeaderMap::new();
        match headers {
            Headers::IdAndExpectedSequence => {
                map.insert(
                    NATS_MESSAGE_ID,
                    format!("erp:0/{:X}:{}", i / 10, i % 10).as_str(),
                );
                map.insert(NATS_EXPECTED_LAST_SEQUENCE, (i - 1).to_string().as_str());
            }
            Headers::ExpectedSequenceOnly => {
                map.insert(NATS_EXPECTED_LAST_SEQUENCE, (i - 1).to_string().as_str());
            }
            Headers::IdOnly => {
                map.insert(
                    NATS_MESSAGE_ID,
                    format!("erp:0/{:X}:{}", i / 10, i % 10).as_str(),
                );
            }
            Headers::None => {}
        }
        if i % ACK_EVERY == 0 || i == messages {
            let ack = js
                .publish_with_headers(subject.clone(), map, payload.clone())
                .await?;
            acks.push_back(ack.into_future());
            // The bridge keeps a bounded window of acks in flight.
            while acks.len() > 8 {
                if let Some(ack) = acks.next().await {
                    ack?;
                }
            }
        } else {
            client
                .publish_with_headers(subject.clone(), map, payload.clone())
                .await?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    Ok(())
}

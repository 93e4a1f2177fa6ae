//! Rewinding a durable consumer to its ack floor without deleting it.
//!
//! A worker restarted after a crash wants the messages it had not acked delivered again at
//! once and in stream order, not one by one as their `ack_wait` runs out. Deleting the
//! consumer and creating it again at `ack floor + 1` does that, but a process that dies
//! between the two leaves no consumer, and the next start begins at the stream's first
//! message. nats-server 2.14+ resets a consumer in place (`$JS.API.CONSUMER.RESET`, ADR-60);
//! this uses it and tells the caller when the server is too old, so that it can fall back.

use async_nats::jetstream::{
    self,
    consumer::{pull, DeliverPolicy},
    context::ConsumerInfoErrorKind,
};
use serde_json::{json, Value};

use crate::NatsError;

/// What [`reset_to_ack_floor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The consumer now delivers from this stream sequence.
    Done { next_sequence: u64 },
    /// The server has no reset API (older than 2.14): nothing changed.
    Unsupported,
}

/// Resets `consumer` on `stream` to its ack floor: everything delivered and not acked is
/// delivered again, first, in stream order.
pub async fn reset_to_ack_floor(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<Reset, NatsError> {
    let err = |message: String| NatsError::Stream {
        stream: stream.to_string(),
        message: format!("resetting consumer {consumer}: {message}"),
    };
    let answer: Value = match js
        .request(format!("CONSUMER.RESET.{stream}.{consumer}"), &json!({}))
        .await
    {
        Ok(v) => v,
        // Servers before 2.14 do not answer the subject at all.
        Err(e) if e.kind() == jetstream::context::RequestErrorKind::NoResponders => {
            return Ok(Reset::Unsupported)
        }
        Err(e) => return Err(err(e.to_string())),
    };
    if let Some(error) = answer.get("error") {
        let description = error["description"].as_str().unwrap_or("").to_string();
        // An older server's JetStream API answers an unknown request with a 400 / bad request.
        if error["code"].as_u64() == Some(400) && description.contains("unknown") {
            return Ok(Reset::Unsupported);
        }
        return Err(err(format!("{error}")));
    }
    match answer.get("reset_seq").and_then(Value::as_u64) {
        Some(next_sequence) => Ok(Reset::Done { next_sequence }),
        None => Ok(Reset::Unsupported),
    }
}

/// What [`open_durable`] found and did.
pub struct Opened {
    pub consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Messages delivered and not acked when it was opened (0 for a new consumer).
    pub unacked: u64,
    /// Whether those were rewound to the ack floor (in place, or by re-creating the
    /// consumer on a server older than 2.14).
    pub rewound: bool,
}

/// Opens the durable pull consumer `config.durable_name` on `stream` — the one way every
/// worker (domain stage, sinks, SaaS mappings) does it:
///
/// - missing: created from `config`;
/// - present with other limits (`max_ack_pending`, `ack_wait`, filter subjects, e.g. after
///   a configuration change): updated in place, keeping its position;
/// - present with unacked messages (a kill -9, a restart after an error, a stop with
///   messages buffered): reset to its ack floor, so that they are delivered again at once
///   and in stream order instead of one by one as `ack_wait` runs out. In place on
///   nats-server 2.14+; an older server gets the consumer deleted and created again at
///   `ack floor + 1` (a crash between the two leaves no consumer: the next start creates
///   it from `config.deliver_policy`, which callers choose so that this is safe).
pub async fn open_durable(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    config: pull::Config,
) -> Result<Opened, NatsError> {
    let stream_name = stream.cached_info().config.name.clone();
    let name = config.durable_name.clone().unwrap_or_default();
    let err = |action: &str, e: &dyn std::fmt::Display| NatsError::Stream {
        stream: stream_name.clone(),
        message: format!("{action} consumer {name}: {e}"),
    };
    let info = match stream.consumer_info(&name).await {
        Ok(info) => info,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            let consumer = stream
                .create_consumer(config)
                .await
                .map_err(|e| err("create", &e))?;
            return Ok(Opened {
                consumer,
                unacked: 0,
                rewound: false,
            });
        }
        Err(e) => return Err(err("look up", &e)),
    };
    let current = &info.config;
    let wanted_filters = (config.filter_subject.as_str(), &config.filter_subjects);
    if current.max_ack_pending != config.max_ack_pending
        || current.ack_wait != config.ack_wait
        || (current.filter_subject.as_str(), &current.filter_subjects) != wanted_filters
    {
        let mut updated = current.clone();
        updated.max_ack_pending = config.max_ack_pending;
        updated.ack_wait = config.ack_wait;
        updated.filter_subject = config.filter_subject.clone();
        updated.filter_subjects = config.filter_subjects.clone();
        stream
            .update_consumer(updated)
            .await
            .map_err(|e| err("update", &e))?;
    }
    let unacked = info.num_ack_pending as u64;
    let mut rewound = false;
    if unacked > 0 {
        rewound = true;
        if reset_to_ack_floor(js, &stream_name, &name).await? == Reset::Unsupported {
            let start_sequence = info.ack_floor.stream_sequence + 1;
            stream
                .delete_consumer(&name)
                .await
                .map_err(|e| err("delete", &e))?;
            let consumer = stream
                .create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
                    ..config
                })
                .await
                .map_err(|e| err("re-create", &e))?;
            return Ok(Opened {
                consumer,
                unacked,
                rewound,
            });
        }
    }
    let consumer = stream
        .get_consumer(&name)
        .await
        .map_err(|e| err("open", &e))?;
    Ok(Opened {
        consumer,
        unacked,
        rewound,
    })
}

//! Rewinding a durable consumer to its ack floor without deleting it.
//!
//! A worker restarted after a crash wants the messages it had not acked delivered again at
//! once and in stream order, not one by one as their `ack_wait` runs out. Deleting the
//! consumer and creating it again at `ack floor + 1` does that, but a process that dies
//! between the two leaves no consumer, and the next start begins at the stream's first
//! message. nats-server 2.14+ resets a consumer in place (`$JS.API.CONSUMER.RESET`, ADR-60);
//! this uses it and tells the caller when the server is too old, so that it can fall back.

use async_nats::jetstream;
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

//! The one webhook receiver behind every feed (Shopify, the WMS): a feed says how its headers
//! are checked and what its JSON change envelope looks like; the order of the steps, the body
//! limits, the signature check and the store-then-answer rule live here once.
//!
//! ```text
//!  headers ─Feed::check─► 400/401 before any body byte
//!     ──► body::read (413/408) ──► HMAC over prefix ‖ body (blocking pool) vs candidates ─401─►
//!     ──► Feed::admit (400) ──► UTF-8 JSON, else 400 ──► Feed::envelope (400)
//!     ──► publish the JSON change envelope, Nats-Msg-Id = the delivery's id (dedupe), await ack
//!     ──► 200 only now (a duplicate is 200 too); an error or timeout → 503, the sender retries
//! ```

use std::time::Duration;

use async_nats::header::HeaderMap as NatsHeaders;
use async_nats::jetstream;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use prost::Message as _;
use tracing::warn;
use tributary_proto::cdc::v1::ChangeEvent;

use super::{body, verify, Limits};

/// Senders give up on a delivery after about 5 s; the ack must come well before.
pub(crate) const ACK_BUDGET: Duration = Duration::from_millis(4000);

/// A refused delivery: the reason (a metric label and the answer's body) and the status.
pub(crate) struct Reject(pub &'static str, pub StatusCode);

/// What a feed's header check passes on: the bytes signed before the body, the candidate
/// tags, and whatever the envelope needs from the headers.
pub(crate) struct Signed<C> {
    pub prefix: Vec<u8>,
    pub candidates: Vec<Vec<u8>>,
    pub checked: C,
}

/// A verified delivery as it is stored.
pub(crate) struct Delivery {
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a redelivery within the stream's duplicate window.
    pub msg_id: String,
    pub headers: NatsHeaders,
    pub change: ChangeEvent,
}

/// One feed's side of the receiver.
pub(crate) trait Feed {
    type Checked;

    fn key(&self) -> &ring::hmac::Key;
    fn limits(&self) -> &Limits;
    fn js(&self) -> &jetstream::Context;
    /// Header checks, before any body byte is read.
    fn check(&self, headers: &HeaderMap) -> Result<Signed<Self::Checked>, Reject>;
    /// Header checks that only count once the signature holds (a forger learns nothing from
    /// them), before the body is parsed.
    fn admit(&self, _checked: &Self::Checked) -> Result<(), Reject> {
        Ok(())
    }
    /// The signed body (valid UTF-8 JSON) as the change to store.
    fn envelope(&self, checked: Self::Checked, body: &str) -> Result<Delivery, Reject>;
    /// Counts (and logs) a refusal.
    fn rejected(&self, reason: &'static str);
    /// Counts a stored delivery (or one JetStream already had).
    fn stored(&self, delivery: &Delivery, duplicate: bool);
    /// Who retries a delivery answered 503, for the log.
    fn sender(&self) -> &'static str;
}

/// Verifies, stores and answers one delivery.
pub(crate) async fn receive<F: Feed>(
    feed: &F,
    headers: &HeaderMap,
    raw_body: Body,
) -> (StatusCode, &'static str) {
    match accept(feed, headers, raw_body).await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(Reject(reason, status)) => {
            feed.rejected(reason);
            (status, reason)
        }
    }
}

async fn accept<F: Feed>(feed: &F, headers: &HeaderMap, raw_body: Body) -> Result<(), Reject> {
    let signed = feed.check(headers)?;
    let body = body::read(feed.limits(), headers, raw_body)
        .await
        .map_err(|e| Reject(e.reason(), e.status()))?;
    let tag = verify::hmac_sha256(feed.key(), &signed.prefix, &body.bytes).await;
    // Every candidate is compared (no early exit), each in constant time.
    let matched = tag.is_some_and(|t| {
        signed
            .candidates
            .iter()
            .fold(false, |ok, c| ok | verify::tag_matches(&t, c))
    });
    if !matched {
        return Err(Reject("bad_signature", StatusCode::UNAUTHORIZED));
    }
    feed.admit(&signed.checked)?;
    let text = std::str::from_utf8(&body.bytes)
        .ok()
        .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
        .ok_or(Reject("bad_body", StatusCode::BAD_REQUEST))?;
    let delivery = feed.envelope(signed.checked, text)?;
    let payload = Bytes::from(delivery.change.encode_to_vec());
    let stored = verify::store(
        feed.js(),
        delivery.subject.clone(),
        delivery.headers.clone(),
        &delivery.msg_id,
        payload,
        ACK_BUDGET,
    )
    .await;
    match stored {
        Ok(duplicate) => {
            feed.stored(&delivery, duplicate);
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, subject = %delivery.subject, "webhook not stored; the {} will retry", feed.sender());
            Err(Reject(e.reason(), StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

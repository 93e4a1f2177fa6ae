//! `ChangeEventBatch` messages: how consumers recognise them and take them apart without
//! decoding each event twice. A source publishes batches when `snapshot_rows_per_message`
//! (its initial snapshot) or `changes_per_message` (its stream) is above 1.

use prost::bytes::{Buf, Bytes};
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::DecodeError;

/// The last subject tokens of batches: `<prefix>.<source>.<schema>.<table>.<op>_batch`.
pub const BATCH_TOKENS: [&str; 4] = ["insert_batch", "update_batch", "delete_batch", "read_batch"];

/// The token logical decoding messages carry before their prefix
/// (`<prefix>.<source>._message.<message prefix>`): never a batch, whatever the prefix.
const MESSAGE_TOKEN: &str = "_message";

/// A payload that is not a `ChangeEventBatch`.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("ChangeEventBatch does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("ChangeEventBatch: {0}")]
    Malformed(&'static str),
}

/// True for a subject that carries a `ChangeEventBatch` rather than one `ChangeEvent`.
pub fn is_batch_subject(subject: &str) -> bool {
    let mut tokens = subject.rsplit('.');
    let last = tokens.next().unwrap_or_default();
    BATCH_TOKENS.contains(&last) && tokens.next().is_some_and(|t| t != MESSAGE_TOKEN)
}

/// The encoded `ChangeEvent`s of a message on `subject`: its events for a batch, else the
/// payload itself. Each is a slice of `payload`.
pub fn events_of(subject: &str, payload: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    if is_batch_subject(subject) {
        split_batch(payload)
    } else {
        Ok(vec![payload.clone()])
    }
}

/// The encoded `ChangeEvent`s of a `ChangeEventBatch`, in order, each a slice of `payload`
/// (exactly the bytes the event would have had as a message of its own). Unknown fields
/// added to the batch later are skipped.
pub fn split_batch(payload: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    let mut buf = payload.clone();
    let mut events = Vec::new();
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag != 1 {
            prost::encoding::skip_field(
                wire_type,
                tag,
                &mut buf,
                prost::encoding::DecodeContext::default(),
            )?;
            continue;
        }
        if wire_type != WireType::LengthDelimited {
            return Err(BatchError::Malformed("events is not length-delimited"));
        }
        let len = decode_varint(&mut buf)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= buf.remaining())
            .ok_or(BatchError::Malformed("an event runs past the end"))?;
        events.push(buf.split_to(len));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::cdc::v1::{ChangeEvent, ChangeEventBatch};

    #[test]
    fn splits_into_the_events_own_encodings() {
        let events: Vec<ChangeEvent> = (0..3)
            .map(|n| ChangeEvent {
                event_id: format!("e{n}"),
                ..Default::default()
            })
            .collect();
        let payload = Bytes::from(
            ChangeEventBatch {
                events: events.clone(),
            }
            .encode_to_vec(),
        );
        let parts = split_batch(&payload).expect("splits");
        let own: Vec<Bytes> = events
            .iter()
            .map(|e| Bytes::from(e.encode_to_vec()))
            .collect();
        assert_eq!(parts, own);
    }

    #[test]
    fn truncated_or_garbled_input_is_an_error_not_a_panic() {
        let payload = Bytes::from(
            ChangeEventBatch {
                events: vec![ChangeEvent {
                    event_id: "x".repeat(40),
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
        );
        for cut in 0..payload.len() {
            let _ = split_batch(&payload.slice(..cut));
        }
        assert!(split_batch(&payload.slice(..payload.len() - 1)).is_err());
        assert!(split_batch(&Bytes::from_static(&[0x08, 0x01])).is_err());
        assert!(split_batch(&Bytes::from_static(&[0xff])).is_err());
    }

    #[test]
    fn recognises_batch_subjects() {
        for op in ["insert", "update", "delete", "read"] {
            assert!(is_batch_subject(&format!(
                "cdc.erp.public.orders.{op}_batch"
            )));
            assert!(!is_batch_subject(&format!("cdc.erp.public.orders.{op}")));
        }
        assert!(!is_batch_subject("cdc.erp.public.read_batch.insert"));
        assert!(!is_batch_subject("cdc.erp.public.orders.truncate_batch"));
        // A logical decoding message whose prefix happens to look like a batch token.
        assert!(!is_batch_subject("cdc.erp._message.insert_batch"));
        assert!(!is_batch_subject("read_batch"));
    }
}

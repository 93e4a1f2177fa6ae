//! `ChangeEventBatch` messages (a source's `snapshot_rows_per_message` > 1): how consumers
//! recognise them and take them apart without decoding each event twice.

use prost::bytes::{Buf, Bytes};
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::DecodeError;

/// The last subject token of batched snapshot reads:
/// `<prefix>.<source>.<schema>.<table>.read_batch` (single reads end in `.read`).
pub const READ_BATCH_TOKEN: &str = "read_batch";

/// A payload that is not a `ChangeEventBatch`.
#[derive(Debug, thiserror::Error)]
pub enum ReadBatchError {
    #[error("ChangeEventBatch does not decode: {0}")]
    Decode(#[from] DecodeError),
    #[error("ChangeEventBatch: {0}")]
    Malformed(&'static str),
}

/// True for a subject that carries a `ChangeEventBatch` rather than one `ChangeEvent`.
pub fn is_read_batch_subject(subject: &str) -> bool {
    subject.rsplit('.').next() == Some(READ_BATCH_TOKEN)
}

/// The encoded `ChangeEvent`s of a `ChangeEventBatch`, in order, each a slice of `payload`
/// (exactly the bytes the event would have had as a message of its own). Unknown fields
/// added to the batch later are skipped.
pub fn split_read_batch(payload: &Bytes) -> Result<Vec<Bytes>, ReadBatchError> {
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
            return Err(ReadBatchError::Malformed("events is not length-delimited"));
        }
        let len = decode_varint(&mut buf)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= buf.remaining())
            .ok_or(ReadBatchError::Malformed("an event runs past the end"))?;
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
        let parts = split_read_batch(&payload).expect("splits");
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
            let _ = split_read_batch(&payload.slice(..cut));
        }
        assert!(split_read_batch(&payload.slice(..payload.len() - 1)).is_err());
        assert!(split_read_batch(&Bytes::from_static(&[0x08, 0x01])).is_err());
        assert!(split_read_batch(&Bytes::from_static(&[0xff])).is_err());
    }

    #[test]
    fn recognises_batch_subjects() {
        assert!(is_read_batch_subject("cdc.erp.public.orders.read_batch"));
        assert!(!is_read_batch_subject("cdc.erp.public.orders.read"));
        assert!(!is_read_batch_subject("cdc.erp.public.read_batch.insert"));
    }
}

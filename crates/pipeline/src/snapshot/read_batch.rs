//! Several `read` events in one `ChangeEventBatch` message (`snapshot_rows_per_message` > 1):
//! the stream's cost is per stored message, so a batch of rows costs it about what one row does.

use async_nats::Subject;
use bytes::{BufMut, BytesMut};
use prost::encoding::{encode_key, encode_varint, WireType};

use crate::outbound::Outbound;

/// A batch is sent before it would grow past this, whatever its row count: far below the
/// NATS default `max_payload` (1 MiB) even for wide rows, and big enough that the per-message
/// cost is already spread thin.
pub(super) const MAX_BATCH_BYTES: usize = 256 * 1024;

/// `ChangeEventBatch.events` is field 1.
const EVENTS_FIELD: u32 = 1;

pub(super) struct ReadBatcher {
    subject: Subject,
    rows_per_message: usize,
    commit_time_micros: i64,
    /// The batch's message id (`Nats-Msg-Id` when enabled): its first event's id.
    first_id: Option<String>,
    rows: usize,
    payload: BytesMut,
}

impl ReadBatcher {
    pub(super) fn new(subject: Subject, rows_per_message: usize, commit_time_micros: i64) -> Self {
        ReadBatcher {
            subject,
            rows_per_message,
            commit_time_micros,
            first_id: None,
            rows: 0,
            payload: BytesMut::new(),
        }
    }

    /// Adds one encoded `ChangeEvent`; returns a full batch when there is one to send.
    pub(super) fn push(&mut self, id: String, event: &[u8]) -> Option<Outbound> {
        // Key (1 byte) and length (up to 10 bytes) around the event.
        let framed = event.len() + 11;
        let full = (self.rows > 0 && self.payload.len() + framed > MAX_BATCH_BYTES)
            .then(|| self.finish())
            .flatten();
        if self.first_id.is_none() {
            self.first_id = Some(id);
            self.payload
                .reserve((framed * self.rows_per_message).min(MAX_BATCH_BYTES));
        }
        encode_key(EVENTS_FIELD, WireType::LengthDelimited, &mut self.payload);
        encode_varint(event.len() as u64, &mut self.payload);
        self.payload.put_slice(event);
        self.rows += 1;
        if full.is_some() {
            return full;
        }
        (self.rows >= self.rows_per_message)
            .then(|| self.finish())
            .flatten()
    }

    /// The rows not sent yet, as one message; `None` when there are none.
    pub(super) fn finish(&mut self) -> Option<Outbound> {
        let msg_id = self.first_id.take()?;
        self.rows = 0;
        Some(Outbound::Change {
            subject: self.subject.clone(),
            msg_id,
            payload: std::mem::take(&mut self.payload).freeze(),
            commit_time_micros: self.commit_time_micros,
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use tributary_proto::cdc::v1::{ChangeEvent, ChangeEventBatch};

    use super::*;

    fn event(n: usize, filler: usize) -> (String, Vec<u8>) {
        let e = ChangeEvent {
            event_id: format!("erp:0/1:r0.1.0.{n}"),
            table: "x".repeat(filler),
            ..Default::default()
        };
        (e.event_id.clone(), e.encode_to_vec())
    }

    fn decoded(out: &Outbound) -> (String, Vec<String>) {
        let Outbound::Change {
            msg_id, payload, ..
        } = out
        else {
            panic!("not a change")
        };
        let batch = ChangeEventBatch::decode(payload.clone()).expect("decodes");
        (
            msg_id.clone(),
            batch.events.into_iter().map(|e| e.event_id).collect(),
        )
    }

    #[test]
    fn batches_hold_n_rows_in_order_named_by_their_first() {
        let mut b = ReadBatcher::new("cdc.erp.public.t.read_batch".into(), 3, 7);
        let mut sent = Vec::new();
        for n in 1..=7 {
            let (id, bytes) = event(n, 10);
            sent.extend(b.push(id, &bytes));
        }
        sent.extend(b.finish());
        assert!(b.finish().is_none(), "nothing left after finish");
        let got: Vec<_> = sent.iter().map(decoded).collect();
        let ids = |r: std::ops::RangeInclusive<usize>| {
            r.map(|n| format!("erp:0/1:r0.1.0.{n}")).collect::<Vec<_>>()
        };
        assert_eq!(
            got,
            vec![
                (ids(1..=1)[0].clone(), ids(1..=3)),
                (ids(4..=4)[0].clone(), ids(4..=6)),
                (ids(7..=7)[0].clone(), ids(7..=7)),
            ]
        );
    }

    #[test]
    fn a_batch_never_grows_past_the_byte_bound_and_a_wide_row_goes_alone() {
        let mut b = ReadBatcher::new("s".into(), 1000, 0);
        let mut sent = Vec::new();
        let rows = [100_000, 100_000, 100_000, 300_000, 10];
        for (n, filler) in rows.iter().enumerate() {
            let (id, bytes) = event(n, *filler);
            sent.extend(b.push(id, &bytes));
        }
        sent.extend(b.finish());
        let sizes: Vec<usize> = sent
            .iter()
            .map(|o| match o {
                Outbound::Change { payload, .. } => payload.len(),
                _ => 0,
            })
            .collect();
        let counts: Vec<usize> = sent.iter().map(|o| decoded(o).1.len()).collect();
        assert_eq!(counts, vec![2, 1, 1, 1], "sizes {sizes:?}");
        assert!(sizes[0] <= MAX_BATCH_BYTES && sizes[1] <= MAX_BATCH_BYTES);
        assert!(sizes[2] > MAX_BATCH_BYTES, "the wide row is sent, alone");
    }
}

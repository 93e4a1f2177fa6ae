//! The open transaction: ordinals, hold-back of the last change, and what goes to the publisher.

use async_nats::Subject;
use bytes::{Bytes, BytesMut};
use prost::Message as _;
use tributary_core::Lsn;
use tributary_proto::cdc::v1::ChangeEvent;

/// A built change whose encoding waits until it is known whether it is the last one.
pub struct PendingChange {
    pub event: ChangeEvent,
    pub static_fields: Bytes,
    pub subject: Subject,
}

/// Position of a change in the stream order: (commit LSN, ordinal).
pub type Position = (Lsn, u32);

pub struct OpenTransaction {
    pub final_lsn: Lsn,
    pub commit_time_micros: i64,
    pub xid: u32,
    pub origin: String,
    ordinal: u32,
    held: Option<PendingChange>,
}

impl OpenTransaction {
    pub fn new(final_lsn: Lsn, commit_time_micros: i64, xid: u32) -> Self {
        OpenTransaction {
            final_lsn,
            commit_time_micros,
            xid,
            origin: String::new(),
            ordinal: 0,
            held: None,
        }
    }

    /// Numbers the change and returns the previous one, now known not to be the last.
    pub fn push(&mut self, mut change: PendingChange) -> Option<PendingChange> {
        self.ordinal += 1;
        change.event.ordinal = self.ordinal;
        self.held.replace(change)
    }

    /// At commit: the last change, marked with the transaction's size.
    pub fn finish(&mut self) -> Option<PendingChange> {
        let total = self.ordinal;
        self.held.take().map(|mut c| {
            c.event.last_in_transaction = true;
            c.event.transaction_changes = total;
            c
        })
    }

    pub fn changes(&self) -> u32 {
        self.ordinal
    }
}

pub fn event_id(source: &str, commit_lsn: Lsn, ordinal: u32) -> String {
    format!("{source}:{commit_lsn}:{ordinal}")
}

/// Parses an id made by [`event_id`] back into a position.
pub fn parse_event_id(id: &str) -> Option<Position> {
    let mut parts = id.rsplitn(3, ':');
    let ordinal = parts.next()?.parse().ok()?;
    let lsn = parts.next()?.parse().ok()?;
    Some((lsn, ordinal))
}

/// The position of a stream's last message: from its `Nats-Msg-Id` when it was sent with
/// one, else from the payload's `event_id` (the same string) — for a batch, its last event's
/// (which is also the batch's `Nats-Msg-Id`). None for a message that is not a streamed
/// change (a snapshot `read` event, an undecodable payload).
pub fn tail_position(
    subject: Option<&str>,
    msg_id: Option<&str>,
    payload: Option<&Bytes>,
) -> Option<Position> {
    if let Some(id) = msg_id {
        return parse_event_id(id);
    }
    let payload = payload?;
    let last = match subject {
        Some(s) if tributary_proto::batch::is_batch_subject(s) => {
            tributary_proto::batch::split_batch(payload).ok()?.pop()?
        }
        _ => payload.clone(),
    };
    let event = ChangeEvent::decode(last).ok()?;
    parse_event_id(&event.event_id)
}

/// Encodes the event's own fields followed by the relation's pre-encoded static fields.
pub fn encode(change: &PendingChange) -> Bytes {
    let len = change.event.encoded_len() + change.static_fields.len();
    let mut buf = BytesMut::with_capacity(len);
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = change.event.encode(&mut buf);
    buf.extend_from_slice(&change.static_fields);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_back() {
        let id = event_id("erp-main", Lsn(0x1_0000_00AB), 42);
        assert_eq!(id, "erp-main:1/AB:42");
        assert_eq!(parse_event_id(&id), Some((Lsn(0x1_0000_00AB), 42)));
        assert_eq!(parse_event_id("garbage"), None);
    }

    #[test]
    fn tail_position_reads_the_header_or_the_payload() {
        let change = PendingChange {
            event: ChangeEvent {
                event_id: event_id("erp", Lsn(0x2_0000_0010), 3),
                ..ChangeEvent::default()
            },
            static_fields: Bytes::new(),
            subject: Subject::from("s"),
        };
        let payload = encode(&change);
        let at = Some((Lsn(0x2_0000_0010), 3));
        let s = Some("cdc.erp.public.t.insert");
        assert_eq!(tail_position(s, None, Some(&payload)), at);
        let garbage = Bytes::from_static(b"\xff\xff not protobuf");
        assert_eq!(tail_position(s, Some("erp:2/10:3"), Some(&garbage)), at);
        assert_eq!(tail_position(s, None, Some(&garbage)), None);
        assert_eq!(tail_position(s, None, None), None);
        // A batch: the last event's position, from the payload as from the header.
        let mut batch = crate::batching::EventBatch::new("cdc.erp.public.t.insert".into(), 10);
        for ordinal in [1, 2, 3] {
            let mut c = ChangeEvent::default();
            c.event_id = event_id("erp", Lsn(0x2_0000_0010), ordinal);
            assert!(batch
                .push(c.event_id.clone(), c.encode_to_vec().into(), 0)
                .is_none());
        }
        let Some(crate::outbound::Outbound::Change {
            subject,
            msg_id,
            payload,
            ..
        }) = batch.finish()
        else {
            panic!("a batch")
        };
        assert_eq!(subject.as_str(), "cdc.erp.public.t.insert_batch");
        assert_eq!(tail_position(Some(&subject), None, Some(&payload)), at);
        assert_eq!(tail_position(Some(&subject), Some(&msg_id), None), at);
    }

    #[test]
    fn hold_back_marks_the_last_change() {
        let mk = || PendingChange {
            event: ChangeEvent::default(),
            static_fields: Bytes::new(),
            subject: Subject::from("s"),
        };
        let mut tx = OpenTransaction::new(Lsn(1), 0, 7);
        assert!(tx.push(mk()).is_none());
        let first = tx.push(mk()).expect("first released");
        assert_eq!(first.event.ordinal, 1);
        assert!(!first.event.last_in_transaction);
        let last = tx.finish().expect("last held");
        assert_eq!((last.event.ordinal, last.event.transaction_changes), (2, 2));
        assert!(last.event.last_in_transaction);
    }
}

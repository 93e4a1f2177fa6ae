use prost::Message as _;
use tributary_core::Lsn;
use tributary_proto::cdc::v1::{ChangeEvent, ChangeEventBatch};

use super::*;

fn change(subject: &str, n: u64, batchable: bool) -> Outbound {
    change_sized(subject, n, batchable, false, 0)
}

/// The last change of its transaction.
fn last(subject: &str, n: u64) -> Outbound {
    change_sized(subject, n, true, true, 0)
}

fn change_sized(
    subject: &str,
    n: u64,
    batchable: bool,
    ends_transaction: bool,
    filler: usize,
) -> Outbound {
    let event = ChangeEvent {
        event_id: format!("erp:0/1:{n}"),
        table: "x".repeat(filler),
        ..Default::default()
    };
    Outbound::Change {
        subject: subject.to_string().into(),
        msg_id: event.event_id.clone(),
        payload: event.encode_to_vec().into(),
        commit_time_micros: n as i64,
        batchable,
        ends_transaction,
    }
}

fn coalesce(items: Vec<Outbound>, limit: usize) -> Vec<Outbound> {
    Coalescer::new(limit).feed(items)
}

/// What went out, readably: `subject[ids] msg-id` per message, `cp<lsn>` per checkpoint.
fn shape(out: &[Outbound]) -> Vec<String> {
    out.iter()
        .map(|o| match o {
            Outbound::Change {
                subject,
                msg_id,
                payload,
                commit_time_micros,
                ..
            } => {
                let ids: Vec<String> = if subject.ends_with("_batch") {
                    ChangeEventBatch::decode(payload.clone())
                        .expect("a batch")
                        .events
                        .into_iter()
                        .map(|e| e.event_id.rsplit(':').next().unwrap_or("").to_string())
                        .collect()
                } else {
                    let e = ChangeEvent::decode(payload.clone()).expect("an event");
                    vec![e.event_id.rsplit(':').next().unwrap_or("").to_string()]
                };
                let id = msg_id.rsplit(':').next().unwrap_or("");
                format!("{subject}[{}] {id} t{commit_time_micros}", ids.join(","))
            }
            Outbound::Checkpoint { lsn } => format!("cp{}", lsn.0),
            Outbound::SnapshotChunk { id } => format!("chunk{}", id.index),
        })
        .collect()
}

fn cp(n: u64) -> Outbound {
    Outbound::Checkpoint { lsn: Lsn(n) }
}

#[test]
fn runs_of_one_subject_merge_until_the_transaction_ends() {
    let mut c = Coalescer::new(10);
    let items = vec![
        change("s.a.insert", 1, true),
        change("s.a.insert", 2, true),
        cp(10),
        last("s.a.insert", 3),
        change("s.b.update", 4, true),
        cp(20),
        change("s._message.p", 5, false),
        change("s.a.insert", 6, true),
    ];
    assert_eq!(
        shape(&c.feed(items)),
        [
            "s.a.insert_batch[1,2,3] 3 t3",
            "cp10",
            "s.b.update[4] 4 t4",
            "cp20",
            "s._message.p[5] 5 t5",
        ]
    );
    // The run of 6 stays open until its transaction ends, whatever the deliveries.
    assert!(c.feed(vec![]).is_empty());
    assert_eq!(
        shape(&c.feed(vec![last("s.a.insert", 7), cp(30)])),
        ["s.a.insert_batch[6,7] 7 t7", "cp30"]
    );
}

#[test]
fn a_full_batch_goes_out_with_the_markers_it_passed() {
    let items = vec![
        change("s.a.delete", 1, true),
        cp(10),
        change("s.a.delete", 2, true),
        change("s.a.delete", 3, true),
        change("s.a.delete", 4, true),
        cp(20),
        last("s.a.delete", 5),
    ];
    assert_eq!(
        shape(&coalesce(items, 2)),
        [
            "s.a.delete_batch[1,2] 2 t2",
            "cp10",
            "s.a.delete_batch[3,4] 4 t4",
            "cp20",
            "s.a.delete[5] 5 t5",
        ]
    );
}

#[test]
fn a_limit_of_one_changes_nothing() {
    let items = vec![change("s.a.insert", 1, true), cp(10), last("s.a.insert", 2)];
    assert_eq!(
        shape(&coalesce(items, 1)),
        ["s.a.insert[1] 1 t1", "cp10", "s.a.insert[2] 2 t2"]
    );
}

#[test]
fn a_batch_never_grows_past_the_byte_bound_and_a_wide_event_goes_alone() {
    let sizes = [100_000, 100_000, 100_000, 300_000, 10];
    let items: Vec<Outbound> = sizes
        .iter()
        .enumerate()
        .map(|(n, filler)| change_sized("s.a.insert", n as u64, true, n == 4, *filler))
        .collect();
    let out = coalesce(items, 1000);
    let got: Vec<String> = shape(&out)
        .into_iter()
        .map(|s| s.split(' ').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        got,
        [
            "s.a.insert_batch[0,1]",
            "s.a.insert[2]",
            "s.a.insert[3]",
            "s.a.insert[4]"
        ]
    );
    let Outbound::Change { payload, .. } = &out[0] else {
        panic!("a change")
    };
    assert!(payload.len() <= MAX_BATCH_BYTES);
}

/// A pseudo-random stream of changes: two tables, transactions of 1–12 changes, some not
/// batchable, sizes up to 60 KB.
fn workload(seed: u64, n: u64) -> Vec<Outbound> {
    let mut x = seed;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let size = 1 + next() % 12;
        for k in 0..size {
            i += 1;
            let subject = if next() % 3 == 0 {
                "s.b.update"
            } else {
                "s.a.insert"
            };
            let batchable = next() % 10 != 0;
            let filler = (next() % 60_000) as usize * usize::from(next() % 4 == 0);
            out.push(change_sized(subject, i, batchable, k + 1 == size, filler));
        }
        out.push(cp(i));
    }
    out
}

/// Messages only (markers left out), as `subject[ids]`.
fn messages(out: &[Outbound]) -> Vec<String> {
    shape(out)
        .into_iter()
        .filter(|s| !s.starts_with("cp"))
        .map(|s| s.split(' ').next().unwrap_or("").to_string())
        .collect()
}

fn clone_item(o: &Outbound) -> Outbound {
    match o {
        Outbound::Change {
            subject,
            msg_id,
            payload,
            commit_time_micros,
            batchable,
            ends_transaction,
        } => Outbound::Change {
            subject: subject.clone(),
            msg_id: msg_id.clone(),
            payload: payload.clone(),
            commit_time_micros: *commit_time_micros,
            batchable: *batchable,
            ends_transaction: *ends_transaction,
        },
        Outbound::Checkpoint { lsn } => Outbound::Checkpoint { lsn: *lsn },
        Outbound::SnapshotChunk { id } => Outbound::SnapshotChunk { id: id.clone() },
    }
}

/// The property exactly-once rests on: the batches depend on the changes only — not on how
/// they were delivered, nor on where a publisher started after the last message stored.
#[test]
fn batches_depend_on_the_changes_not_on_deliveries_or_restarts() {
    for seed in [1u64, 7, 42, 1234, 99_999] {
        let items = workload(seed, 400);
        let whole = messages(&coalesce(items.iter().map(clone_item).collect(), 8));
        for split in [1usize, 2, 3, 5, 64] {
            let mut c = Coalescer::new(8);
            let mut out = Vec::new();
            for part in items.chunks(split) {
                out.extend(c.feed(part.iter().map(clone_item).collect()));
            }
            assert_eq!(messages(&out), whole, "seed {seed}, deliveries of {split}");
        }
        // Markers never move before a change they followed.
        let out = coalesce(items.iter().map(clone_item).collect(), 8);
        let mut highest = 0u64;
        for line in shape(&out) {
            if let Some(lsn) = line.strip_prefix("cp") {
                let lsn: u64 = lsn.parse().expect("lsn");
                assert!(lsn <= highest, "seed {seed}: cp{lsn} before change {lsn}");
            } else {
                let ids = line.split('[').nth(1).and_then(|s| s.split(']').next());
                for id in ids.unwrap_or("").split(',') {
                    highest = highest.max(id.parse().expect("id"));
                }
            }
        }
        // A restart resumes after the last message stored: its batches are the rest of these.
        let all_ids: Vec<u64> = items
            .iter()
            .filter_map(|o| match o {
                Outbound::Change {
                    commit_time_micros, ..
                } => Some(*commit_time_micros as u64),
                _ => None,
            })
            .collect();
        for stored in [1usize, 5, whole.len() / 2, whole.len() - 1] {
            let last_stored: u64 = whole[stored - 1]
                .split('[')
                .nth(1)
                .and_then(|s| s.trim_end_matches(']').rsplit(',').next())
                .and_then(|s| s.parse().ok())
                .expect("last id");
            assert!(all_ids.contains(&last_stored));
            let rest: Vec<Outbound> = items
                .iter()
                .filter(|o| match o {
                    Outbound::Change {
                        commit_time_micros, ..
                    } => *commit_time_micros as u64 > last_stored,
                    _ => true,
                })
                .map(clone_item)
                .collect();
            assert_eq!(
                messages(&coalesce(rest, 8)),
                whole[stored..],
                "seed {seed}: restart after message {stored}"
            );
        }
    }
}

#[test]
fn event_batch_sends_its_events_in_order_named_by_the_last() {
    let mut b = EventBatch::new("s.t.read".into(), 3);
    let mut sent = Vec::new();
    for n in 1..=7u64 {
        let Outbound::Change {
            msg_id, payload, ..
        } = change("s.t.read", n, true)
        else {
            unreachable!()
        };
        sent.extend(b.push(msg_id, payload, n as i64));
    }
    sent.extend(b.finish());
    assert!(b.finish().is_none(), "nothing left after finish");
    assert_eq!(
        shape(&sent),
        [
            "s.t.read_batch[1,2,3] 3 t3",
            "s.t.read_batch[4,5,6] 6 t6",
            "s.t.read[7] 7 t7"
        ]
    );
}

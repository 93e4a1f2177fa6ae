//! `tributary dlq drop`: dead letters removed without being applied (after a confirmation),
//! each one's resolution recorded first; an entity held behind a dropped event is released.

use std::io::{BufRead as _, Write as _};

use anyhow::Context as _;
use tributary_proto::retail::v1::DomainEvent;
use tributary_proto::Message as _;
use tributary_sinks::admin;

use super::{entry, Select, Session, Target};

pub(super) async fn drop_letters(
    target: &Target,
    select: &Select,
    yes: bool,
) -> anyhow::Result<()> {
    let s = Session::open(target).await?;
    let Some(dlq) = s.stream().await? else {
        println!("{}: no dead letters", s.owner());
        return Ok(());
    };
    let seqs = s.selected(select).await?;
    s.check_recorder().await?;
    if seqs.is_empty() {
        println!("{}: no dead letters", s.owner());
        return Ok(());
    }
    let (mut entries, mut events, mut msgs) = (Vec::new(), Vec::new(), Vec::new());
    for seq in seqs {
        let msg = s.get(&dlq, seq).await?;
        entries.push(entry(seq, msg.time, Some(&msg.headers)));
        // Only a sink's dead letters are domain events that may hold their entity.
        events.push(
            s.sink
                .as_ref()
                .and_then(|_| DomainEvent::decode(msg.payload.clone()).ok())
                .and_then(|e| e.meta),
        );
        msgs.push(msg);
    }
    if !yes {
        for e in &entries {
            println!("{:>8}  {}  {}  {}", e.seq, e.time, e.event_id, e.reason);
        }
        print!(
            "Drop {} dead letter(s) of {} without applying them? [y/N] ",
            entries.len(),
            s.owner()
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            println!("nothing dropped");
            return Ok(());
        }
    }
    let state = match s.sink_config() {
        Ok((sinks, sink)) => Some((admin::open_state(&s.js, sinks, s.replicas).await?, sink)),
        Err(_) => None,
    };
    for ((e, meta), msg) in entries.iter().zip(&events).zip(&msgs) {
        s.resolved(msg, tributary_tracker::resolution::DROPPED)
            .await?;
        dlq.delete_message(e.seq)
            .await
            .with_context(|| format!("deleting dead letter {}", e.seq))?;
        println!("dropped dead letter {} (event {})", e.seq, e.event_id);
        // An entity held behind the dropped event (on_dead_letter = "hold") moves on.
        if let (Some(m), Some((state, sink))) = (meta, &state) {
            if admin::release_hold(state, sink, &m.entity, &m.entity_key, &m.event_id).await? {
                println!(
                    "  {} {} is no longer held; its later events apply (redrive those parked behind it)",
                    m.entity, m.entity_key
                );
            }
        }
    }
    Ok(())
}

//! `status` as text for a terminal.

use super::StatusReport;

fn render_snapshot(
    s: &tributary_pipeline::SnapshotState,
    pace: Option<&tributary_pipeline::SnapshotPace>,
) -> String {
    let status = match s.status {
        tributary_pipeline::SnapshotStatus::Done => "done".to_string(),
        tributary_pipeline::SnapshotStatus::InProgress => match pace {
            Some(p) => format!(
                "in progress, {:.0} rows/s, {}",
                p.rows_per_sec,
                p.eta_secs
                    .map(|s| format!("~{s} s left by the estimates"))
                    .unwrap_or_else(|| "estimate reached".into())
            ),
            None => "in progress".to_string(),
        },
    };
    let mut out = format!(
        "  snapshot {status} (consistent point {}, attempt {})\n",
        s.consistent_point, s.attempt
    );
    for (table, p) in &s.tables {
        let state = match &p.failed {
            Some(e) => format!("FAILED: {e}"),
            None => format!(
                "{}/{} chunks, {} rows (~{} estimated)",
                p.done.len(),
                p.chunks.len(),
                p.rows,
                p.estimated_rows
            ),
        };
        out.push_str(&format!("    {table}: {state}\n"));
    }
    out
}

pub(super) fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let b = &r.bridge;
    let bridge_line = match (b.up, b.ready) {
        (true, Some(true)) => format!("up on {}, ready (every component)", b.address),
        (true, Some(false)) => {
            let down: Vec<String> = b
                .components
                .iter()
                .filter(|c| !c.ready)
                .map(|c| format!("{}: {}", c.component, c.reason.as_deref().unwrap_or("?")))
                .collect();
            format!("up on {}, not ready ({})", b.address, down.join("; "))
        }
        (true, None) => format!(
            "up on {} ({})",
            b.address,
            b.error.as_deref().unwrap_or("no report")
        ),
        (false, _) => format!(
            "not running ({})",
            b.error.as_deref().unwrap_or("no answer")
        ),
    };
    out.push_str(&format!("bridge  {bridge_line}\n"));
    if let Some(g) = &r.replicas {
        out.push_str(&render_group(g));
    }

    for s in &r.sources {
        out.push_str(&format!("\nsource {} ({})\n", s.source, s.slot.endpoint));
        let slot = &s.slot;
        let slot_line = if let Some(e) = &slot.error {
            format!("{}: cannot read: {e}", slot.slot)
        } else if !slot.exists {
            format!(
                "{}: does not exist (created by the bridge's first start)",
                slot.slot
            )
        } else {
            let state = match (slot.active, slot.active_pid) {
                (Some(true), Some(pid)) => format!("active (pid {pid})"),
                (Some(true), None) => "active".into(),
                _ => "inactive".into(),
            };
            let mut line = format!(
                "{}: {state}, confirmed {}, lag {}",
                slot.slot,
                slot.confirmed_flush_lsn.as_deref().unwrap_or("n/a"),
                slot.lag_bytes
                    .map(super::super::human_bytes)
                    .unwrap_or_else(|| "n/a".into())
            );
            if let Some(secs) = slot.lag_seconds {
                line.push_str(&format!(" (~{})", super::super::human_seconds(secs)));
            }
            if let Some(w) = &slot.wal_status {
                line.push_str(&format!(", wal_status {w}"));
            }
            line
        };
        out.push_str(&format!("  slot    {slot_line}\n"));
        if let Some(snapshot) = &s.snapshot {
            out.push_str(&render_snapshot(snapshot, s.snapshot_pace.as_ref()));
        }

        let st = &s.stream;
        let stream_line = if let Some(e) = &st.error {
            format!("{}: cannot read: {e}", st.name)
        } else if !st.exists {
            format!(
                "{}: does not exist (created by the bridge's first start)",
                st.name
            )
        } else {
            let mut line = format!(
                "{}: {} messages, {}, sequences {}..{}",
                st.name,
                st.messages.unwrap_or(0),
                super::super::human_bytes(st.bytes.unwrap_or(0)),
                st.first_sequence.unwrap_or(0),
                st.last_sequence.unwrap_or(0)
            );
            if let Some(t) = &st.last_message_time {
                line.push_str(&format!(", last message {t}"));
            }
            if let Some(c) = st.last_commit_micros {
                let ago = (super::super::now_micros() - c).max(0) as f64 / 1e6;
                line.push_str(&format!(
                    " (committed {} ago)",
                    super::super::human_seconds(ago)
                ));
            }
            line
        };
        out.push_str(&format!("  stream  {stream_line}\n"));

        let bridge_line = match (&s.bridge, b.up) {
            (None, false) => "no bridge answers".to_string(),
            (None, true) => "not run by this replica".to_string(),
            (Some(c), _) if c.ready => "streaming".to_string(),
            (Some(c), _) => format!(
                "not streaming: {}",
                c.reason.as_deref().unwrap_or("no reason given")
            ),
        };
        out.push_str(&format!("  bridge  {bridge_line}\n"));
    }
    if r.sinks.is_empty() {
        out.push_str(&format!("\nsinks   {}\n", r.sinks_note));
    }
    for s in &r.sinks {
        let line = match &s.error {
            Some(e) => format!("cannot read: {e}"),
            None => format!(
                "consumer {}: applied through seq {}, {} pending, {} in flight, {} dead letters",
                s.consumer,
                s.ack_floor.unwrap_or(0),
                s.pending.unwrap_or(0),
                s.in_flight.unwrap_or(0),
                s.dead_letters.unwrap_or(0)
            ),
        };
        out.push_str(&format!("\nsink {}  {line}\n", s.sink));
    }
    for f in &r.feeds {
        let size = match (&f.error, f.messages) {
            (Some(e), _) => format!("cannot read: {e}"),
            (None, Some(n)) => format!("{} holds {n} raw event(s)", f.stream),
            (None, None) => f.stream.clone(),
        };
        out.push_str(&format!("\nfeed {}  {size}\n", f.feed));
        if f.positions.is_empty() {
            out.push_str("  no stored position yet\n");
        }
        for (k, v) in &f.positions {
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if !r.errors.is_empty() {
        out.push('\n');
        for e in &r.errors {
            out.push_str(&format!("error: {e}\n"));
        }
    }
    out
}

/// The replica group: members, then each unit with its owner, since when and its token.
fn render_group(g: &tributary_ha::GroupView) -> String {
    let now = super::super::now_micros() / 1000;
    let ago = |ms: u64| super::super::human_seconds((now - ms as i64).max(0) as f64 / 1e3);
    let mut out = format!(
        "\nreplicas ({} live, leases in KV {})\n",
        g.members.len(),
        g.bucket
    );
    for m in &g.members {
        let owned = g.leases.iter().filter(|l| l.instance == m.instance).count();
        out.push_str(&format!(
            "  {}: up {}, owns {owned} unit(s)\n",
            m.instance,
            ago(m.started_at_ms)
        ));
    }
    for l in &g.leases {
        out.push_str(&format!(
            "  unit {}: {} since {} ago (token {})\n",
            l.unit,
            l.instance,
            ago(l.acquired_at_ms),
            l.revision
        ));
    }
    out
}

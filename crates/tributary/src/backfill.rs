//! `tributary backfill`: asks the running bridge for an online backfill by inserting a
//! request into the source's signal table, so that the request is ordered with the changes.

use std::path::Path;

use anyhow::{bail, Context as _};
use tributary_postgres::{quote_ident, ControlConnection};

pub async fn request(
    config: &Path,
    source: &str,
    table: &str,
    filter: Option<String>,
    wait: bool,
) -> anyhow::Result<()> {
    let config = tributary_config::load(config)?;
    let nats = if wait {
        Some(tributary_nats::connect(&config.nats, "tributary-backfill").await?)
    } else {
        None
    };
    let Some(src) = config.sources.iter().find(|s| s.name == source) else {
        bail!("no source named {source:?} in the configuration (`sources.name`)");
    };
    let Some(signal_table) = &src.signal_table else {
        bail!("source {source:?} has no `signal_table`: add one (and put it in the publication) to request backfills");
    };
    let Some((schema, name)) = signal_table.split_once('.') else {
        bail!("config key `sources.signal_table`: {signal_table:?} must be written schema.table");
    };
    if table.split_once('.').is_none() {
        bail!("--table {table:?} must be written schema.table");
    }
    let params = tributary_pipeline::connect_params(src)?;
    let control = ControlConnection::connect(&params).await?;
    let id = format!(
        "backfill-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut data = serde_json::json!({ "table": table });
    if let Some(f) = &filter {
        data["where"] = serde_json::Value::String(f.clone());
    }
    control
        .client()
        .execute(
            &format!(
                "INSERT INTO {}.{} (id, type, data) VALUES ($1, 'backfill', $2)",
                quote_ident(schema),
                quote_ident(name)
            ),
            &[&id, &data.to_string()],
        )
        .await
        .with_context(|| format!("inserting the request into {signal_table}"))?;
    println!(
        "requested {id}: {table}{}",
        filter.map(|f| format!(" where {f}")).unwrap_or_default()
    );
    let Some(nats) = nats else {
        println!("the bridge logs \"backfill: done\" with the row count; tributary_backfill_rows_total counts rows as they are read");
        return Ok(());
    };
    follow(nats, source, &id).await
}

/// Shows the backfill's progress as the running bridge records it, until it is done.
async fn follow(nats: async_nats::Client, source: &str, id: &str) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let js = async_nats::jetstream::new(nats);
    let key = tributary_pipeline::backfill_progress_key(source, id);
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut last_rows = u64::MAX;
    // The pace from the first progress seen: (when, rows then).
    let mut first: Option<(std::time::Instant, u64)> = None;
    loop {
        let progress = match js.get_key_value(tributary_pipeline::SNAPSHOT_BUCKET).await {
            Ok(kv) => kv.get(&key).await.ok().flatten().and_then(|b| {
                serde_json::from_slice::<tributary_pipeline::BackfillProgress>(&b).ok()
            }),
            Err(_) => None,
        };
        match progress {
            Some(p) => {
                let (since, rows_then) = *first.get_or_insert((std::time::Instant::now(), p.rows));
                let pace = pace(&p, since.elapsed(), rows_then);
                if terminal {
                    eprint!("\r{}{pace}", bar(&p));
                    let _ = std::io::stderr().flush();
                } else if p.rows != last_rows {
                    eprintln!("{} rows, {} chunks{pace}", p.rows, p.chunks);
                }
                last_rows = p.rows;
                if p.done {
                    if terminal {
                        eprintln!();
                    }
                    if let Some(e) = p.error {
                        bail!("backfill {id} failed: {e}");
                    }
                    println!(
                        "backfill {id} done: {} rows in {:.1} s",
                        p.rows,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
            }
            None if started.elapsed() > std::time::Duration::from_secs(60) => {
                bail!("no progress from the bridge after 60 s: is `tributary run` running with this signal table in its publication?");
            }
            None => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `, 1234 rows/s, ~56 s left` once a second of progress is seen (the ETA only when the table's
/// size is estimated: not for a filtered backfill).
fn pace(
    p: &tributary_pipeline::BackfillProgress,
    over: std::time::Duration,
    rows_then: u64,
) -> String {
    let secs = over.as_secs_f64();
    if secs < 1.0 || p.done {
        return String::new();
    }
    let rate = p.rows.saturating_sub(rows_then) as f64 / secs;
    let left = p.estimated_rows.saturating_sub(p.rows);
    match (p.filter.is_none() && left > 0 && rate > 0.0, rate) {
        (true, r) => format!(", {r:.0} rows/s, ~{:.0} s left", left as f64 / r),
        (false, r) => format!(", {r:.0} rows/s"),
    }
}

fn bar(p: &tributary_pipeline::BackfillProgress) -> String {
    const WIDTH: usize = 30;
    if p.filter.is_some() || p.estimated_rows == 0 {
        return format!("{} rows read, {} chunks", p.rows, p.chunks);
    }
    let fraction = (p.rows as f64 / p.estimated_rows as f64).min(1.0);
    let filled = (fraction * WIDTH as f64) as usize;
    format!(
        "[{}{}] {:>3.0}% {}/~{} rows",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        fraction * 100.0,
        p.rows,
        p.estimated_rows
    )
}

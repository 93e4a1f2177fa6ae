//! `tributary orders show <order>` (one order's milestones and timeline, with its returns)
//! and `tributary orders stuck --older-than 30m` (orders waiting in one step longer than
//! that), read from the tracker's KV bucket (docs/order-to-cash.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tributary_tracker::{Kind, Process, Store};

use super::{human_seconds, micros_rfc3339, now_micros, print_json, render_table, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// One order's milestones and the events that showed them, across the systems, with
    /// its returns.
    Show {
        /// Configuration file (the one `tributary run` uses).
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
        /// The order's key as in the domain events (e.g. SO-1001).
        order: String,
        /// `table` for a terminal, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Orders waiting in one step (unallocated, unshipped) for longer than --older-than,
    /// measured from the business time the step began.
    Stuck {
        /// Configuration file (the one `tributary run` uses).
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
        /// `30m`, `2h`, `1d`, `90s`.
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
        /// `table` for a terminal, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `30m` → 30 minutes; units s, m, h, d.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, e.g. 30m"))?;
    let secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?} (s, m, h, d)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Show {
            config,
            order,
            format,
        } => show(&config, &order, format).await,
        Action::Stuck {
            config,
            older_than,
            format,
        } => stuck(&config, older_than, format).await,
    }
}

async fn open(config: &std::path::Path) -> anyhow::Result<Store> {
    let config = tributary_config::load(config).map_err(crate::exit::config)?;
    let Some(tracker) = &config.tracker else {
        anyhow::bail!("the configuration has no [tracker] section");
    };
    let js = super::connect_jetstream(&config).await?;
    match Store::existing(&js, &tracker.state_bucket).await? {
        Some(store) => Ok(store),
        None => anyhow::bail!(
            "KV bucket {} does not exist: the tracker has not run yet",
            tracker.state_bucket
        ),
    }
}

fn time(micros: i64) -> String {
    micros_rfc3339(micros).unwrap_or_else(|| micros.to_string())
}

#[derive(Serialize)]
struct Shown {
    order: Process,
    returns: Vec<Process>,
}

async fn show(config: &std::path::Path, order: &str, format: Format) -> anyhow::Result<()> {
    let store = open(config).await?;
    let Some((found, _)) = store.load(Kind::Order, order).await? else {
        anyhow::bail!("no tracked order {order:?}");
    };
    let returns: Vec<Process> = store
        .all()
        .await?
        .into_iter()
        .filter(|p| p.kind == Kind::Return && p.order_id == order)
        .collect();
    let shown = Shown {
        order: found,
        returns,
    };
    if format == Format::Json {
        return print_json(&shown);
    }
    for p in std::iter::once(&shown.order).chain(&shown.returns) {
        println!("{} {}", p.kind.as_str(), p.key);
        let mut milestones: Vec<_> = p.milestones.iter().collect();
        milestones.sort_by_key(|(_, r)| r.at_micros);
        let rows: Vec<Vec<String>> = milestones
            .iter()
            .map(|(m, r)| vec![m.as_str().into(), time(r.at_micros), r.event_id.clone()])
            .collect();
        print!("{}", render_table(&["MILESTONE", "AT", "EVENT"], &rows));
        let rows: Vec<Vec<String>> = p
            .timeline
            .iter()
            .map(|e| {
                vec![
                    time(e.at_micros),
                    e.event.clone(),
                    e.system.clone(),
                    e.status.clone(),
                ]
            })
            .collect();
        println!();
        print!(
            "{}",
            render_table(&["TIME", "EVENT", "SYSTEM", "STATUS"], &rows)
        );
        if let Some((waiting, since)) = p.waiting() {
            let age = (now_micros() - since).max(0) as f64 / 1e6;
            println!("waiting: {} for {}", waiting.as_str(), human_seconds(age));
        }
        println!();
    }
    Ok(())
}

/// One row of `orders stuck`.
#[derive(Serialize)]
struct StuckRow {
    order: String,
    waiting: &'static str,
    since: String,
    since_micros: i64,
    age_seconds: f64,
    /// The newest event applied to the order (`<entity>.<event>`).
    last_event: String,
    /// Whether the tracker has published `order.stuck` for this step.
    exception_published: bool,
}

async fn stuck(
    config: &std::path::Path,
    older_than: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let store = open(config).await?;
    let now = now_micros();
    let limit = older_than.as_micros() as i64;
    let mut rows = Vec::new();
    for p in store.all().await? {
        if p.kind != Kind::Order {
            continue;
        }
        let Some((waiting, since)) = p.waiting() else {
            continue;
        };
        if now - since < limit {
            continue;
        }
        rows.push(StuckRow {
            order: p.key.clone(),
            waiting: waiting.as_str(),
            since: time(since),
            since_micros: since,
            age_seconds: (now - since) as f64 / 1e6,
            last_event: p
                .timeline
                .last()
                .map(|e| e.event.clone())
                .unwrap_or_default(),
            exception_published: p.exceptions.contains_key(waiting.as_str()),
        });
    }
    rows.sort_by(|a, b| {
        a.since_micros
            .cmp(&b.since_micros)
            .then(a.order.cmp(&b.order))
    });
    if format == Format::Json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!(
            "no order waits longer than {}",
            human_seconds(older_than.as_secs_f64())
        );
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.order.clone(),
                r.waiting.into(),
                r.since.clone(),
                human_seconds(r.age_seconds),
                r.last_event.clone(),
                if r.exception_published {
                    "published"
                } else {
                    "-"
                }
                .into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &[
                "ORDER",
                "WAITING",
                "SINCE",
                "AGE",
                "LAST EVENT",
                "ORDER.STUCK"
            ],
            &table
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_age;
    use std::time::Duration;

    #[test]
    fn ages_have_a_unit() {
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_age("45"), Ok(Duration::from_secs(45)));
        assert!(parse_age("m").is_err());
        assert!(parse_age("3w").is_err());
    }
}

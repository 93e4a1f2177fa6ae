//! ERP-like write load on `sales_orders`: transactions mixing multi-row inserts, updates and
//! deletes, each change counted from PostgreSQL's own command tags.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio_postgres::SimpleQueryMessage;

const STATUSES: [&str; 5] = ["placed", "paid", "picked", "shipped", "invoiced"];
/// Share of inserts and updates among a transaction's changes (the rest are deletes).
const INSERT_SHARE: f64 = 0.5;
const UPDATE_SHARE: f64 = 0.35;

/// Changes written, by operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub transactions: u64,
}

impl Counts {
    pub fn changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }

    pub fn add(&mut self, other: &Counts) {
        self.inserts += other.inserts;
        self.updates += other.updates;
        self.deletes += other.deletes;
        self.transactions += other.transactions;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

/// One transaction's SQL (BEGIN; statements; COMMIT) and what each statement is.
pub struct Transaction {
    sql: String,
    statements: Vec<Kind>,
    planned: u64,
}

/// Generates transactions for one connection. Workers own disjoint id sets
/// (`id ≡ worker mod workers`), so updates and deletes always hit existing rows.
pub struct Generator {
    rng: StdRng,
    next_id: i64,
    step: i64,
    live: Vec<i64>,
    /// Random printable text; notes are slices of it.
    filler: String,
}

impl Generator {
    pub fn new(worker: usize, workers: usize, seed: u64) -> Generator {
        let mut rng = StdRng::seed_from_u64(seed ^ (worker as u64).wrapping_mul(0x9E37_79B9));
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     ";
        let filler = (0..8192)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        Generator {
            rng,
            next_id: worker as i64 + 1,
            step: workers.max(1) as i64,
            live: Vec::new(),
            filler,
        }
    }

    /// A transaction of exactly `size` row changes (at least one).
    pub fn transaction(&mut self, size: usize) -> Transaction {
        let size = size.max(1);
        let (mut inserts, mut updates, mut deletes) = (0usize, 0usize, 0usize);
        for _ in 0..size {
            let roll: f64 = self.rng.random();
            // Updates and deletes need rows: fall back to inserts while there are few.
            let available = self.live.len().saturating_sub(updates + deletes);
            if roll < INSERT_SHARE || available == 0 {
                inserts += 1;
            } else if roll < INSERT_SHARE + UPDATE_SHARE {
                updates += 1;
            } else {
                deletes += 1;
            }
        }
        let mut sql = String::with_capacity(size * 280 + 64);
        let mut statements = Vec::with_capacity(3);
        sql.push_str("BEGIN;\n");
        if inserts > 0 {
            sql.push_str(
                "INSERT INTO sales_orders (id, customer_id, amount, status, updated_at, note) VALUES ",
            );
            for i in 0..inserts {
                let id = self.next_id;
                self.next_id += self.step;
                self.live.push(id);
                let customer: i32 = self.rng.random_range(1..=50_000);
                let cents: i64 = self.rng.random_range(100..=5_000_000);
                let status = STATUSES[self.rng.random_range(0..2)];
                // With the "order <id>: " prefix the note is ~150–250 bytes.
                let len = self.rng.random_range(135..=235);
                let start = self.rng.random_range(0..self.filler.len() - len);
                let note = self.filler.get(start..start + len).unwrap_or("note");
                // Writing to a String cannot fail.
                let _ = write!(
                    sql,
                    "{}({id}, {customer}, {}.{:02}, '{status}', now(), 'order {id}: {note}')",
                    if i == 0 { "" } else { ", " },
                    cents / 100,
                    cents % 100
                );
            }
            sql.push_str(";\n");
            statements.push(Kind::Insert);
        }
        if updates > 0 {
            let picked = rand::seq::index::sample(&mut self.rng, self.live.len(), updates);
            let status = STATUSES[self.rng.random_range(1..STATUSES.len())];
            let ids: Vec<String> = picked.iter().map(|i| self.live[i].to_string()).collect();
            let _ = writeln!(
                sql,
                "UPDATE sales_orders SET status = '{status}', amount = amount + 1.25, updated_at = now() \
                 WHERE id IN ({});",
                ids.join(",")
            );
            statements.push(Kind::Update);
        }
        if deletes > 0 {
            let mut ids = Vec::with_capacity(deletes);
            for _ in 0..deletes {
                let i = self.rng.random_range(0..self.live.len());
                ids.push(self.live.swap_remove(i).to_string());
            }
            let _ = writeln!(
                sql,
                "DELETE FROM sales_orders WHERE id IN ({});",
                ids.join(",")
            );
            statements.push(Kind::Delete);
        }
        sql.push_str("COMMIT;");
        Transaction {
            sql,
            statements,
            planned: size as u64,
        }
    }

    pub fn random_size(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        self.rng.random_range(range)
    }
}

/// Runs a transaction; the counts come from the command tags.
pub async fn execute(client: &tokio_postgres::Client, tx: &Transaction) -> anyhow::Result<Counts> {
    let messages = client
        .simple_query(&tx.sql)
        .await
        .context("running a workload transaction")?;
    let tags: Vec<u64> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    // BEGIN, the statements, COMMIT.
    if tags.len() != tx.statements.len() + 2 {
        bail!(
            "expected {} command tags, got {}",
            tx.statements.len() + 2,
            tags.len()
        );
    }
    let mut counts = Counts {
        transactions: 1,
        ..Counts::default()
    };
    for (kind, n) in tx.statements.iter().zip(&tags[1..]) {
        match kind {
            Kind::Insert => counts.inserts += n,
            Kind::Update => counts.updates += n,
            Kind::Delete => counts.deletes += n,
        }
    }
    if counts.changes() != tx.planned {
        bail!(
            "a transaction changed {} rows, {} were planned",
            counts.changes(),
            tx.planned
        );
    }
    Ok(counts)
}

/// Writes `quota` changes as fast as possible in transactions of 1–100 rows.
pub async fn unpaced(
    client: tokio_postgres::Client,
    mut generator: Generator,
    quota: u64,
) -> anyhow::Result<Counts> {
    let mut total = Counts::default();
    while total.changes() < quota {
        let left = usize::try_from(quota - total.changes()).unwrap_or(usize::MAX);
        let size = generator.random_size(1..=100).min(left);
        let tx = generator.transaction(size);
        total.add(&execute(&client, &tx).await?);
    }
    Ok(total)
}

/// Writes `rate` changes per second for `duration` in transactions of `sizes` rows, keeping
/// to the schedule (no catching up in bursts beyond what fell behind).
pub async fn paced(
    client: tokio_postgres::Client,
    mut generator: Generator,
    rate: f64,
    duration: Duration,
    sizes: std::ops::RangeInclusive<usize>,
) -> anyhow::Result<Counts> {
    let start = tokio::time::Instant::now();
    let mut total = Counts::default();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok(total);
        }
        // When the next change is due.
        let due = start + Duration::from_secs_f64(total.changes() as f64 / rate);
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
            continue;
        }
        let size = generator.random_size(sizes.clone());
        let tx = generator.transaction(size);
        total.add(&execute(&client, &tx).await?);
    }
}

/// Splits `total` over `workers` as evenly as possible.
pub fn split(total: u64, workers: usize) -> Vec<u64> {
    let workers = workers.max(1) as u64;
    (0..workers)
        .map(|i| total / workers + u64::from(i < total % workers))
        .collect()
}

/// Wall-clock microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Seconds between two instants as f64.
pub fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

//! Sink failure handling, end to end (issue #7): writes in the sample ERP (config/retail/)
//! become domain events, and the three sinks apply them to the WMS, Shopify and Salesforce
//! emulators while these misbehave.
//!
//! - `mixed_faults_across_three_targets`: over 20,000 domain events with ~10 % transient
//!   failures (5xx, held requests, answers lost after the write, 429 / THROTTLED /
//!   REQUEST_LIMIT_EXCEEDED) and ~1 % events each target refuses for good. Every target ends
//!   in exactly the state computed from the ERP writes, every refused event is parked once
//!   with its reason and the target's answer, each entity's writes arrive in version order,
//!   and no side effect happens twice.
//! - `sigkill_repeatedly_during_apply`: the bridge is killed with SIGKILL four times while
//!   all three sinks have events in hand (with some answers lost and some events refused);
//!   state, per-key write counts and dead letters stay exact.
//! - `salesforce_batches_within_its_limit_and_shopify_paces_its_bucket`: the Salesforce sink
//!   writes more records than the org's request limit allows calls, by sObject Collections;
//!   the Shopify sink works through a backlog bound by the cost bucket's restore rate without
//!   being throttled.
//! - `one_target_down_the_others_keep_flowing`: the WMS is down; Shopify and Salesforce keep
//!   applying and the source keeps publishing; the WMS backlog drains when it is back.

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::*;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::salesforce::{self, Salesforce, SalesforceOptions};
use tributary_sandbox::shopify::{self, parse_gid, Shopify, ShopifyOptions};
use tributary_sandbox::wms::{self, Wms, WmsOptions, WmsStatus};
use tributary_sandbox::{Fault, RunningEmulator};
use tributary_testkit::{NatsServer, PgCluster};

const SINKS: [&str; 3] = ["wms", "shopify", "salesforce"];
/// A location the Shopify sink maps to a location the shop does not have (INVALID_LOCATION).
const BAD_LOCATION: &str = "DC9";
const LOCATIONS: [&str; 2] = ["DC1", "DC2"];
/// ERP status → Salesforce Order.Status, as configured for the sink.
const STATUS_MAP: [(&str, &str); 2] = [("confirmed", "Activated"), ("cancelled", "Cancelled")];

// ---- the ERP workload and what each target must end with -----------------------------

#[derive(Clone, Copy)]
struct Scale {
    customers: usize,
    orders: usize,
    max_lines: usize,
    /// Share of confirmed orders cancelled later.
    cancel_share: f64,
    /// Share of confirmed orders with a return.
    return_share: f64,
    skus: usize,
    /// Writes per stock level.
    stock_writes: usize,
    rounds: usize,
    /// Put ~1 % events in that the targets refuse.
    invalid: bool,
}

struct Customer {
    /// Emails as the events carry them (lower-cased), in write order.
    emails: Vec<String>,
    last_name: String,
    valid: bool,
}

struct Order {
    customer: i64,
    lines: Vec<(String, i64)>,
    /// ERP statuses in write order.
    statuses: Vec<String>,
    /// false: a line with quantity 0, which the WMS refuses (422).
    valid: bool,
}

struct Return {
    order: String,
    sku: String,
    reason: String,
}

#[derive(Default)]
struct Workload {
    customers: BTreeMap<i64, Customer>,
    orders: BTreeMap<String, Order>,
    returns: BTreeMap<String, Return>,
    /// Last on_hand per (sku, location).
    stock: BTreeMap<(String, String), i64>,
    /// SQL, one `batch_execute` each, in order.
    batches: Vec<String>,
}

fn valid_sku(i: usize) -> String {
    format!("SKU-{i:03}")
}

/// Stock levels Shopify cannot take: an unknown SKU, or a location the shop does not have.
fn invalid_level(sku: &str, location: &str) -> bool {
    sku.starts_with("GHOST-") || location == BAD_LOCATION
}

impl Workload {
    /// The ERP writes in rounds: customers created, then updated a round later; orders
    /// placed with their lines in one transaction, confirmed a round later, some cancelled
    /// or returned a round after that; every stock level rewritten a few times per round.
    fn generate(scale: Scale, seed: u64) -> Workload {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut w = Workload::default();
        let skus: Vec<String> = (1..=scale.skus).map(valid_sku).collect();
        let mut levels: Vec<(String, String)> = Vec::new();
        for sku in &skus {
            for loc in LOCATIONS {
                levels.push((sku.clone(), loc.to_string()));
            }
        }
        if scale.invalid {
            levels.push(("GHOST-1".into(), "DC1".into()));
            levels.push(("GHOST-2".into(), "DC2".into()));
            levels.push((skus[0].clone(), BAD_LOCATION.into()));
            levels.push((skus[1].clone(), BAD_LOCATION.into()));
        }
        let per_round = |n: usize, r: usize| {
            let size = n.div_ceil(scale.rounds);
            (r * size + 1).min(n + 1)..((r + 1) * size + 1).min(n + 1)
        };
        let mut placed_prev: Vec<String> = Vec::new();
        let mut confirmed_prev: Vec<String> = Vec::new();
        let mut created_prev: Vec<i64> = Vec::new();
        let mut stock_written = 0;
        let mut next_return = 1;
        // Two extra rounds confirm, cancel and update what the last rounds created.
        for r in 0..scale.rounds + 2 {
            let mut sql = String::new();
            // Customers created this round.
            let created: Vec<i64> = if r < scale.rounds {
                per_round(scale.customers, r).map(|i| i as i64).collect()
            } else {
                Vec::new()
            };
            if !created.is_empty() {
                let mut values = Vec::new();
                for &id in &created {
                    let valid = !(scale.invalid && rng.random_bool(0.01));
                    let email = if valid {
                        format!("C{id}@Example.com")
                    } else {
                        format!("c{id}-at-example.com")
                    };
                    values.push(format!("({id}, '{email}', 'First{id}', 'Last{id}')"));
                    w.customers.insert(
                        id,
                        Customer {
                            emails: vec![email.to_lowercase()],
                            last_name: format!("Last{id}"),
                            valid,
                        },
                    );
                }
                sql.push_str(&format!(
                    "INSERT INTO customers (id, email, first_name, last_name) VALUES {};",
                    values.join(",")
                ));
            }
            // Customers created last round change their email and last name.
            if !created_prev.is_empty() {
                sql.push_str("BEGIN;");
                for id in &created_prev {
                    let Some(c) = w.customers.get_mut(id) else {
                        continue;
                    };
                    let email = if c.valid {
                        format!("c{id}.v2@example.org")
                    } else {
                        format!("c{id}.v2 at example.org")
                    };
                    c.emails.push(email.clone());
                    c.last_name = format!("Last{id}b");
                    sql.push_str(&format!(
                        "UPDATE customers SET email = '{email}', last_name = 'Last{id}b', updated_at = now() WHERE id = {id};"
                    ));
                }
                sql.push_str("COMMIT;");
            }
            // Orders placed this round, each with its lines in one transaction.
            let customers_so_far = w.customers.len() as i64;
            let mut placed = Vec::new();
            if r < scale.rounds {
                for i in per_round(scale.orders, r) {
                    let order_no = format!("SO-{i:05}");
                    let customer = rng.random_range(1..=customers_so_far);
                    let n = rng.random_range(1..=scale.max_lines);
                    let valid = !(scale.invalid && rng.random_bool(0.015));
                    let bad_line = rng.random_range(0..n);
                    let lines: Vec<(String, i64)> = (0..n)
                        .map(|l| {
                            let q = if !valid && l == bad_line {
                                0
                            } else {
                                rng.random_range(1..=5)
                            };
                            (skus[rng.random_range(0..skus.len())].clone(), q)
                        })
                        .collect();
                    let total: i64 = lines.iter().map(|(_, q)| q * 7).sum::<i64>() + 1;
                    let values: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .map(|(l, (sku, q))| format!("('{order_no}', {}, '{sku}', {q}, 7)", l + 1))
                        .collect();
                    sql.push_str(&format!(
                        "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('{order_no}', {customer}, 'placed', {total});\
                         INSERT INTO order_lines VALUES {}; COMMIT;",
                        values.join(",")
                    ));
                    w.orders.insert(
                        order_no.clone(),
                        Order {
                            customer,
                            lines,
                            statuses: vec!["placed".into()],
                            valid,
                        },
                    );
                    placed.push(order_no);
                }
            }
            // Last round's orders are confirmed (released to the WMS) in one transaction.
            if !placed_prev.is_empty() {
                let list: Vec<String> = placed_prev.iter().map(|o| format!("'{o}'")).collect();
                sql.push_str(&format!(
                    "UPDATE sales_orders SET status = 'confirmed' WHERE order_no IN ({});",
                    list.join(",")
                ));
                for o in &placed_prev {
                    if let Some(o) = w.orders.get_mut(o) {
                        o.statuses.push("confirmed".into());
                    }
                }
            }
            // Orders confirmed the round before: some are cancelled, some returned.
            let mut cancelled = Vec::new();
            for o in &confirmed_prev {
                if rng.random_bool(scale.cancel_share) {
                    cancelled.push(format!("'{o}'"));
                    if let Some(o) = w.orders.get_mut(o) {
                        o.statuses.push("cancelled".into());
                    }
                } else if rng.random_bool(scale.return_share) {
                    let Some(order) = w.orders.get(o) else {
                        continue;
                    };
                    let return_no = format!("R-{next_return:05}");
                    next_return += 1;
                    let sku = order.lines[0].0.clone();
                    let reason = format!("reason {}", rng.random_range(0..1000));
                    sql.push_str(&format!(
                        "INSERT INTO returns (return_no, order_no, sku, quantity, reason, refund_amount) VALUES ('{return_no}', '{o}', '{sku}', 1, '{reason}', 7);"
                    ));
                    w.returns.insert(
                        return_no,
                        Return {
                            order: o.clone(),
                            sku,
                            reason,
                        },
                    );
                }
            }
            if !cancelled.is_empty() {
                sql.push_str(&format!(
                    "UPDATE sales_orders SET status = 'cancelled' WHERE order_no IN ({});",
                    cancelled.join(",")
                ));
            }
            // Every stock level rewritten (one statement, one transaction, per pass).
            let passes = if r < scale.rounds {
                let target = scale.stock_writes * (r + 1) / scale.rounds;
                target - stock_written
            } else {
                0
            };
            for _ in 0..passes {
                let values: Vec<String> = levels
                    .iter()
                    .map(|(sku, loc)| {
                        let q = rng.random_range(0..500i64);
                        w.stock.insert((sku.clone(), loc.clone()), q);
                        format!("('{sku}', '{loc}', {q})")
                    })
                    .collect();
                sql.push_str(&format!(
                    "INSERT INTO stock (sku, location, on_hand) VALUES {} \
                     ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now();",
                    values.join(",")
                ));
            }
            stock_written += passes;
            if !sql.is_empty() {
                w.batches.push(sql);
            }
            confirmed_prev = std::mem::take(&mut placed_prev);
            placed_prev = placed;
            created_prev = created;
        }
        w
    }

    fn released(&self) -> impl Iterator<Item = (&String, &Order)> {
        self.orders
            .iter()
            .filter(|(_, o)| o.valid && o.statuses.iter().any(|s| s == "confirmed"))
    }
}

fn sf_status(erp: &str) -> &str {
    STATUS_MAP
        .iter()
        .find(|(k, _)| *k == erp)
        .map(|(_, v)| *v)
        .unwrap_or(erp)
}

// ---- the environment: servers, emulators, the bridge -----------------------------------

struct Env {
    pg: PgCluster,
    nats: NatsServer,
    _dir: tempfile::TempDir,
    config: PathBuf,
    wms: Option<RunningEmulator<Wms>>,
    /// The WMS handle (also while its server is stopped) and its address.
    wms_handle: Wms,
    wms_addr: std::net::SocketAddr,
    shop: RunningEmulator<Shopify>,
    sf: RunningEmulator<Salesforce>,
    /// SKU → inventory item GID.
    items: BTreeMap<String, String>,
    /// Location code → location GID.
    locations: BTreeMap<String, String>,
}

struct Options {
    scale: Scale,
    shop: ShopifyOptions,
    sf: SalesforceOptions,
    sinks: &'static [&'static str],
    lanes: usize,
    sf_lanes: usize,
    request_timeout_ms: u64,
    sf_extra: String,
}

impl Options {
    fn new(scale: Scale) -> Self {
        Options {
            scale,
            shop: ShopifyOptions {
                bucket_size: 2000.0,
                restore_rate: 5000.0,
                ..ShopifyOptions::default()
            },
            sf: SalesforceOptions::default(),
            sinks: &SINKS,
            lanes: 16,
            sf_lanes: 64,
            request_timeout_ms: 800,
            sf_extra: String::new(),
        }
    }
}

impl Env {
    async fn start(opts: &Options) -> Result<Env> {
        let (pg, nats) = start_servers().await?;
        let dir = tempfile::tempdir()?;
        let sources = retail_sources(&pg).await?;
        let wms = wms::start(WmsOptions {
            requests_per_second: Some(2000.0),
            ..WmsOptions::default()
        })
        .await?;
        let shop = shopify::start(opts.shop.clone()).await?;
        let sf = salesforce::start(opts.sf.clone()).await?;
        let mut locations = BTreeMap::new();
        for loc in LOCATIONS {
            locations.insert(loc.to_string(), shop.add_location(loc));
        }
        // Mapped for the sink, unknown to the shop.
        locations.insert(
            BAD_LOCATION.to_string(),
            "gid://shopify/Location/999999".into(),
        );
        let items = shop_catalog(&shop, (1..=opts.scale.skus).map(valid_sku), "7.00");
        let (client_id, client_secret) = SalesforceOptions::default().clients[0].clone();
        let delivery = |lanes: usize| {
            format!(
                "lanes = {lanes}\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nrequest_timeout_ms = {}\n",
                opts.request_timeout_ms
            )
        };
        let mut text = retail_config(&pg, &nats.url(), &sources)?;
        text.push_str("\n[sinks]\n");
        if opts.sinks.contains(&"wms") {
            text.push_str(&format!(
                "[sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n[sinks.wms.delivery]\n{}",
                wms.base_url(),
                delivery(opts.lanes)
            ));
        }
        if opts.sinks.contains(&"shopify") {
            let locs: Vec<String> = locations
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            text.push_str(&format!(
                "[sinks.shopify]\nbase_url = \"{}\"\naccess_token = \"shpat_sandbox\"\nlocations = {{ {} }}\n[sinks.shopify.delivery]\n{}",
                shop.base_url(),
                locs.join(", "),
                delivery(opts.lanes)
            ));
        }
        if opts.sinks.contains(&"salesforce") {
            let map: Vec<String> = STATUS_MAP
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            text.push_str(&format!(
                "[sinks.salesforce]\nbase_url = \"{}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
                 order_status_map = {{ {} }}\n{}[sinks.salesforce.delivery]\n{}",
                sf.base_url(),
                map.join(", "),
                opts.sf_extra,
                delivery(opts.sf_lanes)
            ));
        }
        let config = write_config(dir.path(), &text)?;
        Ok(Env {
            pg,
            nats,
            _dir: dir,
            config,
            wms_handle: (*wms).clone(),
            wms_addr: wms.addr(),
            wms: Some(wms),
            shop,
            sf,
            items,
            locations,
        })
    }

    async fn bridge(&self) -> Result<Bridge> {
        let bridge = Bridge::spawn(&self.config)?;
        wait_streaming(&self.pg, &["slot_erp", "slot_pos"], &bridge).await?;
        Ok(bridge)
    }

    fn wms(&self) -> &Wms {
        &self.wms_handle
    }

    /// Every request the three emulators received so far.
    fn requests(&self) -> usize {
        self.wms().requests().len() + self.shop.requests().len() + self.sf.requests().len()
    }
}

/// Every domain event of RETAIL in stream order.
async fn retail_events(nats: &async_nats::Client) -> Result<Vec<DomainEvent>> {
    read_all(nats, "RETAIL")
        .await?
        .iter()
        .map(|m| DomainEvent::decode(m.payload.clone()).map_err(Into::into))
        .collect()
}

/// The sink's consumers have nothing pending or unacknowledged.
async fn consumer_idle(js: &jetstream::Context, sink: &str) -> Result<bool> {
    Ok(sink_unacked(js, sink).await? == Some(0))
}

/// Salesforce records by (object, External_Id__c): their fields, one entry per record.
fn sf_records(sf: &Salesforce) -> HashMap<(String, String), Vec<serde_json::Map<String, Value>>> {
    sf.with_state(|s| {
        let mut out: HashMap<_, Vec<_>> = HashMap::new();
        for r in s.records.values() {
            if let Some(Value::String(ext)) = r.fields.get("External_Id__c") {
                out.entry((r.object.clone(), ext.clone()))
                    .or_default()
                    .push(r.fields.clone());
            }
        }
        out
    })
}

fn text(fields: &serde_json::Map<String, Value>, name: &str) -> String {
    match fields.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

// What differs between a target and the state the workload must leave there (empty: equal).

fn wms_mismatches(env: &Env, w: &Workload) -> Vec<String> {
    let mut out = Vec::new();
    let (orders, by_reference) = env
        .wms()
        .with_state(|s| (s.orders.len(), s.by_reference.clone()));
    let expected = w.released().count();
    if orders != expected {
        out.push(format!("WMS holds {orders} orders, expected {expected}"));
    }
    for (no, o) in &w.orders {
        let released = o.statuses.iter().any(|s| s == "confirmed");
        let got = by_reference.get(no).and_then(|id| env.wms().order(id));
        match (o.valid && released, got) {
            (false, None) => {}
            (false, Some(_)) => out.push(format!("{no}: in the WMS but refused or never released")),
            (true, None) => out.push(format!("{no}: not in the WMS")),
            (true, Some(got)) => {
                let lines: Vec<(String, i64)> = got
                    .products
                    .iter()
                    .map(|l| (l.sku.clone(), l.quantity))
                    .collect();
                if lines != o.lines {
                    out.push(format!("{no}: WMS lines {lines:?}, expected {:?}", o.lines));
                }
                let cancelled = o.statuses.last().is_some_and(|s| s == "cancelled");
                let want = if cancelled {
                    WmsStatus::Cancelled
                } else {
                    WmsStatus::Pending
                };
                if got.status != want {
                    out.push(format!(
                        "{no}: WMS status {:?}, expected {want:?}",
                        got.status
                    ));
                }
            }
        }
    }
    out
}

fn shopify_mismatches(env: &Env, w: &Workload) -> Vec<String> {
    let mut out = Vec::new();
    let inventory = env.shop.with_state(|s| s.inventory.clone());
    for ((sku, loc), q) in &w.stock {
        if invalid_level(sku, loc) {
            continue;
        }
        let key = (
            parse_gid(&env.items[sku], "InventoryItem").unwrap_or(0),
            parse_gid(&env.locations[loc], "Location").unwrap_or(0),
        );
        match inventory.get(&key) {
            Some(l) if l.available == *q => {}
            Some(l) => out.push(format!("{sku}@{loc}: Shopify {} expected {q}", l.available)),
            None => out.push(format!("{sku}@{loc}: no Shopify level, expected {q}")),
        }
    }
    out
}

fn salesforce_mismatches(env: &Env, w: &Workload) -> Vec<String> {
    let mut out = Vec::new();
    let records = sf_records(&env.sf);
    let count = |object: &str| records.keys().filter(|(o, _)| o == object).count();
    let valid_customers = w.customers.values().filter(|c| c.valid).count();
    for (object, expected) in [
        ("Contact", valid_customers),
        ("Order", w.orders.len()),
        ("Case", w.returns.len()),
    ] {
        if count(object) != expected {
            out.push(format!(
                "{} {object} records, expected {expected}",
                count(object)
            ));
        }
    }
    for ((object, ext), recs) in &records {
        if recs.len() != 1 {
            out.push(format!("{object} {ext}: {} records", recs.len()));
        }
    }
    let one = |object: &str, ext: &str| {
        records
            .get(&(object.to_string(), ext.to_string()))
            .and_then(|r| r.first())
    };
    for (id, c) in &w.customers {
        match (c.valid, one("Contact", &id.to_string())) {
            (false, None) => {}
            (false, Some(_)) => out.push(format!("contact {id}: written despite an invalid email")),
            (true, None) => out.push(format!("contact {id}: missing")),
            (true, Some(f)) => {
                let email = c.emails.last().cloned().unwrap_or_default();
                if text(f, "Email") != email || text(f, "LastName") != c.last_name {
                    out.push(format!(
                        "contact {id}: {} {}, expected {email} {}",
                        text(f, "Email"),
                        text(f, "LastName"),
                        c.last_name
                    ));
                }
            }
        }
    }
    for (no, o) in &w.orders {
        let want = sf_status(o.statuses.last().map(String::as_str).unwrap_or(""));
        match one("Order", no) {
            None => out.push(format!("order {no}: missing in Salesforce")),
            Some(f) => {
                if text(f, "Status") != want
                    || text(f, "Customer_External_Id__c") != o.customer.to_string()
                {
                    out.push(format!(
                        "order {no}: Status {} customer {}, expected {want} {}",
                        text(f, "Status"),
                        text(f, "Customer_External_Id__c"),
                        o.customer
                    ));
                }
            }
        }
    }
    for (no, r) in &w.returns {
        match one("Case", no) {
            None => out.push(format!("case {no}: missing")),
            Some(f) => {
                if text(f, "Order_External_Id__c") != r.order
                    || text(f, "SKU__c") != r.sku
                    || text(f, "Description") != r.reason
                    || text(f, "Return_State__c") != "requested"
                {
                    out.push(format!("case {no}: {f:?}"));
                }
            }
        }
    }
    out
}

fn mismatches(env: &Env, w: &Workload, sinks: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if sinks.contains(&"wms") {
        out.extend(wms_mismatches(env, w));
    }
    if sinks.contains(&"shopify") {
        out.extend(shopify_mismatches(env, w));
    }
    if sinks.contains(&"salesforce") {
        out.extend(salesforce_mismatches(env, w));
    }
    out
}

/// Polls until every listed target holds the workload's final state and the sinks'
/// consumers are idle (so no redelivery can still add a write), or fails with the first
/// differences and the bridge log.
async fn wait_final(
    env: &Env,
    w: &Workload,
    sinks: &[&str],
    bridge: &Bridge,
    within: Duration,
) -> Result<()> {
    let js = jetstream::new(env.nats.connect().await?);
    let started = Instant::now();
    let deadline = started + within;
    let mut report = started;
    loop {
        // The consumers first: comparing the targets' state is the costly part (it competes
        // for the CPU with the bridge), and only worth it once nothing is left to apply.
        let mut left = Vec::new();
        for sink in sinks {
            left.push(sink_unacked(&js, sink).await?.unwrap_or(u64::MAX));
        }
        let idle = left.iter().all(|n| *n == 0);
        if idle && mismatches(env, w, sinks).is_empty() {
            return Ok(());
        }
        if report.elapsed() >= Duration::from_secs(5) {
            // Progress, for the test output: what the source published, what each sink has
            // left.
            report = Instant::now();
            let published = js.get_stream("RETAIL").await?.info().await?.state.messages;
            let cdc = match js.get_stream("CDC_ERP").await {
                Ok(mut st) => st.info().await?.state.messages,
                Err(_) => 0,
            };
            let mut line = format!(
                "{:>5.1?} CDC_ERP {cdc} RETAIL {published}",
                started.elapsed()
            );
            for (sink, n) in sinks.iter().zip(&left) {
                line.push_str(&format!(" | {sink}: {n} left"));
            }
            eprintln!("{line}");
        }
        if Instant::now() > deadline {
            let diff = mismatches(env, w, sinks);
            let log = bridge.log();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!(
                "targets not in the final state after {within:?} ({} differences, left per sink {left:?}); first:\n{}\nbridge log tail:\n{tail}",
                diff.len(),
                diff.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// No side effect twice, and each entity's writes in version order:
/// - WMS: one order per reference, each release and cancellation applied once under its key;
/// - Shopify: each inventory event applied once under its key, and every level's adjustment
///   history in increasing entity version;
/// - Salesforce: one record per external id (checked with the state), no more value changes
///   than events, and each record's written values never going back in the ERP's history.
fn check_effects(env: &Env, w: &Workload, events: &[DomainEvent], sinks: &[&str]) {
    let mut versions = HashMap::new();
    for ev in events {
        let meta = ev.meta.clone().unwrap_or_default();
        versions.insert(
            meta.event_id.clone(),
            (meta.entity_key.clone(), meta.entity_version),
        );
        match &ev.entity {
            Some(Entity::Order(o)) if sinks.contains(&"wms") && meta.event == "status_changed" => {
                let Some(order) = w.orders.get(&o.order_id) else {
                    continue;
                };
                let key = tributary_sinks::idempotency_key("wms", &meta.event_id);
                let cancel_of_unreleased = o.status == "cancelled" && !order.valid;
                let expected = u64::from(order.valid && !cancel_of_unreleased);
                assert_eq!(
                    env.wms().key_applies(&key),
                    expected,
                    "WMS side effects of {} → {}",
                    o.order_id,
                    o.status
                );
            }
            Some(Entity::Inventory(l)) if sinks.contains(&"shopify") => {
                let key = tributary_sinks::idempotency_key("shopify", &meta.event_id);
                let expected = u64::from(!invalid_level(&l.sku, &l.location));
                assert_eq!(
                    env.shop.idempotent_applies(&key),
                    expected,
                    "Shopify side effects of {} ({}@{})",
                    meta.event_id,
                    l.sku,
                    l.location
                );
            }
            _ => {}
        }
    }
    if sinks.contains(&"wms") {
        for (no, _) in w.released() {
            assert_eq!(
                env.wms().reference_creates(no),
                1,
                "WMS orders created for {no}"
            );
        }
    }
    if sinks.contains(&"shopify") {
        let history = env.shop.with_state(|s| s.inventory_history.clone());
        let mut last: HashMap<(u64, u64), u64> = HashMap::new();
        for change in &history {
            let event_id = change
                .reference_document_uri
                .as_deref()
                .and_then(|u| u.strip_prefix("tributary://event/"))
                .unwrap_or_default();
            let (_, version) = versions
                .get(event_id)
                .cloned()
                .unwrap_or_else(|| panic!("Shopify change without a known event: {change:?}"));
            let prev = last.insert((change.item, change.location), version);
            assert!(
                prev.is_none_or(|p| p < version),
                "level {}@{}: version {version} written after {prev:?}",
                change.item,
                change.location
            );
        }
    }
    if sinks.contains(&"salesforce") {
        let mut events_per: HashMap<(String, String), u64> = HashMap::new();
        for ev in events {
            let key = match &ev.entity {
                Some(Entity::Customer(c)) => ("Contact", c.customer_id.clone()),
                Some(Entity::Order(o)) => ("Order", o.order_id.clone()),
                Some(Entity::ProductReturn(r)) => ("Case", r.return_id.clone()),
                _ => continue,
            };
            *events_per.entry((key.0.into(), key.1)).or_default() += 1;
        }
        let mut position: HashMap<(String, String), usize> = HashMap::new();
        let mut changes: HashMap<(String, String), u64> = HashMap::new();
        for write in env.sf.writes() {
            let key = (write.object.clone(), write.external_id.clone());
            if write.changed {
                *changes.entry(key.clone()).or_default() += 1;
            }
            // Where in the ERP's history of this record the written value stands.
            let at = match write.object.as_str() {
                "Contact" => {
                    let id: i64 = write.external_id.parse().unwrap_or(0);
                    let email = text(&write.fields, "Email");
                    w.customers[&id].emails.iter().position(|e| *e == email)
                }
                "Order" => {
                    let status = text(&write.fields, "Status");
                    w.orders[&write.external_id]
                        .statuses
                        .iter()
                        .position(|s| sf_status(s) == status)
                }
                _ => Some(0),
            };
            let at =
                at.unwrap_or_else(|| panic!("{key:?}: a value the ERP never wrote: {write:?}"));
            let prev = position.insert(key.clone(), at);
            assert!(
                prev.is_none_or(|p| p <= at),
                "{key:?}: value #{at} written after #{prev:?}"
            );
        }
        for (key, n) in changes {
            let events = events_per.get(&key).copied().unwrap_or(0);
            assert!(
                n <= events,
                "{key:?}: {n} changing writes for {events} events"
            );
        }
    }
}

/// The dead letters are exactly the events the targets refuse, each parked once, with the
/// reason and the target's answer.
async fn check_dead_letters(env: &Env, w: &Workload, events: &[DomainEvent]) -> Result<usize> {
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for ev in events {
        let meta = ev.meta.clone().unwrap_or_default();
        let sink = match &ev.entity {
            Some(Entity::Order(o))
                if meta.event == "status_changed"
                    && o.status == "confirmed"
                    && w.orders.get(&o.order_id).is_some_and(|o| !o.valid) =>
            {
                "wms"
            }
            Some(Entity::Inventory(l)) if invalid_level(&l.sku, &l.location) => "shopify",
            Some(Entity::Customer(c))
                if c.customer_id
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| w.customers.get(&id))
                    .is_some_and(|c| !c.valid) =>
            {
                "salesforce"
            }
            _ => continue,
        };
        expected
            .entry(sink)
            .or_default()
            .insert(meta.event_id.clone());
    }
    let client = env.nats.connect().await?;
    let dlq = dead_letters(&client).await?;
    let mut parked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &dlq {
        let sink = header(d, "Tributary-Sink");
        let reason = header(d, "Tributary-Reason");
        let body = header(d, "Tributary-Target-Response");
        let event = DomainEvent::decode(d.payload.clone())?;
        assert_eq!(
            event.meta.as_ref().map(|m| m.event_id.clone()),
            Some(header(d, "Tributary-Event-Id")),
            "the dead letter carries its event"
        );
        assert!(header(d, "Tributary-Attempts")
            .parse::<u32>()
            .is_ok_and(|a| a >= 1));
        match (sink.as_str(), &event.entity) {
            ("wms", _) => {
                assert!(reason.contains("HTTP 422"), "{reason}");
                assert!(body.contains("positive quantity"), "{body}");
            }
            ("shopify", Some(Entity::Inventory(l))) if l.location == BAD_LOCATION => {
                assert!(reason.contains("userErrors"), "{reason}");
                assert!(body.contains("INVALID_LOCATION"), "{body}");
            }
            ("shopify", _) => {
                assert!(reason.contains("unknown SKU"), "{reason}");
                assert!(!body.is_empty());
            }
            ("salesforce", _) => {
                assert!(reason.contains("Contact INVALID_EMAIL_ADDRESS"), "{reason}");
                assert!(body.contains("invalid email address"), "{body}");
            }
            (other, _) => panic!("dead letter of an unknown sink {other}: {reason}"),
        }
        parked
            .entry(sink)
            .or_default()
            .push(header(d, "Tributary-Event-Id"));
    }
    for sink in SINKS {
        let want = expected.remove(sink).unwrap_or_default();
        let got = parked.remove(sink).unwrap_or_default();
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), got_set.len(), "{sink}: an event parked twice");
        assert_eq!(
            got_set.len(),
            want.len(),
            "{sink}: {} dead letters, expected {}",
            got_set.len(),
            want.len()
        );
        assert_eq!(
            got_set, want,
            "{sink}: dead letters differ from the refused events"
        );
    }
    Ok(dlq.len())
}

// ---- the tests ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_faults_across_three_targets() -> Result<()> {
    let started = Instant::now();
    let scale = Scale {
        customers: 2000,
        orders: 2000,
        max_lines: 5,
        cancel_share: 0.15,
        return_share: 0.15,
        skus: 100,
        stock_writes: 30,
        rounds: 10,
        invalid: true,
    };
    let w = Workload::generate(scale, 7);
    let opts = Options::new(scale);
    let env = Env::start(&opts).await?;
    // ~10 % transient failures per target, of every kind it has: server errors, requests
    // held past the client's timeout, answers lost after the write was applied, throttling.
    let held = Duration::from_millis(opts.request_timeout_ms + 500);
    for faults in [env.wms().faults(), env.shop.faults(), env.sf.faults()] {
        faults.fail_randomly(Fault::ServerError(503), 0.03);
        faults.fail_randomly(Fault::ServerError(500), 0.01);
        faults.fail_randomly(Fault::RateLimited, 0.03);
        faults.fail_randomly(Fault::Timeout(held), 0.015);
        faults.fail_randomly(Fault::TimeoutAfterApply(held), 0.015);
        // Batched targets make a few hundred requests: one of each kind up front, so that
        // every kind is seen whatever the dice say.
        for kind in [
            Fault::ServerError(503),
            Fault::RateLimited,
            Fault::Timeout(held),
            Fault::TimeoutAfterApply(held),
        ] {
            faults.fail_next(1, kind);
        }
    }
    let bridge = env.bridge().await?;
    // Sessions expire during the run: 401 INVALID_SESSION_ID, a new token, the call again.
    // Expired by the test every 400 ms rather than by a TTL, which a fast run can outlast.
    let sessions = env.sf.clone();
    let expiring = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            sessions.expire_tokens();
        }
    });
    let erp = env.pg.connect("erp").await?;
    for sql in &w.batches {
        erp.batch_execute(sql).await?;
    }
    let written = started.elapsed();
    wait_final(&env, &w, &SINKS, &bridge, Duration::from_secs(240)).await?;
    let applied = started.elapsed();

    eprintln!("ERP written after {written:?}, targets final after {applied:?}");
    expiring.abort();
    let client = env.nats.connect().await?;
    let events = retail_events(&client).await?;
    assert!(
        events.len() >= 20_000,
        "{} domain events, the scenario needs 20,000",
        events.len()
    );
    check_effects(&env, &w, &events, &SINKS);
    let parked = check_dead_letters(&env, &w, &events).await?;
    assert!(
        parked * 1000 >= events.len() * 5 && parked * 1000 <= events.len() * 20,
        "{parked} refused events of {}: about 1 % expected",
        events.len()
    );

    // The faults were there: about 10 % of each target's requests, every kind seen, lost
    // answers repeated and answered from the idempotency stores.
    for (name, log) in [
        ("wms", env.wms().requests().all()),
        ("shopify", env.shop.requests().all()),
        ("salesforce", env.sf.requests().all()),
    ] {
        let faulted: Vec<_> = log.iter().filter_map(|r| r.fault.clone()).collect();
        let share = faulted.len() as f64 / log.len() as f64;
        eprintln!(
            "{name}: {} requests, {:.1} % faulted",
            log.len(),
            share * 100.0
        );
        assert!(
            (0.06..0.14).contains(&share),
            "{name}: {share} of requests faulted"
        );
        for kind in [
            Fault::ServerError(503),
            Fault::RateLimited,
            Fault::Timeout(held),
            Fault::TimeoutAfterApply(held),
        ] {
            assert!(faulted.contains(&kind), "{name}: no {kind:?} injected");
        }
    }
    // Answers lost after the write: the retry got the stored answer (a replay, no write).
    let (mut wms_replays, mut shop_replays) = (0, 0);
    for ev in &events {
        let id = ev.meta.as_ref().map(|m| m.event_id.as_str()).unwrap_or("");
        wms_replays += env
            .wms()
            .key_replays(&tributary_sinks::idempotency_key("wms", id));
        shop_replays += env
            .shop
            .idempotent_replays(&tributary_sinks::idempotency_key("shopify", id));
    }
    assert!(
        env.sf.tokens_issued() >= 3,
        "{} Salesforce tokens: the sessions did not expire during the run",
        env.sf.tokens_issued()
    );
    assert!(
        wms_replays > 0,
        "no WMS request was answered from its idempotency store"
    );
    assert!(
        shop_replays > 0,
        "no Shopify request was answered from its idempotency store"
    );
    eprintln!("{} events, {parked} parked", events.len());
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_repeatedly_during_apply() -> Result<()> {
    let started = Instant::now();
    let scale = Scale {
        customers: 300,
        orders: 400,
        max_lines: 3,
        cancel_share: 0.2,
        return_share: 0.2,
        skus: 20,
        stock_writes: 16,
        rounds: 8,
        invalid: true,
    };
    let w = Workload::generate(scale, 11);
    let opts = Options::new(scale);
    let env = Env::start(&opts).await?;
    // Some answers lost after the write too, so that kills also land between a write, its
    // retry and the ack.
    let held = Duration::from_millis(opts.request_timeout_ms + 500);
    for faults in [env.wms().faults(), env.shop.faults(), env.sf.faults()] {
        faults.fail_randomly(Fault::TimeoutAfterApply(held), 0.02);
        faults.fail_randomly(Fault::ServerError(503), 0.02);
    }
    let js = jetstream::new(env.nats.connect().await?);
    let mut bridge = env.bridge().await?;
    let erp = env.pg.connect("erp").await?;
    let mut kills = 0;
    for sql in &w.batches {
        erp.batch_execute(sql).await?;
        if kills == 4 {
            continue;
        }
        // Kill once the restarted bridge is applying again (the targets see requests) while
        // a sink still has events in hand or pending. A round is about a hundred requests
        // (Salesforce batches its records), so a few suffice to show the sinks are at work.
        // A round that the sinks finish in fewer requests (the first: customers and orders
        // in Salesforce collections, stock in Shopify documents of many levels, nothing for
        // the WMS yet) leaves no backlog to kill into, and the next round is written.
        let before = env.requests();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut backlog = true;
        while env.requests() < before + 20 {
            if Instant::now() > deadline {
                bail!("the sinks did not apply after a restart\n{}", bridge.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if env.requests() > before {
                backlog = false;
                for sink in SINKS {
                    backlog |= !consumer_idle(&js, sink).await?;
                }
                if !backlog {
                    break;
                }
            }
        }
        if backlog {
            backlog = false;
            for sink in SINKS {
                backlog |= !consumer_idle(&js, sink).await?;
            }
        }
        if !backlog {
            continue;
        }
        bridge.kill9().await?;
        kills += 1;
        bridge = env.bridge().await?;
    }
    assert_eq!(kills, 4, "kills during apply");
    wait_final(&env, &w, &SINKS, &bridge, Duration::from_secs(120)).await?;
    let client = env.nats.connect().await?;
    let events = retail_events(&client).await?;
    check_effects(&env, &w, &events, &SINKS);
    // Refused events parked once each, however often they were offered again after a kill.
    assert!(check_dead_letters(&env, &w, &events).await? > 0);
    eprintln!(
        "{} events, {kills} kills during apply, {:?}",
        events.len(),
        started.elapsed()
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn salesforce_batches_within_its_limit_and_shopify_paces_its_bucket() -> Result<()> {
    let scale = Scale {
        customers: 1000,
        orders: 400,
        max_lines: 1,
        cancel_share: 0.0,
        return_share: 0.0,
        skus: 25,
        stock_writes: 20,
        rounds: 4,
        invalid: false,
    };
    let w = Workload::generate(scale, 13);
    // Salesforce records: a contact per customer event, an order per order event.
    let records = 2 * scale.customers + 2 * scale.orders;
    let limit = (records / 4) as u64;
    let ceiling = 0.9;
    let mut opts = Options::new(scale);
    opts.sinks = &["shopify", "salesforce"];
    opts.sf = SalesforceOptions {
        daily_limit: limit,
        ..SalesforceOptions::default()
    };
    opts.sf_lanes = 128;
    opts.sf_extra = format!("api_usage_ceiling = {ceiling}\nbatch_linger_ms = 100\n");
    // A small bucket refilled at 1000 points/s: 100 mutations/s, far below what 16 lanes
    // can send, so the sink spends most of the run at the bucket's limit.
    let (bucket, restore) = (200.0, 1000.0);
    opts.shop = ShopifyOptions {
        bucket_size: bucket,
        restore_rate: restore,
        // THROTTLED as HTTP 429 (Shopify answers either way): visible in the request log.
        throttled_status: 429,
        ..ShopifyOptions::default()
    };
    let env = Env::start(&opts).await?;
    let js = jetstream::new(env.nats.connect().await?);
    // Shopify answers 503 until every stock event is published, so that the sink then faces
    // a backlog and works through it at the bucket's pace, not at the source's.
    env.shop
        .faults()
        .fail_randomly(Fault::ServerError(503), 1.0);
    let bridge = env.bridge().await?;
    let erp = env.pg.connect("erp").await?;
    for sql in &w.batches {
        erp.batch_execute(sql).await?;
    }
    let stock_events = (scale.skus * LOCATIONS.len() * scale.stock_writes) as u64;
    wait_until(Duration::from_secs(120), async || {
        let info = js
            .get_stream("RETAIL")
            .await?
            .consumer_info(tributary_sinks::consumer_name("shopify"))
            .await;
        Ok(
            if info.is_ok_and(|i| i.num_pending + i.num_ack_pending as u64 >= stock_events) {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "the stock events were not published\n{}",
                    bridge.log()
                ))
            },
        )
    })
    .await?;
    env.shop.faults().clear();
    wait_final(&env, &w, opts.sinks, &bridge, Duration::from_secs(120)).await?;

    // Salesforce: all records written with fewer calls than the limit allows.
    let (used, _) = env.sf.api_usage();
    let calls: Vec<_> = env
        .sf
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.path.starts_with("/services/data/"))
        .collect();
    let sizes: Vec<usize> = calls
        .iter()
        .filter(|r| r.path.contains("/composite/sobjects/"))
        .filter_map(|r| r.json().and_then(|b| b["records"].as_array().map(Vec::len)))
        .collect();
    let max = sizes.iter().copied().max().unwrap_or(0);
    eprintln!(
        "Salesforce: {records} records in {used} API calls ({} collections, largest {max}) of a limit of {limit}",
        sizes.len()
    );
    assert!(
        used as f64 <= limit as f64 * ceiling,
        "{used} calls used of {limit} (ceiling {ceiling})"
    );
    assert!(
        calls.iter().all(|r| r.status != 403),
        "the org refused a call over its limit"
    );
    assert!(
        sizes.iter().all(|n| *n <= 200),
        "a collection over 200 records"
    );
    assert!(max >= 10, "collections of at most {max} records");

    // Shopify: the backlog went at the bucket's pace, without being throttled once the sink
    // knew the bucket (a few THROTTLED answers at start-up would be acceptable).
    let mutations: Vec<_> = env
        .shop
        .requests()
        .all()
        .into_iter()
        .filter(|r| {
            r.fault.is_none()
                && r.json().and_then(|b| {
                    b["query"]
                        .as_str()
                        .map(|q| q.contains("inventorySetQuantities"))
                }) == Some(true)
        })
        .collect();
    let span = match (mutations.first(), mutations.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at).unwrap_or_default(),
        _ => Duration::ZERO,
    };
    let throttled = env.shop.throttled_count();
    // When each THROTTLED answer came, counted from the first mutation.
    let start = mutations.first().map(|r| r.at);
    let throttled_at: Vec<Duration> = mutations
        .iter()
        .filter(|r| r.status == 429)
        .filter_map(|r| start.and_then(|s| r.at.duration_since(s).ok()))
        .collect();
    let n = env.shop.with_state(|s| s.inventory_history.len()) as f64;
    let bound = Duration::from_secs_f64((n * 10.0 - bucket) / restore);
    eprintln!(
        "Shopify: {n} inventory changes in {} requests over {span:?} ({:.0}/s; the bucket allows {:.0}/s, so at least {bound:?}), {throttled} THROTTLED",
        mutations.len(),
        n / span.as_secs_f64().max(0.001),
        restore / 10.0,
    );
    assert!(
        span >= bound.mul_f64(0.9),
        "the run was not bound by the bucket: {span:?} < {bound:?}"
    );
    assert!(
        throttled <= 3 && throttled_at.iter().all(|t| *t < Duration::from_secs(1)),
        "{throttled} THROTTLED answers, at {throttled_at:?} into the backlog"
    );
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_target_down_the_others_keep_flowing() -> Result<()> {
    let scale = Scale {
        customers: 300,
        orders: 400,
        max_lines: 3,
        cancel_share: 0.2,
        return_share: 0.2,
        skus: 20,
        stock_writes: 12,
        rounds: 6,
        invalid: false,
    };
    let w = Workload::generate(scale, 17);
    let mut env = Env::start(&Options::new(scale)).await?;
    let js = jetstream::new(env.nats.connect().await?);
    let bridge = env.bridge().await?;
    let erp = env.pg.connect("erp").await?;
    let (first, rest) = w.batches.split_at(w.batches.len() / 2);
    for sql in first {
        erp.batch_execute(sql).await?;
    }
    // The WMS goes down once it has taken orders.
    wait_until(Duration::from_secs(60), async || {
        Ok(if env.wms().orders().len() >= 20 {
            Check::Done(())
        } else {
            Check::Pending(format!("no WMS orders before the outage\n{}", bridge.log()))
        })
    })
    .await?;
    let down_at = Instant::now();
    let running = env.wms.take().context("the WMS is running")?;
    running.stop().await;
    let wms_orders_at_outage = env.wms().orders().len();
    let retail = async || -> Result<u64> {
        Ok(js
            .get_stream("RETAIL")
            .await?
            .info()
            .await?
            .state
            .last_sequence)
    };
    let published_at_outage = retail().await?;
    for sql in rest {
        erp.batch_execute(sql).await?;
    }
    // Meanwhile Shopify and Salesforce apply everything, the source publishes on.
    wait_final(
        &env,
        &w,
        &["shopify", "salesforce"],
        &bridge,
        Duration::from_secs(90),
    )
    .await?;
    let published = retail().await?;
    assert!(
        published > published_at_outage,
        "the source stopped publishing during the outage"
    );
    let wms_consumer = js
        .get_stream("RETAIL")
        .await?
        .consumer_info(tributary_sinks::consumer_name("wms"))
        .await?;
    assert!(
        wms_consumer.num_pending + wms_consumer.num_ack_pending as u64 > 0,
        "no WMS backlog during the outage"
    );
    assert_eq!(env.wms().orders().len(), wms_orders_at_outage);
    let others_done = down_at.elapsed();
    // The outage lasts 20 s at least (the WMS sink is deep in its backoff by then).
    let outage = Duration::from_secs(20);
    if let Some(rest) = outage.checked_sub(down_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    env.wms = Some(wms::resume(env.wms_handle.clone(), env.wms_addr).await?);
    let up_at = Instant::now();
    wait_final(&env, &w, &SINKS, &bridge, Duration::from_secs(90)).await?;
    eprintln!(
        "WMS down {:?}; Shopify and Salesforce final {others_done:?} into it; WMS backlog ({} events) drained {:?} after its return",
        up_at - down_at,
        wms_consumer.num_pending + wms_consumer.num_ack_pending as u64,
        up_at.elapsed()
    );
    let client = env.nats.connect().await?;
    let events = retail_events(&client).await?;
    check_effects(&env, &w, &events, &SINKS);
    assert_eq!(check_dead_letters(&env, &w, &events).await?, 0);
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

//! One sweep: the ERP's level of every SKU-location against each target holding it.
//!
//! ```text
//!  domain state (versions, levels) ─┐            ┌─ WMS   GET /inventory?page=…   (paced)
//!  sink records (applied versions) ─┼─ compare ◄─┤
//!  domain state again (versions)  ──┘            └─ Shopify location.inventoryLevels (paced)
//!      │ settled (sink at the domain's version, unchanged during the sweep) and different
//!      ▼
//!  drift event ─► O2C   [repair = true: repair event ─► RETAIL ─► the target's sink]
//! ```
//!
//! In flight is decided by versions only: a pair counts when the target's sink record holds
//! exactly the version the domain state had before the reads and still has after them.
//! Anything else (the sink behind, an event the domain stage stored during the sweep) is
//! left out of the drift and of the accuracy ratio, and never repaired.

use std::collections::{BTreeMap, BTreeSet};

use tracing::info;
use tributary_core::Fence;

use crate::erp::{self, ErpLevel};
use crate::pace::Pace;
use crate::report::{Drift, Report};
use crate::shared::{now_micros, Shared};
use crate::{metrics as m, ReconcileError};

const INVENTORY: &str = "inventory";

/// One SKU-location to compare at one target.
struct Check<'a> {
    erp: &'a ErpLevel,
    target: &'static str,
    /// What the target should show (its sink's quantity of the ERP's level).
    expected: i64,
    /// The version the target's sink record held before the reads.
    sink_version: u64,
}

pub async fn sweep(shared: &Shared, fence: &Fence) -> Result<Report, ReconcileError> {
    let started = now_micros();
    let before = erp::levels(&shared.js, &shared.domain_bucket).await?;
    let checks = checks(shared, &before).await?;
    let (wms, shop) = read_targets(shared, &checks).await?;
    let after = erp::levels(&shared.js, &shared.domain_bucket).await?;

    let (mut report, mut drifts) = compare(&checks, &wms, &shop, &after);
    report.started_micros = started;
    report.repair = shared.cfg.repair;
    for (drift, erp) in &mut drifts {
        // A WMS count the ERP state took from the WMS itself is not sent back to it (its
        // sink ignores such levels): the drift is reported, the WMS's own feed corrects it.
        let own_count = drift.target == "wms" && erp.level.reporting_system == "wms";
        if shared.cfg.repair && !own_count {
            fence.check()?;
            shared.publisher.repair(erp, drift, started).await?;
            drift.repair_sent = true;
            metrics::counter!(m::REPAIRS, "target" => drift.target.clone()).increment(1);
        }
        fence.check()?;
        shared.publisher.drift(drift, started).await?;
    }
    report.drifts = drifts.into_iter().map(|(d, _)| d).collect();
    report.finished_micros = now_micros();
    fence.check()?;
    shared.reports.save(&report).await?;
    m::record(&report);
    info!(
        pairs = report.pairs,
        compared = report.compared,
        drifting = report.drifts.len(),
        accuracy = report.accuracy_ratio,
        "inventory sweep done"
    );
    Ok(report)
}

/// The comparison of one sweep: counts and accuracy in a report (times and `repair` left
/// for the caller) and the drifting pairs with the ERP level each came from.
fn compare<'a>(
    checks: &[Check<'a>],
    wms: &Levels,
    shop: &BTreeMap<String, Levels>,
    after: &BTreeMap<String, ErpLevel>,
) -> (Report, Vec<(Drift, &'a ErpLevel)>) {
    let mut report = Report::default();
    // Per SKU-location: (every target settled, every settled target agrees).
    let mut pairs: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    let mut drifts = Vec::new();
    for c in checks {
        let sku = &c.erp.level.sku;
        let found = match c.target {
            "wms" => Some(wms.get(sku).copied().unwrap_or(0)),
            _ => shop
                .get(&c.erp.level.location)
                .and_then(|l| l.get(sku))
                .copied(),
        };
        // A SKU the storefront's catalogue does not have: its sink dead-letters the level.
        let Some(found) = found else {
            continue;
        };
        let counts = report.targets.entry(c.target.to_string()).or_default();
        let pair = pairs.entry(c.erp.key.as_str()).or_insert((true, true));
        let unchanged = after.get(&c.erp.key).map(|a| a.version) == Some(c.erp.version);
        if c.sink_version != c.erp.version || !unchanged {
            counts.in_flight += 1;
            pair.0 = false;
            continue;
        }
        counts.checked += 1;
        if found != c.expected {
            counts.drifting += 1;
            counts.units += found.abs_diff(c.expected);
            pair.1 = false;
            let drift = Drift {
                sku: sku.clone(),
                location: c.erp.level.location.clone(),
                entity_key: c.erp.key.clone(),
                target: c.target.to_string(),
                erp: c.expected,
                found,
                version: c.erp.version,
                repair_sent: false,
            };
            drifts.push((drift, c.erp));
        }
    }
    report.pairs = pairs.len() as u64;
    report.compared = pairs.values().filter(|(settled, _)| *settled).count() as u64;
    report.agreeing = pairs.values().filter(|(s, agree)| *s && *agree).count() as u64;
    report.accuracy_ratio = if report.compared == 0 {
        1.0
    } else {
        report.agreeing as f64 / report.compared as f64
    };
    (report, drifts)
}

/// The (SKU-location, target) pairs to compare, with the version each sink has applied.
async fn checks<'a>(
    shared: &Shared,
    erp: &'a BTreeMap<String, ErpLevel>,
) -> Result<Vec<Check<'a>>, ReconcileError> {
    let wms_location = shared.reader.wms_location();
    let shop_locations: BTreeSet<String> = shared.reader.shopify_locations().into_iter().collect();
    let mut out = Vec::new();
    for level in erp.values() {
        let location = level.level.location.as_str();
        let mut targets = Vec::new();
        if wms_location == Some(location) {
            targets.push(("wms", level.level.on_hand));
        }
        if shop_locations.contains(location) {
            targets.push(("shopify", shared.reader.shopify_quantity(&level.level)));
        }
        for (target, expected) in targets {
            let record = shared.sinks.get(target, INVENTORY, &level.key).await?;
            out.push(Check {
                erp: level,
                target,
                expected,
                sink_version: record.version,
            });
        }
    }
    Ok(out)
}

type Levels = BTreeMap<String, i64>;

/// The WMS's stock by SKU (every page) and Shopify's by location and SKU (the locations
/// compared), each target paced on its own.
async fn read_targets(
    shared: &Shared,
    checks: &[Check<'_>],
) -> Result<(Levels, BTreeMap<String, Levels>), ReconcileError> {
    let rps = shared.cfg.requests_per_second;
    let limit = shared.cfg.page_size;
    let mut wms = Levels::new();
    if checks.iter().any(|c| c.target == "wms") {
        let mut pace = Pace::new(rps);
        let mut page = Some(1);
        while let Some(p) = page {
            let (rows, next) = pace
                .read("wms", || shared.reader.wms_page(p, limit))
                .await?;
            wms.extend(rows);
            page = next;
        }
    }
    let mut shop = BTreeMap::new();
    let locations: BTreeSet<&str> = checks
        .iter()
        .filter(|c| c.target == "shopify")
        .map(|c| c.erp.level.location.as_str())
        .collect();
    let mut pace = Pace::new(rps);
    for location in locations {
        let levels = pace
            .read("shopify", || shared.reader.shopify_levels(location, limit))
            .await?;
        shop.insert(location.to_string(), levels);
    }
    Ok((wms, shop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_proto::retail::v1::{DomainEvent, InventoryLevel};

    fn erp(sku: &str, on_hand: i64, version: u64) -> ErpLevel {
        ErpLevel {
            key: format!("{sku}:DC1"),
            level: InventoryLevel {
                sku: sku.into(),
                location: "DC1".into(),
                on_hand,
                ..Default::default()
            },
            version,
            event: DomainEvent::default(),
        }
    }

    fn by_key(levels: &[ErpLevel]) -> BTreeMap<String, ErpLevel> {
        levels.iter().map(|l| (l.key.clone(), l.clone())).collect()
    }

    #[test]
    fn only_settled_pairs_count_and_versions_decide_what_is_settled() {
        let before = [
            erp("A", 10, 3),
            erp("B", 20, 5),
            erp("C", 30, 7),
            erp("D", 40, 2),
        ];
        let check = |i: usize, target: &'static str, sink_version: u64| Check {
            erp: &before[i],
            target,
            expected: before[i].level.on_hand,
            sink_version,
        };
        let checks = [
            // A: both sinks at the domain's version, the WMS off by 4: drift.
            check(0, "wms", 3),
            check(0, "shopify", 3),
            // B: the WMS sink one version behind (an event in flight) and off: not drift.
            check(1, "wms", 4),
            check(1, "shopify", 5),
            // C: the domain state moved on during the sweep: in flight at both targets.
            check(2, "wms", 7),
            check(2, "shopify", 7),
            // D: not in the storefront's catalogue: compared at the WMS only, agrees.
            check(3, "wms", 2),
            check(3, "shopify", 2),
        ];
        let wms: Levels = [("A", 14), ("B", 99), ("C", 1), ("D", 40)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let shop_dc1: Levels = [("A", 10), ("B", 20), ("C", 2)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let shop = BTreeMap::from([("DC1".to_string(), shop_dc1)]);
        let after = by_key(&[
            erp("A", 10, 3),
            erp("B", 20, 5),
            erp("C", 31, 8),
            erp("D", 40, 2),
        ]);

        let (report, drifts) = compare(&checks, &wms, &shop, &after);
        let found: Vec<(&str, &str, i64, i64)> = drifts
            .iter()
            .map(|(d, _)| (d.sku.as_str(), d.target.as_str(), d.erp, d.found))
            .collect();
        assert_eq!(found, [("A", "wms", 10, 14)]);
        assert_eq!(report.pairs, 4);
        // B and C have a target in flight; A disagrees; D agrees.
        assert_eq!((report.compared, report.agreeing), (2, 1));
        assert_eq!(report.accuracy_ratio, 0.5);
        let wms_counts = &report.targets["wms"];
        assert_eq!(
            (
                wms_counts.checked,
                wms_counts.drifting,
                wms_counts.in_flight,
                wms_counts.units
            ),
            (2, 1, 2, 4)
        );
        let shop_counts = &report.targets["shopify"];
        assert_eq!((shop_counts.checked, shop_counts.in_flight), (2, 1));
    }

    #[test]
    fn nothing_compared_is_full_accuracy() {
        let (report, drifts) = compare(&[], &Levels::new(), &BTreeMap::new(), &BTreeMap::new());
        assert!(drifts.is_empty());
        assert_eq!((report.pairs, report.accuracy_ratio), (0, 1.0));
    }
}

//! `tributary inventory drift`: the last inventory reconciliation sweep's result, as the
//! running bridge stored it (KV `reconcile.inventory.state_bucket`), or with `--sweep` the
//! result of one sweep run now by this command (docs/order-to-cash.md, "Inventory drift").

use std::path::PathBuf;

use tributary_core::Fence;
use tributary_reconcile::{Reconciler, Report, ReportStore};

use super::{micros_rfc3339, print_json, render_table, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// SKU-locations whose level in the WMS or the storefront differs from the ERP's, with
    /// the accuracy ratio, from the last sweep.
    Drift {
        /// Configuration file (the one `tributary run` uses).
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
        /// Run one sweep now (reads the targets' APIs, publishes its drift events, and
        /// repairs if the configuration says `repair = true`) and store it as the last.
        #[arg(long)]
        sweep: bool,
        /// `table` for a terminal, `json` for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Drift {
            config,
            sweep,
            format,
        } => drift(&config, sweep, format).await,
    }
}

async fn drift(config: &std::path::Path, sweep: bool, format: Format) -> anyhow::Result<()> {
    let config = tributary_config::load(config).map_err(crate::exit::config)?;
    let Some(cfg) = &config.reconcile.inventory else {
        anyhow::bail!("the configuration has no [reconcile.inventory] section");
    };
    let js = super::connect_jetstream(&config).await?;
    let report = if sweep {
        let Some(reconciler) = Reconciler::prepare(&config, js).await? else {
            anyhow::bail!("[reconcile.inventory] needs [sinks.wms] or [sinks.shopify]");
        };
        reconciler.sweep(&Fence::always()).await?
    } else {
        let store = ReportStore::existing(&js, &cfg.state_bucket).await?;
        match store {
            Some(store) => store.last().await?,
            None => None,
        }
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no sweep stored in KV bucket {}: the reconciliation has not run yet (or run this with --sweep)",
                cfg.state_bucket
            )
        })?
    };
    if format == Format::Json {
        return print_json(&report);
    }
    print_table(&report);
    Ok(())
}

fn print_table(report: &Report) {
    let at = micros_rfc3339(report.finished_micros).unwrap_or_default();
    println!(
        "sweep {at}: {} SKU-locations, {} compared, {} agree (accuracy {:.4}){}",
        report.pairs,
        report.compared,
        report.agreeing,
        report.accuracy_ratio,
        if report.repair { ", repairs sent" } else { "" }
    );
    let rows: Vec<Vec<String>> = report
        .targets
        .iter()
        .map(|(t, c)| {
            vec![
                t.clone(),
                c.checked.to_string(),
                c.drifting.to_string(),
                c.units.to_string(),
                c.in_flight.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &["TARGET", "CHECKED", "DRIFTING", "UNITS", "IN FLIGHT"],
            &rows
        )
    );
    if report.drifts.is_empty() {
        println!("no drift");
        return;
    }
    let rows: Vec<Vec<String>> = report
        .drifts
        .iter()
        .map(|d| {
            vec![
                d.sku.clone(),
                d.location.clone(),
                d.target.clone(),
                d.erp.to_string(),
                d.found.to_string(),
                (d.found - d.erp).to_string(),
                d.version.to_string(),
                if d.repair_sent { "sent" } else { "-" }.into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &["SKU", "LOCATION", "TARGET", "ERP", "FOUND", "DIFF", "VERSION", "REPAIR"],
            &rows
        )
    );
}

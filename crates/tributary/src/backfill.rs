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
) -> anyhow::Result<()> {
    let config = tributary_config::load(config)?;
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
    println!("the bridge logs \"backfill: done\" with the row count; tributary_backfill_rows_total counts rows as they are read");
    Ok(())
}

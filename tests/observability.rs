//! Observability: /healthz, /readyz and /metrics answer; counters carry source/table/op
//! labels; lag over budget is flagged in metrics and logs; logs can be JSON.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_lag_budget_and_json_logs() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(ORDERS_DDL).await?;
    db.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;
    let dir = tempfile::tempdir()?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace(
            "[log]\nlevel = \"info\"\n",
            "[log]\nlevel = \"info\"\nformat = \"json\"\n",
        )
        .replace(
            "status_interval_ms = 200\n",
            "status_interval_ms = 200\nlag_budget_bytes = 0\nlag_budget_secs = 0\n",
        );
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("http_listen = "))
        .map(|s| s.trim_matches('"').to_string())
        .expect("http_listen");
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;

    let (status, body) = http_get(&addr, "/healthz").await?;
    assert_eq!((status, body.trim()), (200, "ok"));
    wait_until(Duration::from_secs(30), async || {
        let (status, body) = http_get(&addr, "/readyz").await?;
        Ok(match status {
            200 => Check::Done(()),
            _ => Check::Pending(format!("never ready: {status} {body}")),
        })
    })
    .await?;

    orders_workload(&db, 2_000, 7, 1).await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 2_000, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, metrics) = http_get(&addr, "/metrics").await?;
    assert_eq!(status, 200);
    for needle in [
        "tributary_source_changes_total{source=\"erp\",table=\"public.orders\",op=\"insert\"}",
        "tributary_source_published_messages_total{source=\"erp\"}",
        "tributary_source_publish_ack_seconds_bucket",
        "tributary_source_replication_lag_bytes{source=\"erp\"}",
        "tributary_source_confirmed_lsn{source=\"erp\"}",
        "tributary_source_up{source=\"erp\"} 1",
        "tributary_source_slot_lag_over_budget{source=\"erp\",kind=\"seconds\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }
    let published: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tributary_source_published_messages_total{source=\"erp\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(published, 2_000.0);

    let log = bridge.log();
    assert!(
        log.contains("later than the lag budget"),
        "seconds budget warning:\n{log}"
    );
    let json_lines = log.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines > 3, "JSON log lines:\n{log}");
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
    }
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

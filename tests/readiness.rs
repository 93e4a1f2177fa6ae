//! `/readyz` names every configured component, and the one that is down with its reason: the
//! WMS emulator stops while an order waits for it, and `/readyz` (and `/status`) say that the
//! `sink wms` component's target fails while the sources, the domain stage and the WMS
//! webhook feed stay ready.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use tributary_sandbox::wms::{self, WmsOptions};

fn http_listen(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("http_listen = "))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// Each `component: …` line of a `/readyz` body.
fn lines_of(body: &str) -> Vec<&str> {
    body.lines().skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_component_that_is_down() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let target = wms::start(WmsOptions::default()).await?;
    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n[sinks.wms]\nbase_url = \"{}\"\napi_key = \"wms_sandbox\"\n\
         [sinks.wms.delivery]\nmin_backoff_ms = 50\nmax_backoff_ms = 500\nrequest_timeout_ms = 1000\n\
         [[wms]]\nlisten = \"127.0.0.1:0\"\nsecret = \"whsec_cmVhZGluZXNzLXRlc3Qtc2VjcmV0LTMyYnl0ZXM=\"\n",
        target.base_url()
    ));
    let addr = http_listen(&text);
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;

    // Healthy: 200, every configured component on its own line.
    let body = wait_until(Duration::from_secs(30), async || {
        let (status, body) = http_get(&addr, "/readyz").await?;
        Ok(match status {
            200 => Check::Done(body),
            _ => Check::Pending(format!("never ready: {status} {body}")),
        })
    })
    .await?;
    let mut lines = lines_of(&body);
    lines.sort();
    assert_eq!(
        lines,
        [
            "domain erp: ready",
            "domain pos: ready",
            "sink wms: ready",
            "source erp: ready",
            "source pos: ready",
            "webhook listener wms: ready",
            "wms mapper: ready"
        ],
        "{body}"
    );

    // The WMS goes away while an order is confirmed for it.
    let _stopped = target.stop().await;
    let erp = pg.connect("erp").await?;
    erp.batch_execute(
        "INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee');\
         BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-1', 1, 'placed', 10);\
         INSERT INTO order_lines VALUES ('SO-1', 1, 'SKU-1', 2, 5); COMMIT;\
         UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-1';",
    )
    .await?;
    let body = wait_until(Duration::from_secs(60), async || {
        let (status, body) = http_get(&addr, "/readyz").await?;
        Ok(match status {
            503 => Check::Done(body),
            _ => Check::Pending(format!("still ready: {body}")),
        })
    })
    .await?;
    let lines = lines_of(&body);
    assert!(
        lines[0].starts_with("sink wms: not ready: target wms failing: "),
        "{body}"
    );
    assert!(
        lines[1..].iter().all(|l| l.ends_with(": ready")),
        "only the sink is down: {body}"
    );

    // `/status` carries the same components, the sink with its reason.
    let (_, status) = http_get(&addr, "/status").await?;
    let status: Value = serde_json::from_str(&status)?;
    assert_eq!(status["bridge"]["ready"], false, "{status:#}");
    let sink = status["bridge"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["component"] == "sink wms")
        .cloned()
        .unwrap_or_default();
    assert_eq!(sink["ready"], false, "{status:#}");
    assert!(
        sink["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("target wms failing")),
        "{status:#}"
    );
    assert_eq!(status["sources"][0]["bridge"]["ready"], true, "{status:#}");
    let log = bridge.log();
    assert_eq!(bridge.stop().await?, 0, "{log}");
    Ok(())
}

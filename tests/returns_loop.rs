//! The return leg of the order-to-cash loop, with nothing but the systems' own actions:
//! an agent opens a return Case in Salesforce (Change Data Capture → `return.requested`),
//! the ERP inbox turns it into the ERP's return of a shipped order; the ERP's returns (that
//! one and one the ERP booked itself) are announced to the WMS as expected receipts; the
//! warehouse receives the goods (its `return.received` webhook → `[[wms]]` feed), which the
//! inbox hands to the ERP: stock back on hand, a credit memo, the return credited and refunded, the
//! order's payment state. Salesforce shows the final state on the agent's own Case (not a
//! second one) and on a Case for the ERP's return. A Case naming an unknown order is
//! dead-lettered with the ERP's reason; a replay of the inbox's events changes nothing.

#[path = "support/returns.rs"]
mod returns;
mod support;

use std::time::Duration;

use returns::{return_state, text, ReturnsWorld};
use serde_json::json;
use support::*;

async fn count(erp: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    Ok(erp.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_case_and_an_erp_return_end_refunded_in_every_system() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;
    let erp = pg.connect("erp").await?;
    let world = ReturnsWorld::start(&erp).await?;
    let (wms, sf) = (world.wms.handle(), world.sf.handle());
    let mut text_cfg = retail_config(&pg, &nats.url(), &sources)?;
    text_cfg.push_str(&world.config(&pg));
    let config = write_config(dir.path(), &text_cfg)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;

    // An agent opens a return Case; the ERP books a return of its own; a Case names an
    // order the ERP does not have.
    let case_id = world.open_case(&[
        ("Subject", "Mugs arrived chipped"),
        ("Type", "Return"),
        ("Origin", "Phone"),
        ("Order_External_Id__c", "SO-1"),
        ("SKU__c", "SKU-1"),
        ("Quantity__c", "2"),
        ("Description", "two of three chipped"),
    ]);
    let case_key = format!("SF-{case_id}");
    erp.batch_execute(
        "INSERT INTO returns (return_no, order_no, sku, quantity, reason, refund_amount) \
         VALUES ('RT-2', 'SO-2', 'SKU-2', 1, 'damaged', 25.00)",
    )
    .await?;
    world.open_case(&[
        ("Subject", "Wrong order"),
        ("Type", "Return"),
        ("Order_External_Id__c", "SO-404"),
        ("SKU__c", "SKU-1"),
        ("Quantity__c", "1"),
    ]);

    let client = nats.connect().await?;
    wait_until(Duration::from_secs(120), async || {
        let case_state = return_state(&erp, &case_key).await?;
        let erp_state = return_state(&erp, "RT-2").await?;
        let received = wms.returns().iter().filter(|r| r.status == "received").count();
        let sf_case = world.case_state(Some(&case_id), None);
        let sf_erp_case = world.case_state(None, Some("RT-2"));
        let dlq = dead_letters(&client).await?.len();
        let refunded = json!("refunded");
        Ok(
            if case_state == "refunded"
                && erp_state == "refunded"
                && received == 2
                && sf_case.as_ref() == Some(&refunded)
                && sf_erp_case.as_ref() == Some(&refunded)
                && dlq == 1
            {
                Check::Done(())
            } else {
                Check::Pending(format!(
                    "ERP returns: case {case_state:?}, RT-2 {erp_state:?}; WMS received {received}; \
                     Salesforce: agent's Case {sf_case:?}, RT-2 Case {sf_erp_case:?}; dead letters {dlq}\n\
                     bridge log:\n{}",
                    bridge.log()
                ))
            },
        )
    })
    .await?;
    wait_quiescent(&client, Duration::from_secs(60)).await?;

    // The ERP: one return per request, the goods back on hand, one credit memo each (2 of 3
    // mugs: 20.00), the orders' payment states.
    assert_eq!(count(&erp, "SELECT count(*) FROM returns").await?, 2);
    let memos = erp
        .query(
            "SELECT refund_ref, amount::text FROM credit_memos ORDER BY refund_ref",
            &[],
        )
        .await?;
    let memos: Vec<(String, String)> = memos.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        memos,
        vec![
            ("return:RT-2".to_string(), "25.00".to_string()),
            (format!("return:{case_key}"), "20.00".to_string()),
        ]
    );
    let on_hand = |sku: &str| {
        format!("SELECT on_hand::bigint FROM stock WHERE sku = '{sku}' AND location = 'DC1'")
    };
    assert_eq!(count(&erp, &on_hand("SKU-1")).await?, 102);
    assert_eq!(count(&erp, &on_hand("SKU-2")).await?, 101);
    assert_eq!(
        text(
            &erp,
            "SELECT payment_state FROM sales_orders WHERE order_no = 'SO-1'"
        )
        .await?,
        "partially_refunded"
    );
    assert_eq!(
        text(
            &erp,
            "SELECT payment_state FROM sales_orders WHERE order_no = 'SO-2'"
        )
        .await?,
        "refunded"
    );
    // The WMS: one expected receipt per return, each received once.
    for key in [case_key.as_str(), "RT-2"] {
        let rma = wms
            .return_by_reference(key)
            .ok_or_else(|| anyhow::anyhow!("no WMS return for {key}"))?;
        assert_eq!(rma.status, "received");
    }
    assert_eq!(wms.returns().len(), 2);
    // Salesforce: the agent's Case was updated in place, never duplicated; the ERP's return
    // has its own Case; the orders show the payment state.
    let cases = sf.records("Case");
    assert_eq!(cases.len(), 3, "cases: {cases:?}");
    assert!(
        !cases
            .iter()
            .any(|c| c.fields.get("External_Id__c") == Some(&json!(case_key))),
        "a second Case was created for the agent's return"
    );
    let agents = cases
        .iter()
        .find(|c| c.id == case_id)
        .ok_or_else(|| anyhow::anyhow!("the agent's Case is gone"))?;
    assert_eq!(
        agents.fields.get("Subject"),
        Some(&json!("Mugs arrived chipped"))
    );
    assert_eq!(agents.fields.get("Origin"), Some(&json!("Phone")));
    let so1 = sf
        .record_by("Order", "External_Id__c", "SO-1")
        .ok_or_else(|| anyhow::anyhow!("no Salesforce Order SO-1"))?;
    assert_eq!(
        so1.fields.get("Payment_State__c"),
        Some(&json!("partially_refunded"))
    );
    // The bad request: the ERP's reason, nothing booked.
    let dlq = dead_letters(&client).await?;
    assert_eq!(header(&dlq[0], "Tributary-Sink"), "erp");
    let reason = header(&dlq[0], "Tributary-Reason");
    assert!(reason.contains("unknown order SO-404"), "reason: {reason}");

    // A replay of every event into the inbox writes nothing new.
    let inbox_rows = count(&erp, "SELECT count(*) FROM tributary_inbox").await?;
    replay_sink_from_start(&client, &config, "erp", &bridge).await?;
    assert_eq!(
        count(&erp, "SELECT count(*) FROM tributary_inbox").await?,
        inbox_rows
    );
    assert_eq!(count(&erp, "SELECT count(*) FROM credit_memos").await?, 2);
    assert_eq!(count(&erp, "SELECT count(*) FROM returns").await?, 2);
    assert_eq!(count(&erp, &on_hand("SKU-1")).await?, 102);
    bridge.stop().await?;
    Ok(())
}

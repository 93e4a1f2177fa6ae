//! Salesforce sink: customers, orders (status, tracking) and returns written in the sample ERP
//! (config/retail/) reach the Salesforce emulator as Contacts, Orders and Cases upserted by
//! external id through sObject Collections — across an expired session (401
//! `INVALID_SESSION_ID` → new token, nothing lost), injected `REQUEST_LIMIT_EXCEEDED` and 503
//! (retried), with `Sforce-Call-Options: client=<id>` on every write; a record Salesforce
//! refuses is parked in `DLQ_SINKS` with the error body while the rest of its batch applies.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use support::*;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_sandbox::salesforce::{self, SObjectSchema, SalesforceOptions};
use tributary_sandbox::Fault;

fn field(sf: &salesforce::Salesforce, object: &str, ext: &str, name: &str) -> Option<String> {
    sf.record_by(object, "External_Id__c", ext)
        .and_then(|r| r.fields.get(name).cloned())
        .map(|v| match v {
            Value::String(s) => s,
            v => v.to_string(),
        })
}

/// Polls `done` until it holds or 90 s passed.
async fn wait_for(what: &str, bridge: &Bridge, mut done: impl FnMut() -> bool) -> Result<()> {
    wait_until(Duration::from_secs(90), async || {
        Ok(if done() {
            Check::Done(())
        } else {
            Check::Pending(format!(
                "{what}: not reached\nbridge log:\n{}",
                bridge.log()
            ))
        })
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_orders_and_returns_reach_salesforce() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    let dir = tempfile::tempdir()?;
    let sources = retail_sources(&pg).await?;

    let sf = salesforce::start(SalesforceOptions::default()).await?;
    // Contacts need a last name (as in a real org): an empty one is refused per record.
    sf.declare_object(SObjectSchema {
        name: "Contact".into(),
        fields: None,
        required: vec!["LastName".into()],
        external_ids: vec!["External_Id__c".into()],
    });
    let (client_id, client_secret) = SalesforceOptions::default().clients[0].clone();

    let mut text = retail_config(&pg, &nats.url(), &sources)?;
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.salesforce]\nbase_url = \"{}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
         batch_linger_ms = 50\norder_status_map = {{ confirmed = \"Activated\" }}\n\
         [sinks.salesforce.delivery]\nlanes = 8\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\nrequest_timeout_ms = 2000\n",
        sf.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
    let erp = pg.connect("erp").await?;

    // Wave 1: customers (one without a last name), orders, a shipment, a return.
    let mut sql = String::from("BEGIN;");
    for i in 1..=6 {
        sql.push_str(&format!(
            "INSERT INTO customers (id, email, first_name, last_name) VALUES ({i}, 'C{i}@Example.com', 'First{i}', 'Last{i}');"
        ));
    }
    sql.push_str("INSERT INTO customers (id, email, first_name, last_name) VALUES (99, 'x@example.com', 'No', '');");
    sql.push_str("COMMIT;");
    for i in 1..=6 {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-{i}', {i}, 'placed', {i}0);\
             INSERT INTO order_lines VALUES ('SO-{i}', 1, 'SKU-1', 1, {i}0); COMMIT;\
             UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'SO-{i}';"
        ));
    }
    sql.push_str(
        "INSERT INTO shipments VALUES ('SH-1', 'SO-1', 'DHL', 'TRK-0001', 'shipped', now());\
         INSERT INTO returns (return_no, order_no, sku, quantity, reason, refund_amount) VALUES ('R-1', 'SO-2', 'SKU-1', 1, 'damaged', 20);",
    );
    erp.batch_execute(&sql).await?;

    wait_for("wave 1 in Salesforce", &bridge, || {
        (1..=6).all(|i| {
            field(&sf, "Contact", &i.to_string(), "Email").as_deref()
                == Some(&format!("c{i}@example.com"))
                && field(&sf, "Order", &format!("SO-{i}"), "Status").as_deref() == Some("Activated")
        }) && field(&sf, "Order", "SO-1", "Tracking_Number__c").as_deref() == Some("TRK-0001")
            && field(&sf, "Case", "R-1", "Return_State__c").is_some()
    })
    .await?;
    assert_eq!(sf.tokens_issued(), 1, "one token for the whole first wave");

    // Mid-run: every session expires, and the next requests hit the daily limit and a 503.
    sf.expire_tokens();
    sf.faults().fail_next(2, Fault::RateLimited);
    sf.faults().fail_next(1, Fault::ServerError(503));
    erp.batch_execute(
        "UPDATE customers SET email = 'new1@example.com', last_name = 'Renamed' WHERE id = 1;\
         UPDATE sales_orders SET status = 'shipped' WHERE order_no = 'SO-3';\
         INSERT INTO shipments VALUES ('SH-3', 'SO-3', 'UPS', 'TRK-0003', 'shipped', now());\
         INSERT INTO returns (return_no, order_no, sku, quantity, reason, refund_amount) VALUES ('R-2', 'SO-4', 'SKU-1', 1, 'wrong size', 40);\
         INSERT INTO customers (id, email, first_name, last_name) VALUES (7, 'c7@example.com', 'First7', 'Last7');",
    )
    .await?;
    wait_for("wave 2 in Salesforce", &bridge, || {
        field(&sf, "Contact", "1", "Email").as_deref() == Some("new1@example.com")
            && field(&sf, "Contact", "1", "LastName").as_deref() == Some("Renamed")
            && field(&sf, "Contact", "7", "Email").is_some()
            && field(&sf, "Order", "SO-3", "Status").as_deref() == Some("shipped")
            && field(&sf, "Order", "SO-3", "Tracking_Number__c").as_deref() == Some("TRK-0003")
            && field(&sf, "Case", "R-2", "Return_State__c").is_some()
    })
    .await?;
    // Every consumer idle: what follows counts final state, not a moment of it.
    let quiet = nats.connect().await?;
    wait_quiescent(&quiet, Duration::from_secs(60)).await?;

    // Fields as mapped.
    assert_eq!(
        field(&sf, "Contact", "2", "FirstName").as_deref(),
        Some("First2")
    );
    assert_eq!(
        field(&sf, "Contact", "2", "LastName").as_deref(),
        Some("Last2")
    );
    assert_eq!(
        field(&sf, "Contact", "2", "HasOptedOutOfEmail").as_deref(),
        Some("true")
    );
    assert_eq!(
        field(&sf, "Order", "SO-2", "Customer_External_Id__c").as_deref(),
        Some("2")
    );
    assert_eq!(
        field(&sf, "Order", "SO-1", "Carrier__c").as_deref(),
        Some("DHL")
    );
    assert!(field(&sf, "Order", "SO-2", "EffectiveDate").is_some_and(|d| d.len() == 10));
    assert_eq!(
        field(&sf, "Case", "R-1", "Description").as_deref(),
        Some("damaged")
    );
    assert_eq!(
        field(&sf, "Case", "R-1", "Order_External_Id__c").as_deref(),
        Some("SO-2")
    );
    assert_eq!(field(&sf, "Case", "R-1", "Type").as_deref(), Some("Return"));
    assert_eq!(
        field(&sf, "Case", "R-2", "Return_State__c").as_deref(),
        Some("requested")
    );
    // One record per external id, none for the refused contact.
    assert_eq!(sf.records("Contact").len(), 7);
    assert_eq!(sf.records("Order").len(), 6);
    assert_eq!(sf.records("Case").len(), 2);
    assert!(sf.record_by("Contact", "External_Id__c", "99").is_none());

    // The expired session was renewed (401 seen on a data call, then a second token).
    let requests = sf.requests().all();
    assert!(
        sf.tokens_issued() >= 2,
        "tokens issued: {}",
        sf.tokens_issued()
    );
    assert!(
        requests
            .iter()
            .any(|r| r.status == 401 && r.path.starts_with("/services/data/")),
        "no 401 INVALID_SESSION_ID seen"
    );
    // The injected REQUEST_LIMIT_EXCEEDED and 503 were answered, and retried.
    let injected: Vec<_> = requests.iter().filter(|r| r.fault.is_some()).collect();
    assert_eq!(injected.len(), 3, "injected faults answered");
    assert!(injected.iter().any(|r| r.status == 403));
    assert!(injected.iter().any(|r| r.status == 503));
    // Batching: sObject Collections requests, at least one with several records.
    let collections: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/composite/sobjects/"))
        .collect();
    assert!(!collections.is_empty(), "no sObject Collections request");
    assert!(
        collections.iter().any(|r| r
            .json()
            .and_then(|b| b["records"].as_array().map(|a| a.len()))
            .is_some_and(|n| n > 1)),
        "no collection request with several records"
    );
    for r in requests
        .iter()
        .filter(|r| r.path.starts_with("/services/data/"))
    {
        assert_eq!(
            r.header("sforce-call-options"),
            Some(format!("client={client_id}").as_str()),
            "{} {}",
            r.method,
            r.path
        );
    }

    // Every write carries the client id in its change origin (echo suppression).
    let writes = sf.writes();
    assert!(!writes.is_empty());
    for w in &writes {
        assert_eq!(w.client.as_deref(), Some(client_id.as_str()), "{w:?}");
        assert!(
            w.change_origin.ends_with(&format!(";client={client_id}")),
            "{}",
            w.change_origin
        );
    }
    let contact1 = sf
        .record_by("Contact", "External_Id__c", "1")
        .context("contact 1")?;
    assert!(contact1
        .last_change_origin
        .is_some_and(|o| o.contains(&format!("client={client_id}"))));

    // The refused contact is parked with Salesforce's error body; nothing else is.
    let client = nats.connect().await?;
    let dlq = dead_letters(&client).await?;
    assert_eq!(dlq.len(), 1, "one dead letter");
    let d = &dlq[0];
    assert_eq!(d.subject.as_str(), "dlq.sink.salesforce");
    assert!(
        header(d, "Tributary-Reason").contains("REQUIRED_FIELD_MISSING"),
        "{}",
        header(d, "Tributary-Reason")
    );
    assert!(header(d, "Tributary-Target-Response").contains("LastName"));
    let parked = DomainEvent::decode(d.payload.clone())?;
    assert!(matches!(&parked.entity, Some(Entity::Customer(c)) if c.customer_id == "99"));

    let code = bridge.stop().await?;
    assert_eq!(code, 0);
    Ok(())
}

/// OAuth2 JWT bearer: the sink signs an RS256 assertion with the connected app's key (PEM file,
/// generated here with openssl) and the emulator verifies it with the public key; an expired
/// session is renewed with a fresh assertion. Customers go to person accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwt_bearer_tokens_and_person_accounts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("connected-app.pem");
    let public = dir.path().join("connected-app.der");
    let run = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl").args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let key_s = key.to_string_lossy().to_string();
    let public_s = public.to_string_lossy().to_string();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &key_s,
    ])?;
    run(&[
        "rsa",
        "-in",
        &key_s,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        &public_s,
    ])?;

    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let sql = std::fs::read_to_string(retail_dir().join("erp.sql"))?;
    pg.connect("erp").await?.batch_execute(&sql).await?;
    let mut spec = SourceSpec::new("erp", "erp");
    spec.publication = "tributary_erp".into();
    let client_id = "jwt-app".to_string();
    let sf = salesforce::start(SalesforceOptions {
        clients: vec![(client_id.clone(), "unused".into())],
        jwt_public_keys: vec![(client_id.clone(), std::fs::read(&public)?)],
        ..SalesforceOptions::default()
    })
    .await?;
    let mut text = config_text(&pg, &nats.url(), &[spec]);
    text.push('\n');
    let domain = std::fs::read_to_string(retail_dir().join("domain.toml"))?;
    text.push_str(domain.split("# ---- POS").next().context("ERP part")?);
    text.push_str(&format!(
        "\n[sinks]\n\
         [sinks.salesforce]\nbase_url = \"{base}\"\nclient_id = \"{client_id}\"\n\
         jwt_private_key = {{ file = \"{key_s}\" }}\njwt_username = \"integration@example.com\"\njwt_audience = \"{base}\"\n\
         customer_object = \"PersonAccount\"\nbatch_linger_ms = 20\n\
         [sinks.salesforce.delivery]\nlanes = 4\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n",
        base = sf.base_url()
    ));
    let config = write_config(dir.path(), &text)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let erp = pg.connect("erp").await?;
    erp.batch_execute(
        "INSERT INTO customers (id, email, first_name, last_name) VALUES (1, 'a@example.com', 'Ann', 'Lee'), (2, 'b@example.com', 'Bo', 'Ray');",
    )
    .await?;
    wait_for("person accounts", &bridge, || {
        field(&sf, "Account", "2", "PersonEmail").as_deref() == Some("b@example.com")
            && field(&sf, "Account", "1", "PersonEmail").as_deref() == Some("a@example.com")
    })
    .await?;
    assert_eq!(
        field(&sf, "Account", "1", "LastName").as_deref(),
        Some("Lee")
    );
    assert!(sf.records("Contact").is_empty(), "no contacts");
    let tokens = sf.tokens_issued();
    assert!(tokens >= 1);

    // The session expires: the next write gets 401, a new assertion, a new token.
    sf.expire_tokens();
    erp.batch_execute("UPDATE customers SET last_name = 'Lee-Smith' WHERE id = 1")
        .await?;
    wait_for("update after re-authentication", &bridge, || {
        field(&sf, "Account", "1", "LastName").as_deref() == Some("Lee-Smith")
    })
    .await?;
    assert!(sf.tokens_issued() > tokens);
    let client = nats.connect().await?;
    assert!(dead_letters(&client).await?.is_empty());
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

//! Domain events: row changes of the sample ERP and POS databases (config/retail/*.sql)
//! become canonical `tributary.retail.v1.DomainEvent`s on `retail.v1.<entity>.<event>`
//! through the mappings of config/retail/domain.toml, decoded here from JetStream as a
//! consumer would; unmappable changes go to the dead-letter stream; owned fields hold.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use futures::StreamExt;
use support::*;
use tokio::io::AsyncReadExt;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::retail::v1::{domain_event::Entity, DomainEvent};
use tributary_proto::Message as _;
use tributary_testkit::{NatsServer, PgCluster};

/// Servers with the sample schemas, and the bridge running the sample mappings.
struct Retail {
    pg: PgCluster,
    nats: NatsServer,
    bridge: Bridge,
    erp: tokio_postgres::Client,
    pos: tokio_postgres::Client,
    http: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Retail {
    async fn start() -> Result<Retail> {
        Self::start_with(tributary_testkit::NatsOptions::default()).await
    }

    async fn start_with(nats: tributary_testkit::NatsOptions) -> Result<Retail> {
        let pg = PgCluster::start().await?;
        let nats = NatsServer::start_with(nats).await?;
        let dir = tempfile::tempdir()?;
        let sources = retail_sources(&pg).await?;
        let mut text = config_text(&pg, &nats.url(), &sources);
        let http = text
            .lines()
            .next()
            .and_then(|l| l.split('"').nth(1))
            .context("http_listen")?
            .to_string();
        text.push('\n');
        text.push_str(&std::fs::read_to_string(retail_dir().join("domain.toml"))?);
        let config = write_config(dir.path(), &text)?;
        let bridge = Bridge::spawn(&config)?;
        wait_streaming(&pg, &["slot_erp", "slot_pos"], &bridge).await?;
        let erp = pg.connect("erp").await?;
        let pos = pg.connect("pos").await?;
        Ok(Retail {
            pg,
            nats,
            bridge,
            erp,
            pos,
            http,
            config,
            _dir: dir,
        })
    }

    /// Waits until `stream` holds `n` messages, then reads them all in order.
    async fn read(&self, stream: &str, n: u64) -> Result<Vec<jetstream::Message>> {
        let client = self.nats.connect().await?;
        wait_for_messages(&client, stream, n, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", self.bridge.log()))?;
        let js = jetstream::new(client);
        let consumer = js
            .get_stream(stream)
            .await?
            .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
            .await?;
        let mut messages = consumer.messages().await?;
        let mut out = Vec::new();
        while (out.len() as u64) < n {
            let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .context("reading timed out")?
                .context("stream ended")??;
            out.push(msg);
        }
        Ok(out)
    }

    /// Domain events until `until` holds for the decoded list (or 60 s pass).
    async fn events_until(&self, until: impl Fn(&[Decoded]) -> bool) -> Result<Vec<Decoded>> {
        let client = self.nats.connect().await?;
        let js = jetstream::new(client);
        wait_until(Duration::from_secs(60), async || {
            let count = match js.get_stream("RETAIL").await {
                Ok(mut s) => s.info().await?.state.messages,
                Err(_) => 0,
            };
            let events = if count > 0 {
                decode_all(self.read("RETAIL", count).await?)?
            } else {
                Vec::new()
            };
            if until(&events) {
                return Ok(Check::Done(events));
            }
            Ok(Check::Pending(format!(
                "domain events did not arrive; got {:#?}\nbridge log:\n{}",
                events
                    .iter()
                    .map(|e| (&e.subject, &e.event))
                    .collect::<Vec<_>>(),
                self.bridge.log()
            )))
        })
        .await
    }
}

struct Decoded {
    subject: String,
    msg_id: String,
    event: DomainEvent,
}

fn decode_all(messages: Vec<jetstream::Message>) -> Result<Vec<Decoded>> {
    messages
        .into_iter()
        .map(|m| {
            Ok(Decoded {
                subject: m.subject.to_string(),
                msg_id: m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
                event: DomainEvent::decode(m.payload.clone())?,
            })
        })
        .collect()
}

fn find<'a>(events: &'a [Decoded], subject: &str, key: &str) -> Vec<&'a Decoded> {
    events
        .iter()
        .filter(|d| {
            d.subject == subject && d.event.meta.as_ref().is_some_and(|m| m.entity_key == key)
        })
        .collect()
}

fn has(events: &[Decoded], subject: &str, key: &str, n: usize) -> bool {
    find(events, subject, key).len() >= n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_and_pos_changes_arrive_as_canonical_domain_events() -> Result<()> {
    let r = Retail::start().await?;
    r.erp
        .batch_execute(
            "INSERT INTO customers VALUES (7, 'Ann@Example.com', 'Ann', 'Lee', '+4411', true, '2026-01-02 03:04:05+00');
             INSERT INTO items VALUES ('SKU-1', 'Mug', 'A mug', true), ('SKU-2', 'Plate', NULL, true);
             INSERT INTO price_lists VALUES ('retail', 'EUR');
             INSERT INTO item_prices VALUES ('retail', 'SKU-1', 12.50, '2026-01-01');
             INSERT INTO stock VALUES ('SKU-1', 'DC1', 100, 5);
             BEGIN;
             INSERT INTO sales_orders (order_no, customer_id, status, channel, currency, total, tax, payment_state, placed_at)
                 VALUES ('SO-1', 7, 'placed', 'web', 'EUR', 37.50, 6.25, 'authorized', '2026-02-03 10:00:00+00');
             INSERT INTO order_lines VALUES ('SO-1', 1, 'SKU-1', 2, 12.50), ('SO-1', 2, 'SKU-2', 1.000, 12.50);
             COMMIT;
             UPDATE stock SET on_hand = on_hand - 2, reserved = 3 WHERE sku = 'SKU-1' AND location = 'DC1';
             UPDATE customers SET last_name = 'Lee-Smith' WHERE id = 7;
             UPDATE sales_orders SET status = 'shipped', payment_state = 'paid' WHERE order_no = 'SO-1';
             UPDATE sales_orders SET tax = 6.30 WHERE order_no = 'SO-1';
             INSERT INTO shipments VALUES ('SH-1', 'SO-1', 'DHL', 'TRK123', 'shipped', now());
             INSERT INTO returns VALUES ('R-1', 'SO-1', 'SKU-1', 1, 'damaged', 'requested', 12.50, now());",
        )
        .await?;
    r.pos
        .batch_execute(
            "INSERT INTO stores VALUES (3, 'Leeds');
             BEGIN;
             INSERT INTO sales VALUES (501, 3, NULL, 25.00, '2026-02-04 12:00:00+00');
             INSERT INTO sale_lines VALUES (501, 1, 'SKU-1', 2, 12.50);
             COMMIT;
             INSERT INTO store_stock VALUES (3, 'SKU-1', 40);
             UPDATE store_stock SET on_hand = 38 WHERE store_id = 3 AND sku = 'SKU-1';",
        )
        .await?;

    let events = r
        .events_until(|e| {
            has(e, "retail.v1.order.placed", "SO-1", 1)
                && has(e, "retail.v1.order.line_added", "SO-1", 2)
                && has(e, "retail.v1.order.status_changed", "SO-1", 1)
                && has(e, "retail.v1.inventory.level_changed", "SKU-1:DC1", 2)
                && has(e, "retail.v1.customer.updated", "7", 1)
                && has(e, "retail.v1.return.created", "R-1", 1)
                && has(e, "retail.v1.order.placed", "POS-501", 1)
                && has(e, "retail.v1.order.line_added", "POS-501", 1)
                && has(e, "retail.v1.inventory.level_changed", "SKU-1:store:3", 2)
                && has(e, "retail.v1.fulfillment.updated", "SO-1", 1)
                && has(e, "retail.v1.price.changed", "SKU-1@retail", 1)
        })
        .await?;

    // Every event: id = Nats-Msg-Id, traceable to its change, once.
    let mut ids = std::collections::HashSet::new();
    for d in &events {
        let meta = d.event.meta.as_ref().context("meta")?;
        assert_eq!(meta.event_id, d.msg_id);
        assert!(
            ids.insert(meta.event_id.clone()),
            "duplicate {}",
            meta.event_id
        );
        let src = meta.source_ref.as_ref().context("source_ref")?;
        assert_eq!(meta.event_id, format!("{}/{}", src.event_id, meta.mapping));
        assert!(src.commit_lsn > 0 && src.ordinal > 0);
        assert_eq!(
            d.subject,
            format!("retail.v1.{}.{}", meta.entity, meta.event)
        );
        assert!(d.event.entity.is_some(), "{}: no entity", d.subject);
    }

    // The order with its lines, in order, with the header's data on the lines.
    let placed = find(&events, "retail.v1.order.placed", "SO-1")[0];
    let meta = placed.event.meta.as_ref().context("meta")?;
    assert_eq!(
        (meta.system_of_record.as_str(), meta.entity_version),
        ("erp", 1)
    );
    assert_eq!(
        meta.source_ref.as_ref().map(|s| s.origin.as_str()),
        Some("public.sales_orders")
    );
    assert!(meta.event_time_micros > 0);
    let Some(Entity::Order(order)) = &placed.event.entity else {
        bail!("not an order")
    };
    assert_eq!(order.order_id, "SO-1");
    assert_eq!(order.customer_id, "7");
    assert_eq!(order.status, "placed");
    assert_eq!(order.channel, "web");
    assert_eq!(order.payment_state, "authorized");
    assert_eq!(
        order
            .total
            .as_ref()
            .map(|m| (m.amount.as_str(), m.currency.as_str())),
        Some(("37.50", "EUR"))
    );
    assert_eq!(order.tax.as_ref().map(|m| m.amount.as_str()), Some("6.25"));
    assert_eq!(order.placed_at_micros, 1_770_112_800_000_000);
    let lines = find(&events, "retail.v1.order.line_added", "SO-1");
    let mut versions = vec![meta.entity_version];
    for (i, d) in lines.iter().enumerate() {
        let Some(Entity::OrderLine(line)) = &d.event.entity else {
            bail!("not a line")
        };
        assert_eq!(line.line_id, format!("SO-1-{}", i + 1));
        assert_eq!(line.customer_id, "7", "from the order header");
        assert_eq!(line.channel, "web", "from the order header");
        assert_eq!(
            line.unit_price
                .as_ref()
                .map(|m| (m.amount.as_str(), m.currency.as_str())),
            Some(("12.50", "EUR"))
        );
        assert_eq!(
            line.quantity,
            if i == 0 { 2 } else { 1 },
            "numeric 1.000 counts as 1 unit"
        );
        versions.push(d.event.meta.as_ref().map(|m| m.entity_version).unwrap_or(0));
    }
    assert_eq!(
        lines[0].event.meta.as_ref().map(|m| m.entity_key.as_str()),
        Some("SO-1")
    );
    let status = find(&events, "retail.v1.order.status_changed", "SO-1");
    assert_eq!(
        status.len(),
        1,
        "the tax-only update changed no status: filtered out"
    );
    let Some(Entity::Order(o)) = &status[0].event.entity else {
        bail!("not an order")
    };
    assert_eq!(
        (o.status.as_str(), o.payment_state.as_str()),
        ("shipped", "paid")
    );
    versions.push(
        status[0]
            .event
            .meta
            .as_ref()
            .map(|m| m.entity_version)
            .unwrap_or(0),
    );
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "entity versions grow in stream order: {versions:?}"
    );

    // The stock movement.
    let stock = find(&events, "retail.v1.inventory.level_changed", "SKU-1:DC1");
    let Some(Entity::Inventory(level)) = &stock[1].event.entity else {
        bail!("not inventory")
    };
    assert_eq!(
        (
            level.sku.as_str(),
            level.location.as_str(),
            level.on_hand,
            level.reserved
        ),
        ("SKU-1", "DC1", 98, 3)
    );
    assert_eq!(level.reporting_system, "erp");

    // The customer update: the whole customer, lower-cased email, consent.
    let updated = find(&events, "retail.v1.customer.updated", "7");
    let Some(Entity::Customer(c)) = &updated[0].event.entity else {
        bail!("not a customer")
    };
    assert_eq!(
        (c.customer_id.as_str(), c.email.as_str()),
        ("7", "ann@example.com")
    );
    assert_eq!(
        (c.first_name.as_str(), c.last_name.as_str()),
        ("Ann", "Lee-Smith")
    );
    assert!(c.consent.as_ref().is_some_and(|x| x.email_marketing));

    // The return, with the order's currency from the state store.
    let ret = find(&events, "retail.v1.return.created", "R-1");
    let Some(Entity::ProductReturn(rt)) = &ret[0].event.entity else {
        bail!("not a return")
    };
    assert_eq!(
        (
            rt.order_id.as_str(),
            rt.sku.as_str(),
            rt.quantity,
            rt.reason.as_str(),
            rt.state.as_str()
        ),
        ("SO-1", "SKU-1", 1, "damaged", "requested")
    );
    assert_eq!(
        rt.refund_amount
            .as_ref()
            .map(|m| (m.amount.as_str(), m.currency.as_str())),
        Some(("12.50", "EUR"))
    );

    // The POS sale: an order of the store channel, with its line.
    let sale = find(&events, "retail.v1.order.placed", "POS-501")[0];
    assert_eq!(
        sale.event
            .meta
            .as_ref()
            .map(|m| m.system_of_record.as_str()),
        Some("pos")
    );
    let Some(Entity::Order(s)) = &sale.event.entity else {
        bail!("not an order")
    };
    assert_eq!(
        (
            s.order_id.as_str(),
            s.channel.as_str(),
            s.store_id.as_str(),
            s.status.as_str()
        ),
        ("POS-501", "store:3", "3", "completed")
    );
    assert_eq!(s.total.as_ref().map(|m| m.amount.as_str()), Some("25.00"));
    let store = find(
        &events,
        "retail.v1.inventory.level_changed",
        "SKU-1:store:3",
    );
    let Some(Entity::Inventory(level)) = &store[1].event.entity else {
        bail!("not inventory")
    };
    assert_eq!(
        (
            level.location.as_str(),
            level.on_hand,
            level.reporting_system.as_str()
        ),
        ("store:3", 38, "pos")
    );

    // Price with the list's currency; the shipment.
    let price = find(&events, "retail.v1.price.changed", "SKU-1@retail");
    let Some(Entity::Price(p)) = &price[0].event.entity else {
        bail!("not a price")
    };
    assert_eq!(
        p.price
            .as_ref()
            .map(|m| (m.amount.as_str(), m.currency.as_str())),
        Some(("12.50", "EUR"))
    );
    let ship = find(&events, "retail.v1.fulfillment.updated", "SO-1");
    let Some(Entity::Fulfillment(f)) = &ship[0].event.entity else {
        bail!("not a fulfillment")
    };
    assert_eq!(
        (
            f.carrier.as_str(),
            f.tracking_number.as_str(),
            f.status.as_str()
        ),
        ("DHL", "TRK123", "shipped")
    );

    // The descriptor set is published for run-time schema lookup.
    let js = jetstream::new(r.nats.connect().await?);
    let store = js.get_object_store("tributary_schemas").await?;
    let mut object = store.get("tributary.binpb").await?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await?;
    assert_eq!(bytes, tributary_proto::DESCRIPTOR_SET);

    assert_eq!(r.bridge.stop().await?, 0);
    drop(r.pg);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmappable_change_is_dead_lettered_and_later_events_flow() -> Result<()> {
    let r = Retail::start().await?;
    r.erp
        .batch_execute(
            "INSERT INTO customers VALUES (1, 'a@example.com', 'A', 'B', NULL, false, now());
             BEGIN;
             INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-9', 1, 'placed', 5);
             INSERT INTO order_lines VALUES ('SO-9', 1, 'SKU-W', 2.5, 2.00);
             COMMIT;
             BEGIN;
             INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-10', 1, 'placed', 2);
             INSERT INTO order_lines VALUES ('SO-10', 1, 'SKU-1', 1, 2.00);
             COMMIT;",
        )
        .await?;
    let events = r
        .events_until(|e| has(e, "retail.v1.order.line_added", "SO-10", 1))
        .await?;
    assert!(
        has(&events, "retail.v1.order.placed", "SO-9", 1),
        "the header still maps"
    );
    assert!(!has(&events, "retail.v1.order.line_added", "SO-9", 1));

    let dead = r.read("DLQ_DOMAIN", 1).await?;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.subject.as_str(), "dlq.domain.erp_order_line_added");
    let headers = d.headers.as_ref().context("headers")?;
    assert_eq!(
        headers.get("Tributary-Mapping").map(|v| v.as_str()),
        Some("erp_order_line_added")
    );
    let reason = headers
        .get("Tributary-Reason")
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    assert!(
        reason.contains("quantity") && reason.contains("2.500"),
        "{reason}"
    );
    let original = ChangeEvent::decode(d.payload.clone())?;
    assert_eq!(
        (original.table.as_str(), original.source.as_str()),
        ("order_lines", "erp")
    );
    assert_eq!(
        headers.get("Tributary-Source-Event-Id").map(|v| v.as_str()),
        Some(original.event_id.as_str())
    );

    let (_, metrics) = http_get(&r.http, "/metrics").await?;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "tributary_domain_dead_letters_total{mapping=\"erp_order_line_added\"} 1"
        )),
        "{metrics}"
    );
    assert_eq!(r.bridge.stop().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_authoritative_write_does_not_overwrite_owned_fields() -> Result<()> {
    let r = Retail::start().await?;
    r.erp
        .batch_execute("INSERT INTO customers VALUES (42, 'ann@erp.example', 'Ann', 'Lee', '+111', true, now())")
        .await?;
    r.events_until(|e| has(e, "retail.v1.customer.created", "42", 1))
        .await?;
    // The till captures a different email (the ERP owns it) and the loyalty data (the POS owns it).
    r.pos
        .batch_execute("INSERT INTO members VALUES (9, 42, 'ANN@till.example', '+222', 120)")
        .await?;
    let events = r
        .events_until(|e| has(e, "retail.v1.customer.updated", "42", 1))
        .await?;
    let pos = find(&events, "retail.v1.customer.updated", "42")[0];
    let meta = pos.event.meta.as_ref().context("meta")?;
    assert_eq!(
        (meta.system_of_record.as_str(), meta.entity_version),
        ("pos", 2)
    );
    let Some(Entity::Customer(c)) = &pos.event.entity else {
        bail!("not a customer")
    };
    assert_eq!(c.email, "ann@erp.example", "the ERP owns the email");
    assert_eq!(
        (c.first_name.as_str(), c.last_name.as_str()),
        ("Ann", "Lee"),
        "the rest of the customer is kept"
    );
    assert_eq!(
        (c.phone.as_str(), c.loyalty_points),
        ("+222", 120),
        "the POS owns phone and points"
    );

    // The owner changes the email; the ERP's phone does not overwrite the POS's.
    r.erp
        .batch_execute(
            "UPDATE customers SET email = 'ann@new.example', phone = '+333' WHERE id = 42",
        )
        .await?;
    let events = r
        .events_until(|e| has(e, "retail.v1.customer.updated", "42", 2))
        .await?;
    let erp = find(&events, "retail.v1.customer.updated", "42")[1];
    assert_eq!(
        erp.event
            .meta
            .as_ref()
            .map(|m| (m.system_of_record.as_str(), m.entity_version)),
        Some(("erp", 3))
    );
    let Some(Entity::Customer(c)) = &erp.event.entity else {
        bail!("not a customer")
    };
    assert_eq!(c.email, "ann@new.example");
    assert_eq!((c.phone.as_str(), c.loyalty_points), ("+222", 120));

    let (_, metrics) = http_get(&r.http, "/metrics").await?;
    assert!(
        metrics.contains("tributary_domain_owned_fields_kept_total{entity=\"customer\"}"),
        "{metrics}"
    );
    assert_eq!(r.bridge.stop().await?, 0);
    Ok(())
}

/// The example consumers (examples/rust, examples/python) read live events with their own
/// durable consumers and decode them; Python fetches the schemas from the object store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_consumers_decode_live_events() -> Result<()> {
    let r = Retail::start().await?;
    r.erp
        .batch_execute(
            "INSERT INTO customers VALUES (5, 'e@example.com', 'E', 'X', NULL, false, now());
             BEGIN;
             INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('SO-5', 5, 'placed', 9.99);
             INSERT INTO order_lines VALUES ('SO-5', 1, 'SKU-5', 3, 3.33);
             COMMIT;",
        )
        .await?;
    r.events_until(|e| has(e, "retail.v1.order.line_added", "SO-5", 1))
        .await?;

    // Rust: build the example like a user would, then run it.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = tokio::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "tributary",
            "--example",
            "domain_consumer",
        ])
        .status()
        .await?;
    assert!(status.success(), "building the Rust example");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tributary"))
        .parent()
        .context("target dir")?
        .join("examples/domain_consumer");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&exe)
            .args([r.nats.url().as_str(), "rust-example", "3"])
            .output(),
    )
    .await
    .context("the Rust example did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("retail.v1.customer.created key=5 version=1 system=erp"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "retail.v1.order.placed key=SO-5 version=1 system=erp order SO-5 status=placed"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "retail.v1.order.line_added key=SO-5 version=2 system=erp line SO-5-1 sku=SKU-5 qty=3"
        ),
        "{stdout}"
    );

    // Python: needs nats-py and protobuf (scripts/test.sh installs them and sets
    // TRIBUTARY_REQUIRE_PYTHON so that CI cannot skip this part).
    let has_python = tokio::process::Command::new("python3")
        .args(["-c", "import nats, google.protobuf"])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !has_python {
        assert!(
            std::env::var_os("TRIBUTARY_REQUIRE_PYTHON").is_none(),
            "python3 with nats-py and protobuf is required"
        );
        eprintln!("skipping the Python example: python3 with nats-py and protobuf not found");
        return Ok(());
    }
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/domain_consumer.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(&script)
            .args([
                "--server",
                r.nats.url().as_str(),
                "--durable",
                "python-example",
                "--count",
                "3",
                "--timeout",
                "20",
            ])
            .output(),
    )
    .await
    .context("the Python example did not finish")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("JSON lines: {stdout}"))?;
    assert_eq!(lines.len(), 3, "{stdout}");
    let placed = lines
        .iter()
        .find(|l| l["subject"] == "retail.v1.order.placed")
        .with_context(|| format!("no order.placed in {stdout}"))?;
    assert_eq!(placed["entity"], "order");
    assert_eq!(placed["entity_key"], "SO-5");
    assert_eq!(placed["fields"]["orderId"], "SO-5");
    assert_eq!(placed["fields"]["customerId"], "5");
    assert_eq!(placed["fields"]["total"]["amount"], "9.99");
    let line = lines
        .iter()
        .find(|l| l["subject"] == "retail.v1.order.line_added")
        .with_context(|| format!("no order.line_added in {stdout}"))?;
    assert_eq!(
        line["fields"]["quantity"], "3",
        "int64 is a string in protobuf JSON"
    );
    assert_eq!(r.bridge.stop().await?, 0);
    Ok(())
}

/// kill -9 of the bridge while the domain stage works: after the restart every change is
/// mapped exactly once (no event lost, none twice) and entity versions still only grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_events_survive_kill9_exactly_once() -> Result<()> {
    let mut r = Retail::start().await?;
    const ORDERS: usize = 150;
    let mut sql = String::from(
        "INSERT INTO customers VALUES (1, 'k@example.com', 'K', 'L', NULL, false, now());",
    );
    for i in 0..ORDERS {
        sql.push_str(&format!(
            "BEGIN; INSERT INTO sales_orders (order_no, customer_id, status, total) VALUES ('K-{i}', 1, 'placed', 10);
             INSERT INTO order_lines VALUES ('K-{i}', 1, 'SKU-1', 1, 5), ('K-{i}', 2, 'SKU-2', 1, 5);
             UPDATE sales_orders SET status = 'confirmed' WHERE order_no = 'K-{i}'; COMMIT;"
        ));
    }
    r.erp.batch_execute(&sql).await?;
    // 1 customer + per order: placed, 2 lines, status_changed.
    let expected = 1 + ORDERS * 4;
    let client = r.nats.connect().await?;
    wait_for_messages(
        &client,
        "RETAIL",
        (expected / 4) as u64,
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nbridge log:\n{}", r.bridge.log()))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r.bridge.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    r.bridge.child.wait().await?;
    let at_kill = jetstream::new(client.clone())
        .get_stream("RETAIL")
        .await?
        .info()
        .await?
        .state
        .messages;
    eprintln!("killed the bridge with {at_kill} of {expected} domain events published");
    r.bridge = Bridge::spawn(&r.config)?;
    wait_streaming(&r.pg, &["slot_erp", "slot_pos"], &r.bridge).await?;

    r.events_until(|e| e.len() >= expected).await?;
    // A sentinel change made now is mapped after every change before it (one task per source,
    // in stream order): once its event is in, a duplicate of an earlier change would be too.
    r.erp
        .batch_execute(
            "INSERT INTO customers VALUES (9999, 's@example.com', 'S', 'L', NULL, false, now())",
        )
        .await?;
    let mut events = r
        .events_until(|e| has(e, "retail.v1.customer.created", "9999", 1))
        .await?;
    events.retain(|d| d.event.meta.as_ref().is_none_or(|m| m.entity_key != "9999"));
    assert_eq!(events.len(), expected, "every change mapped exactly once");
    let mut ids = std::collections::HashSet::new();
    let mut versions: std::collections::HashMap<String, u64> = Default::default();
    for d in &events {
        let meta = d.event.meta.as_ref().context("meta")?;
        assert!(
            ids.insert(meta.event_id.clone()),
            "duplicate {}",
            meta.event_id
        );
        let last = versions.entry(meta.entity_key.clone()).or_default();
        assert!(
            meta.entity_version > *last,
            "{}: version {} after {}",
            meta.entity_key,
            meta.entity_version,
            last
        );
        *last = meta.entity_version;
    }
    for i in 0..ORDERS {
        assert_eq!(
            versions.get(&format!("K-{i}")),
            Some(&4),
            "K-{i}: placed, 2 lines, status"
        );
    }
    assert_eq!(r.bridge.stop().await?, 0);
    Ok(())
}

/// The bridge running with customer 1 created and mapped.
async fn customer_one() -> Result<Retail> {
    let r = Retail::start().await?;
    r.erp
        .batch_execute(
            "INSERT INTO customers VALUES (1, 'c@example.com', 'C', 'D', NULL, false, now());",
        )
        .await?;
    r.events_until(|e| has(e, "retail.v1.customer.created", "1", 1))
        .await?;
    Ok(r)
}

/// Waits for the bridge to stop by itself with a non-zero exit; returns its `error:` line.
async fn stopped_on_error(bridge: &mut Bridge) -> Result<String> {
    let status = tokio::time::timeout(Duration::from_secs(60), bridge.child.wait())
        .await
        .with_context(|| format!("the bridge did not stop:\n{}", bridge.log()))??;
    let log = bridge.log();
    assert_ne!(status.code(), Some(0), "{log}");
    log.lines()
        .find(|l| l.starts_with("error: "))
        .map(str::to_string)
        .with_context(|| format!("an error line:\n{log}"))
}

/// Corrupt entity state is fatal: a restart would read it again. The bridge stops (non-zero
/// exit) with a message naming the component and the key, instead of retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entity_state_stops_the_bridge_naming_the_component() -> Result<()> {
    let r = customer_one().await?;
    // A fresh process has no cached state: it reads the record from KV.
    assert_eq!(r.bridge.stop().await?, 0);
    let client = r.nats.connect().await?;
    let kv = jetstream::new(client)
        .get_key_value("tributary_domain")
        .await?;
    let mut keys = kv.keys().await?;
    let mut corrupted = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key?;
        if key.starts_with("entity.customer.") {
            kv.put(&key, "not json {".into()).await?;
            corrupted.push(key);
        }
    }
    assert!(!corrupted.is_empty(), "the customer's state is in KV");
    let mut bridge = Bridge::spawn(&r.config)?;
    wait_streaming(&r.pg, &["slot_erp", "slot_pos"], &bridge).await?;
    r.erp
        .batch_execute("UPDATE customers SET first_name = 'E' WHERE id = 1")
        .await?;
    let error_line = stopped_on_error(&mut bridge).await?;
    assert!(
        error_line.contains("domain erp stopped") && error_line.contains("unreadable"),
        "names the component and the problem: {error_line}"
    );
    assert!(
        corrupted.iter().any(|k| error_line.contains(k.as_str())),
        "names the key: {error_line}"
    );
    Ok(())
}

/// A mapping that reads a column the table no longer has (a migration renamed it) is invalid
/// for every change of the table: the bridge stops (non-zero exit) naming the component, the
/// mapping and the column, instead of dead-lettering each change. The change is not acked:
/// once the mapping is fixed, a restarted bridge maps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_reading_a_renamed_column_stops_the_bridge_naming_the_component() -> Result<()> {
    let mut r = customer_one().await?;
    r.erp
        .batch_execute(
            "ALTER TABLE customers RENAME COLUMN first_name TO given_name;
             INSERT INTO customers (id, email, given_name, last_name) VALUES (2, 'e@example.com', 'E', 'F');",
        )
        .await?;
    let error_line = stopped_on_error(&mut r.bridge).await?;
    assert!(
        error_line.contains("domain erp stopped")
            && error_line.contains("erp_customer_created")
            && error_line.contains("`first_name`"),
        "names the component, the mapping and the column: {error_line}"
    );
    let js = jetstream::new(r.nats.connect().await?);
    let dead = match js.get_stream("DLQ_DOMAIN").await {
        Ok(mut s) => s.info().await?.state.messages,
        Err(_) => 0,
    };
    assert_eq!(dead, 0, "not dead-lettered change by change");

    let text = std::fs::read_to_string(&r.config)?.replace(
        "\"customer.first_name\" = \"first_name\"",
        "\"customer.first_name\" = \"given_name\"",
    );
    std::fs::write(&r.config, text)?;
    r.bridge = Bridge::spawn(&r.config)?;
    let events = r
        .events_until(|e| has(e, "retail.v1.customer.created", "2", 1))
        .await?;
    let created = find(&events, "retail.v1.customer.created", "2");
    let Some(Entity::Customer(c)) = &created[0].event.entity else {
        bail!("a customer event: {:?}", created[0].event);
    };
    assert_eq!(c.first_name, "E", "mapped from the renamed column");
    assert_eq!(r.bridge.stop().await?, 0);
    Ok(())
}

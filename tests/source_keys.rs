//! `key_columns` names the row's key whatever the REPLICA IDENTITY: the primary key under
//! FULL (where pgoutput flags every column), the replica identity index under USING INDEX,
//! and nothing for a table with neither — the same for snapshot reads, inserts, updates and
//! deletes, and again after ALTER TABLE.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::Context as _;
use support::*;
use tributary_proto::cdc::v1::{ChangeEvent, Operation};

const DDL: &str = "
CREATE TABLE full_pk (id int PRIMARY KEY, a text, b int);
ALTER TABLE full_pk REPLICA IDENTITY FULL;
CREATE TABLE by_index (code text NOT NULL, a text, n int);
CREATE UNIQUE INDEX by_index_code ON by_index (code);
ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code;
CREATE TABLE keyless (a text, b int NOT NULL);
ALTER TABLE keyless REPLICA IDENTITY FULL;
INSERT INTO full_pk VALUES (1, 'snap', 1);
INSERT INTO by_index VALUES ('S', 'snap', 1);
INSERT INTO keyless VALUES ('snap', 1);
CREATE PUBLICATION pub_erp FOR TABLE full_pk, by_index, keyless;
";

fn keys(ev: &ChangeEvent) -> Vec<&str> {
    ev.key_columns.iter().map(String::as_str).collect()
}

/// The events of `table`, with the key columns each carries; the column flags must agree.
fn events_of<'a>(rx: &'a [Received], table: &str) -> Vec<(Operation, Vec<&'a str>)> {
    rx.iter()
        .map(|r| &r.event)
        .filter(|e| e.table == table)
        .map(|e| {
            let flagged: Vec<&str> = e
                .columns
                .iter()
                .filter(|c| c.key)
                .map(|c| c.name.as_str())
                .collect();
            assert_eq!(flagged, keys(e), "column key flags = key_columns: {e:?}");
            (e.op(), keys(e))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_columns_are_the_key_under_every_replica_identity() -> Result<()> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(DDL).await?;
    let dir = tempfile::tempdir()?;
    let config = erp_config(dir.path(), &pg, &nats)?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let client = nats.connect().await?;
    // The snapshot's three reads first, so that the changes below come after them.
    wait_for_messages(&client, "CDC_ERP", 3, Duration::from_secs(60))
        .await
        .with_context(|| bridge.log())?;
    db.batch_execute(
        "INSERT INTO full_pk VALUES (2, 'x', 2); UPDATE full_pk SET a = 'y' WHERE id = 2;
         DELETE FROM full_pk WHERE id = 2;
         INSERT INTO by_index VALUES ('T', 'x', 2); UPDATE by_index SET a = 'y' WHERE code = 'T';
         DELETE FROM by_index WHERE code = 'T';
         INSERT INTO keyless VALUES ('x', 2); UPDATE keyless SET a = 'y' WHERE b = 2;
         DELETE FROM keyless WHERE b = 2;",
    )
    .await?;
    wait_for_messages(&client, "CDC_ERP", 12, Duration::from_secs(60))
        .await
        .with_context(|| bridge.log())?;
    // Schema changes: PostgreSQL describes the tables again and the key is looked up again.
    db.batch_execute(
        "ALTER TABLE full_pk ADD COLUMN c int; UPDATE full_pk SET c = 1 WHERE id = 1;
         ALTER TABLE keyless ADD PRIMARY KEY (b); UPDATE keyless SET a = 'z' WHERE b = 1;",
    )
    .await?;
    wait_for_messages(&client, "CDC_ERP", 14, Duration::from_secs(60))
        .await
        .with_context(|| bridge.log())?;
    let rx = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(rx.len(), 14, "{:#?}", bridge.log());

    use Operation::{Delete, Insert, Read, Update};
    assert_eq!(
        events_of(&rx, "full_pk"),
        vec![
            (Read, vec!["id"]),
            (Insert, vec!["id"]),
            (Update, vec!["id"]),
            (Delete, vec!["id"]),
            (Update, vec!["id"]),
        ],
        "REPLICA IDENTITY FULL with a primary key: the primary key"
    );
    assert_eq!(
        events_of(&rx, "by_index"),
        vec![
            (Read, vec!["code"]),
            (Insert, vec!["code"]),
            (Update, vec!["code"]),
            (Delete, vec!["code"]),
        ],
        "REPLICA IDENTITY USING INDEX: the index's columns"
    );
    let none: Vec<&str> = Vec::new();
    assert_eq!(
        events_of(&rx, "keyless"),
        vec![
            (Read, none.clone()),
            (Insert, none.clone()),
            (Update, none.clone()),
            (Delete, none),
            (Update, vec!["b"]),
        ],
        "no key while the table has none; its new primary key after ALTER TABLE"
    );
    // The FULL tables still carry their whole old row.
    let update = rx
        .iter()
        .map(|r| &r.event)
        .find(|e| e.table == "full_pk" && e.op() == Update)
        .expect("an update");
    assert!(!update.before_is_key_only && update.before.is_some());
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

//! Values and shapes: every supported type round-trips (NULLs, NaN, ±Infinity, arrays,
//! 40-digit numerics, negative intervals, a non-UTC writer), unchanged TOAST is marked
//! unchanged, and ALTER TABLE mid-stream changes the shape of later events.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use tributary_proto::cdc::v1::{
    value::Kind, Array, ChangeEvent, Interval, Operation, Other, Value,
};

fn col<'a>(ev: &'a ChangeEvent, row: &'a tributary_proto::cdc::v1::Row, name: &str) -> &'a Value {
    let i = ev
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    &row.values[i]
}

fn kind<'a>(ev: &'a ChangeEvent, name: &str) -> &'a Kind {
    let after = ev.after.as_ref().expect("after image");
    col(ev, after, name).kind.as_ref().expect("a value")
}

fn arr(elements: Vec<Kind>) -> Kind {
    let n = elements.len() as u32;
    Kind::Array(Array {
        elements: elements
            .into_iter()
            .map(|k| Value { kind: Some(k) })
            .collect(),
        dimensions: vec![n],
    })
}

async fn start_with(
    ddl: &str,
    tables: &str,
) -> Result<(
    tributary_testkit::PgCluster,
    tributary_testkit::NatsServer,
    tempfile::TempDir,
    Bridge,
)> {
    let (pg, nats) = start_servers().await?;
    pg.create_database("erp").await?;
    let c = pg.connect("erp").await?;
    c.batch_execute(ddl).await?;
    c.batch_execute(&format!("CREATE PUBLICATION pub_erp FOR TABLE {tables}"))
        .await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]),
    )?;
    let bridge = Bridge::spawn(&config)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    Ok((pg, nats, dir, bridge))
}

const TYPED_DDL: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE typed (
    id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, n numeric, f4 float4, f8 float8,
    t text, vc varchar(20), bc char(5), u uuid, d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz,
    iv interval, j json, jb jsonb, by bytea, ai int4[], at text[], an numeric[], e mood, ae mood[], p point
);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips() -> Result<()> {
    let (pg, nats, _dir, bridge) = start_with(TYPED_DDL, "typed").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(
        "SET TimeZone = 'America/New_York';
         INSERT INTO typed (id) VALUES (1);
         INSERT INTO typed VALUES (2, true, -32768, 2147483647, -9223372036854775808,
            1234567890123456789012345678901234567890, 'NaN', '-Infinity',
            'héllo \"quoted\" ''single''', 'varchar', 'ab', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
            '2024-02-29', '24:00:00', '12:34:56.789+05:30', '2024-03-10 01:30:00', '2024-03-10 01:30:00.123456',
            '-1 year -2 mons +3 days -04:05:06.5', '{\"a\": [1, 2]}', '{\"b\": null}', '\\x00ff10',
            '{1,NULL,3}', '{\"a b\",\"c\\\"d\",NULL,\"NULL\"}', '{-0.000000000000000000001,NaN}', 'happy', '{sad,ok}', '(1.5,-2)');
         INSERT INTO typed (id, n, f4, f8, d, ts, tstz) VALUES (3, '-12345678901234567890.12345678901234567890', '-Infinity', 'Infinity', 'infinity', '-infinity', 'infinity');
         INSERT INTO typed (id, f8, d) VALUES (4, 'NaN', '0044-03-15 BC');",
    )
    .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 4, Duration::from_secs(60)).await?;
    let rx = read_stream(&client, "CDC_ERP").await?;
    assert_eq!(rx.len(), 4);
    let (nulls, full, special, bc) = (&rx[0].event, &rx[1].event, &rx[2].event, &rx[3].event);

    // Every column of row 1 but the key is NULL, never dropped.
    let after = nulls.after.as_ref().expect("after");
    assert_eq!(after.values.len(), nulls.columns.len());
    assert!(after.values[1..]
        .iter()
        .all(|v| matches!(v.kind, Some(Kind::Null(_)))));
    let types: Vec<&str> = nulls.columns.iter().map(|c| c.type_name.as_str()).collect();
    assert_eq!(
        &types[..6],
        &["int4", "bool", "int2", "int4", "int8", "numeric"]
    );
    assert_eq!(nulls.key_columns, vec!["id".to_string()]);

    assert_eq!(kind(full, "b"), &Kind::Bool(true));
    assert_eq!(kind(full, "i2"), &Kind::Int(-32768));
    assert_eq!(kind(full, "i4"), &Kind::Int(2147483647));
    assert_eq!(kind(full, "i8"), &Kind::Int(i64::MIN));
    assert_eq!(
        kind(full, "n"),
        &Kind::Decimal("1234567890123456789012345678901234567890".into())
    );
    assert!(matches!(kind(full, "f4"), Kind::Float(f) if f.is_nan()));
    assert_eq!(kind(full, "f8"), &Kind::Float(f64::NEG_INFINITY));
    assert_eq!(
        kind(full, "t"),
        &Kind::Text("héllo \"quoted\" 'single'".into())
    );
    assert_eq!(kind(full, "vc"), &Kind::Text("varchar".into()));
    assert_eq!(kind(full, "bc"), &Kind::Text("ab   ".into()));
    assert_eq!(
        kind(full, "u"),
        &Kind::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
    );
    assert_eq!(kind(full, "d"), &Kind::Date(19782));
    assert_eq!(kind(full, "tm"), &Kind::Time(86_400_000_000));
    match kind(full, "tmtz") {
        Kind::Timetz(t) => assert_eq!((t.micros, t.offset_seconds), (45_296_789_000, 19_800)),
        other => panic!("timetz: {other:?}"),
    }
    // Written in America/New_York (EST, UTC-5): wall clock kept for timestamp, UTC instant for timestamptz.
    assert_eq!(kind(full, "ts"), &Kind::Timestamp(1_710_034_200_000_000));
    assert_eq!(
        kind(full, "tstz"),
        &Kind::Timestamptz(1_710_052_200_123_456)
    );
    assert_eq!(
        kind(full, "iv"),
        &Kind::Interval(Interval {
            months: -14,
            days: 3,
            micros: -14_706_500_000
        })
    );
    assert_eq!(kind(full, "j"), &Kind::Json("{\"a\": [1, 2]}".into()));
    assert_eq!(kind(full, "jb"), &Kind::Json("{\"b\": null}".into()));
    assert_eq!(
        kind(full, "by"),
        &Kind::Bytes(vec![0x00, 0xff, 0x10].into())
    );
    assert_eq!(
        kind(full, "ai"),
        &arr(vec![Kind::Int(1), Kind::Null(0), Kind::Int(3)])
    );
    assert_eq!(
        kind(full, "at"),
        &arr(vec![
            Kind::Text("a b".into()),
            Kind::Text("c\"d".into()),
            Kind::Null(0),
            Kind::Text("NULL".into())
        ])
    );
    assert_eq!(
        kind(full, "an"),
        &arr(vec![
            Kind::Decimal("-0.000000000000000000001".into()),
            Kind::Decimal("NaN".into())
        ])
    );
    assert_eq!(kind(full, "e"), &Kind::Enum("happy".into()));
    assert_eq!(
        kind(full, "ae"),
        &arr(vec![Kind::Enum("sad".into()), Kind::Enum("ok".into())])
    );
    assert_eq!(
        kind(full, "p"),
        &Kind::Other(Other {
            type_name: "point".into(),
            text: "(1.5,-2)".into()
        })
    );

    assert_eq!(
        kind(special, "n"),
        &Kind::Decimal("-12345678901234567890.12345678901234567890".into())
    );
    assert_eq!(kind(special, "f4"), &Kind::Float(f64::NEG_INFINITY));
    assert_eq!(kind(special, "f8"), &Kind::Float(f64::INFINITY));
    assert_eq!(kind(special, "d"), &Kind::Date(i32::MAX));
    assert_eq!(kind(special, "ts"), &Kind::Timestamp(i64::MIN));
    assert_eq!(kind(special, "tstz"), &Kind::Timestamptz(i64::MAX));
    assert!(matches!(kind(bc, "f8"), Kind::Float(f) if f.is_nan()));
    // 44 BC is astronomical year -43.
    let Kind::Date(days) = kind(bc, "d") else {
        panic!("date")
    };
    assert!(
        *days < -700_000,
        "44 BC is about 2013 years before 1970: {days}"
    );
    drop(bridge);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_is_marked_unchanged() -> Result<()> {
    let (pg, nats, _dir, bridge) = start_with(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int);
         CREATE TABLE full_docs (id int PRIMARY KEY, body text, n int);
         ALTER TABLE full_docs REPLICA IDENTITY FULL;",
        "docs, full_docs",
    )
    .await?;
    let db = pg.connect("erp").await?;
    // md5 strings barely compress, so the value is stored out of line (TOASTed).
    db.batch_execute(
        "INSERT INTO docs SELECT 1, string_agg(md5(i::text), ''), 0 FROM generate_series(1, 4000) i;
         UPDATE docs SET n = 1 WHERE id = 1;
         UPDATE docs SET body = 'short now', n = 2 WHERE id = 1;",
    )
    .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 3, Duration::from_secs(60)).await?;
    let rx = read_stream(&client, "CDC_ERP").await?;
    let Kind::Text(body) = kind(&rx[0].event, "body") else {
        panic!("insert carries the body")
    };
    assert_eq!(body.len(), 128_000);
    assert_eq!(rx[1].event.op, Operation::Update as i32);
    assert!(
        matches!(kind(&rx[1].event, "body"), Kind::Unchanged(_)),
        "untouched TOAST is unchanged, not null or empty"
    );
    assert_eq!(kind(&rx[1].event, "n"), &Kind::Int(1));
    assert_eq!(kind(&rx[2].event, "body"), &Kind::Text("short now".into()));

    // REPLICA IDENTITY FULL: the old row carries the value, and so does the event's after image.
    db.batch_execute(
        "INSERT INTO full_docs SELECT 1, string_agg(md5(i::text), ''), 0 FROM generate_series(1, 4000) i;
         UPDATE full_docs SET n = 1 WHERE id = 1;",
    )
    .await?;
    wait_for_messages(&client, "CDC_ERP", 5, Duration::from_secs(60)).await?;
    let rx = read_stream(&client, "CDC_ERP").await?;
    let update = &rx[4].event;
    assert_eq!(update.table, "full_docs");
    let Kind::Text(filled) = kind(update, "body") else {
        panic!("FULL fills the untouched value: {update:?}")
    };
    assert_eq!(filled.len(), 128_000);
    assert_eq!(update.changed_columns, vec!["n".to_string()]);
    drop(bridge);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_mid_stream_changes_later_events() -> Result<()> {
    let (pg, nats, _dir, bridge) = start_with(
        "CREATE TABLE evolving (id int PRIMARY KEY, a text)",
        "evolving",
    )
    .await?;
    let db = pg.connect("erp").await?;
    db.batch_execute("INSERT INTO evolving VALUES (1, 'one')")
        .await?;
    db.batch_execute("ALTER TABLE evolving ADD COLUMN b int DEFAULT 7")
        .await?;
    db.batch_execute("INSERT INTO evolving VALUES (2, 'two', 22)")
        .await?;
    db.batch_execute("ALTER TABLE evolving DROP COLUMN a")
        .await?;
    db.batch_execute("INSERT INTO evolving VALUES (3, 33); UPDATE evolving SET b = 8 WHERE id = 1")
        .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 4, Duration::from_secs(60)).await?;
    let rx = read_stream(&client, "CDC_ERP").await?;
    let names = |i: usize| {
        rx[i]
            .event
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["id", "a"]);
    assert_eq!(names(1), ["id", "a", "b"]);
    assert_eq!(kind(&rx[1].event, "b"), &Kind::Int(22));
    assert_eq!(names(2), ["id", "b"]);
    assert_eq!(kind(&rx[2].event, "b"), &Kind::Int(33));
    assert_eq!(kind(&rx[3].event, "b"), &Kind::Int(8));
    assert!(
        !bridge.log().contains("component failed; restarting"),
        "no restart was needed"
    );
    drop(bridge);
    Ok(())
}

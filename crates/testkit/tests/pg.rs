//! Integration tests for the throwaway PostgreSQL clusters.

#![allow(clippy::unwrap_used)]

use tributary_testkit::{PgAuth, PgCluster, PgOptions};

fn keeping_dirs() -> bool {
    std::env::var_os("TRIBUTARY_KEEP_TEST_DIRS").is_some()
}

#[tokio::test]
async fn logical_cluster_survives_restarts() {
    let mut pg = PgCluster::start().await.unwrap();
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(pg.user(), "postgres");
    assert!(pg.bin_dir().join("pg_recvlogical").exists());
    assert!(pg.data_dir().join("PG_VERSION").exists());

    let client = pg.connect("postgres").await.unwrap();
    let row = client.query_one("SHOW wal_level", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "logical");
    let row = client
        .query_one("SHOW max_replication_slots", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "20");

    pg.create_database("app db").await.unwrap();
    let app = pg.connect("app db").await.unwrap();
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .await
        .unwrap();
    drop(app);
    drop(client);

    let port = pg.port();
    for round in 0..2 {
        pg.restart().await.unwrap();
        assert_eq!(pg.port(), port);
        let app = pg.connect("app db").await.unwrap();
        let row = app.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 2 + i64::from(round), "round {round}");
        app.execute("INSERT INTO t VALUES ($1)", &[&(10 + round)])
            .await
            .unwrap();
    }

    // Stop, check it is really down, start again.
    pg.stop().await.unwrap();
    assert!(pg.connect("postgres").await.is_err());
    pg.stop().await.unwrap(); // idempotent
    pg.start_again().await.unwrap();
    let app = pg.connect("app db").await.unwrap();
    let row = app.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);

    let data_dir = pg.data_dir().to_path_buf();
    drop(app);
    drop(pg);
    if !keeping_dirs() {
        assert!(!data_dir.exists(), "data dir must be removed on drop");
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn scram_rejects_wrong_password() {
    let pg = PgCluster::start_with(PgOptions {
        auth: PgAuth::ScramSha256,
        superuser_password: "s3cr'et pw".to_owned(),
        ..PgOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(pg.password(), "s3cr'et pw");

    let wrong = format!(
        "host=127.0.0.1 port={} user=postgres password=nope dbname=postgres",
        pg.port()
    );
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );

    let client = pg.connect("postgres").await.unwrap();
    let row = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("SCRAM-SHA-256$"));
}

#[tokio::test]
async fn md5_stores_md5_password() {
    let pg = PgCluster::start_with(PgOptions {
        auth: PgAuth::Md5,
        superuser_password: "md5pw".to_owned(),
        settings: vec![("application_name".to_owned(), "testkit md5".to_owned())],
        ..PgOptions::default()
    })
    .await
    .unwrap();
    let client = pg.connect("postgres").await.unwrap();
    let row = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("md5"));
    let row = client
        .query_one("SHOW password_encryption", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "md5");

    let wrong = pg.conn_string("postgres").replace("'md5pw'", "'other'");
    assert!(tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .is_err());
}

#[tokio::test]
async fn startup_failure_reports_server_log() {
    let err = PgCluster::start_with(PgOptions {
        settings: vec![("shared_buffers".to_owned(), "lots".to_owned())],
        ..PgOptions::default()
    })
    .await
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(
        matches!(err, tributary_testkit::TestkitError::NotReady { .. }),
        "{text}"
    );
    assert!(text.contains("shared_buffers"), "{text}");
}

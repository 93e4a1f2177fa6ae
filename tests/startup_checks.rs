//! Start-up: bad input stops the bridge with a message that names the problem and a
//! non-zero exit, before anything is published; md5 and SCRAM authentication work.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::*;
use tributary_testkit::{NatsServer, PgAuth, PgCluster, PgOptions};

async fn prepared(opts: PgOptions, with_publication: bool) -> Result<(PgCluster, NatsServer)> {
    let pg = PgCluster::start_with(opts).await?;
    let nats = NatsServer::start().await?;
    pg.create_database("erp").await?;
    let c = pg.connect("erp").await?;
    c.batch_execute(ORDERS_DDL).await?;
    if with_publication {
        c.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
            .await?;
    }
    Ok((pg, nats))
}

async fn assert_nothing_happened(pg: &PgCluster, nats: &NatsServer) -> Result<()> {
    let c = pg.connect("erp").await?;
    let slots: i64 = c
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await?
        .get(0);
    assert_eq!(slots, 0, "no slot was created");
    let js = async_nats::jetstream::new(nats.connect().await?);
    assert!(
        js.get_stream("CDC_ERP").await.is_err(),
        "no stream was created"
    );
    Ok(())
}

async fn fails_with(config: &str, expected: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), config)?;
    let (code, stderr) = run_to_exit(&path, Duration::from_secs(60)).await?;
    assert_ne!(code, 0, "non-zero exit; stderr:\n{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "stderr names {e:?}:\n{stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_config_key_is_named() -> Result<()> {
    let (pg, nats) = prepared(PgOptions::default(), true).await?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace("[nats]\n", "[nats]\nack_windwo = 5\n");
    fails_with(&text, &["ack_windwo", "unknown field"]).await?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace("slot = \"slot_erp\"", "slot = \"Bad Slot\"");
    fails_with(&text, &["sources[0].slot"]).await?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace("slot = \"slot_erp\"\n", "");
    fails_with(&text, &["missing field `slot`"]).await?;
    assert_nothing_happened(&pg, &nats).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_is_refused() -> Result<()> {
    let opts = PgOptions {
        wal_level: "replica".into(),
        ..Default::default()
    };
    let (pg, nats) = prepared(opts, true).await?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]);
    fails_with(&text, &["wal_level", "logical"]).await?;
    assert_nothing_happened(&pg, &nats).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_publication_is_named() -> Result<()> {
    let (pg, nats) = prepared(PgOptions::default(), false).await?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]);
    fails_with(
        &text,
        &[
            "publication \"pub_erp\" does not exist",
            "sources.publication",
        ],
    )
    .await?;
    assert_nothing_happened(&pg, &nats).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported() -> Result<()> {
    let opts = PgOptions {
        auth: PgAuth::ScramSha256,
        superuser_password: "right-password".into(),
        ..Default::default()
    };
    let (pg, nats) = prepared(opts, true).await?;
    let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
        .replace("password = \"right-password\"", "password = \"wrong\"");
    fails_with(&text, &["authentication failed", "postgres"]).await?;
    assert!(!text.contains("right-password"));
    assert_nothing_happened(&pg, &nats).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_is_named() -> Result<()> {
    let (pg, nats) = prepared(PgOptions::default(), true).await?;
    let dead = format!("nats://127.0.0.1:{}", tributary_testkit::free_port());
    // Waited for (tests/startup_waits.rs) until `startup_timeout_secs`, then named.
    let text = config_text(&pg, &dead, &[SourceSpec::new("erp", "erp")]).replacen(
        "[log]\n",
        "startup_timeout_secs = 2\n[log]\n",
        1,
    );
    fails_with(&text, &[dead.as_str()]).await?;
    assert_nothing_happened(&pg, &nats).await
}

/// The replication connection authenticates with md5 and SCRAM-SHA-256, password from an
/// environment variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_and_scram_authentication_stream() -> Result<()> {
    for auth in [PgAuth::Md5, PgAuth::ScramSha256] {
        let opts = PgOptions {
            auth,
            superuser_password: "s3cret".into(),
            ..Default::default()
        };
        let (pg, nats) = prepared(opts, true).await?;
        let dir = tempfile::tempdir()?;
        let text = config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")]).replace(
            "password = \"s3cret\"",
            "password = { env = \"TEST_PG_PASSWORD\" }",
        );
        let path = write_config(dir.path(), &text)?;
        std::env::set_var("TEST_PG_PASSWORD", "s3cret");
        let bridge = Bridge::spawn(&path)?;
        wait_streaming(&pg, &["slot_erp"], &bridge).await?;
        pg.connect("erp")
            .await?
            .batch_execute("INSERT INTO orders VALUES (1, 1, 1, 'x', now())")
            .await?;
        let client = nats.connect().await?;
        wait_for_messages(&client, "CDC_ERP", 1, Duration::from_secs(30)).await?;
        assert!(
            !bridge.log().contains("s3cret"),
            "the password is never printed"
        );
        assert_eq!(bridge.stop().await?, 0);
    }
    Ok(())
}

/// Runs `tributary check-config` (no servers needed); returns (exit code, stdout, stderr).
fn check_config(text: &str, extra: &[&str]) -> Result<(i32, String, String)> {
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), text)?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// `check-config` checks the Shopify sources, the sinks and the secrets without connecting:
/// each mistake names its key; a secret this shell cannot resolve is a warning (an error
/// with `--strict`); a Salesforce key that is not an RSA key is an error.
#[test]
fn check_config_names_sink_shopify_and_secret_mistakes() -> Result<()> {
    let base = "[nats]\nservers = [\"nats://127.0.0.1:1\"]\n\
                [[sources]]\nname = \"erp\"\npublication = \"pub_erp\"\nslot = \"slot_erp\"\n\
                [sources.connection]\nhost = \"127.0.0.1\"\nuser = \"u\"\ndbname = \"erp\"\n";
    let sinks = |extra: &str| {
        format!(
            "{base}[sinks]\n[sinks.shopify]\nbase_url = \"http://127.0.0.1:1\"\naccess_token = \"t\"\n{extra}"
        )
    };
    let (code, out, err) = check_config(&sinks(""), &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(": ok") && out.contains("sink shopify: retail.v1.inventory.level_changed"),
        "{out}"
    );

    let (code, _, err) = check_config(&sinks("apply = [\"inventory\", \"prices\"]\n"), &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("sinks.shopify.price_list"), "{err}");
    let (code, _, err) = check_config(&sinks("apply = [\"stock\"]\n"), &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("sinks.shopify.apply"), "{err}");

    let shop = format!(
        "{base}[[shopify]]\nname = \"web\"\nlisten = \"not-an-address\"\nwebhook_secret = \"3f9c2a7e41b8d605c1e7a9f24b6d8e03\"\n"
    );
    let (code, _, err) = check_config(&shop, &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("shopify[0].listen"), "{err}");

    let env_secret = sinks("").replace(
        "access_token = \"t\"",
        "access_token = { env = \"TRIBUTARY_TEST_SURELY_UNSET\" }",
    );
    let (code, _, err) = check_config(&env_secret, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning") && err.contains("sinks.shopify.access_token"),
        "{err}"
    );
    let (code, _, err) = check_config(&env_secret, &["--strict"])?;
    assert_ne!(code, 0, "{err}");

    let dir = tempfile::tempdir()?;
    let not_a_key = dir.path().join("key.pem");
    std::fs::write(
        &not_a_key,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )?;
    let sf = format!(
        "{base}[sinks]\n[sinks.salesforce]\nbase_url = \"http://127.0.0.1:1\"\nclient_id = \"c\"\n\
         jwt_private_key = {{ file = \"{}\" }}\njwt_username = \"u@example.com\"\n",
        not_a_key.display()
    );
    let (code, _, err) = check_config(&sf, &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("sinks.salesforce.jwt_private_key"), "{err}");
    let (code, _, err) = check_config(&sf.replace("jwt_username = \"u@example.com\"\n", ""), &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("sinks.salesforce.jwt_username"), "{err}");
    Ok(())
}

/// The WMS feed moved to `[[wms]]` (issue #12): `check-config` accepts the old
/// `[sinks.wms.webhooks]` with a warning naming the new key, checks the feed under either key
/// by its own name, and refuses both at once.
#[test]
fn check_config_warns_about_the_old_wms_key_and_names_the_new_one() -> Result<()> {
    let base = "[nats]\nservers = [\"nats://127.0.0.1:1\"]\n";
    let secret = "7d1e4b9a02c6f35e8a4d7c1b90e2f6a3";
    let old = format!(
        "[sinks]\n[sinks.wms]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n\
         [sinks.wms.webhooks]\nsecret = \"{secret}\"\n"
    );
    let (code, _, err) = check_config(&format!("{base}{old}"), &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: config key `sinks.wms.webhooks` is deprecated")
            && err.contains("`[[wms]]`"),
        "{err}"
    );
    let new = format!("[[wms]]\nsecret = \"{secret}\"\n");
    let (code, _, err) = check_config(&format!("{base}{new}"), &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("deprecated"), "{err}");
    let (code, _, err) = check_config(&format!("{base}{new}path = \"no-slash\"\n"), &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("`wms[0].path`"), "{err}");
    let (code, _, err) = check_config(&format!("{base}{new}{old}"), &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("`sinks.wms.webhooks`"), "{err}");
    Ok(())
}

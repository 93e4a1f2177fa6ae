//! TLS: the replication and control connections to PostgreSQL (`verify-full` against a custom
//! CA) and the NATS connection (custom CA) are encrypted; a certificate from another CA is
//! refused with a TLS error at start-up.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use support::*;
use tributary_testkit::{NatsOptions, NatsServer, NatsTls, PgCluster, PgOptions};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it.
fn make_pki(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.crt");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    )?;
    let key = format!("{name}-server.key");
    let csr = format!("{name}-server.csr");
    let crt = format!("{name}-server.crt");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    )?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    )?;
    Ok((dir.join(ca), dir.join(crt), dir.join(key)))
}

/// PostgreSQL runs as the `postgres` user and insists on a private key only it can read.
fn hand_to_postgres(paths: &[&Path]) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        for p in paths {
            let status = Command::new("chown").arg("postgres:").arg(p).status()?;
            ensure!(status.success(), "chown {}", p.display());
        }
    }
    for p in paths {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_and_nats_over_tls_with_custom_cas() -> Result<()> {
    let pki = tempfile::tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let (ca, crt, key) = make_pki(pki.path(), "pg")?;
    let (other_ca, _, _) = make_pki(pki.path(), "other")?;
    let (nats_ca, nats_crt, nats_key) = make_pki(pki.path(), "nats")?;
    // The PostgreSQL copies belong to postgres; the NATS ones stay with us.
    let pg_crt = pki.path().join("pg-server-postgres.crt");
    let pg_key = pki.path().join("pg-server-postgres.key");
    std::fs::copy(&crt, &pg_crt)?;
    std::fs::copy(&key, &pg_key)?;
    hand_to_postgres(&[&pg_crt, &pg_key])?;

    let pg = PgCluster::start_with(PgOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), pg_crt.display().to_string()),
            ("ssl_key_file".into(), pg_key.display().to_string()),
        ],
        ..Default::default()
    })
    .await?;
    let nats = NatsServer::start_with(NatsOptions {
        tls: Some(NatsTls {
            cert_file: nats_crt,
            key_file: nats_key,
            ca_file: nats_ca.clone(),
        }),
        ..Default::default()
    })
    .await?;
    pg.create_database("erp").await?;
    let db = pg.connect("erp").await?;
    db.batch_execute(ORDERS_DDL).await?;
    db.batch_execute("CREATE PUBLICATION pub_erp FOR TABLE orders")
        .await?;

    let tls_config = |root: &Path| {
        config_text(&pg, &nats.url(), &[SourceSpec::new("erp", "erp")])
            .replace(
                "connect_timeout_ms = 3000\n",
                &format!(
                    "connect_timeout_ms = 3000\nsslmode = \"verify-full\"\nsslrootcert = \"{}\"\n",
                    root.display()
                ),
            )
            .replace(
                "ack_window = 2048\n",
                &format!(
                    "ack_window = 2048\n[nats.tls]\nca_file = \"{}\"\n",
                    nats_ca.display()
                ),
            )
    };
    let dir = tempfile::tempdir()?;

    // A server certificate from a CA we do not trust: refused, nothing created.
    let bad = write_config(dir.path(), &tls_config(&other_ca))?;
    let (code, stderr) = run_to_exit(&bad, Duration::from_secs(60)).await?;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("TLS") || stderr.contains("certificate"),
        "TLS error named:\n{stderr}"
    );

    let good = write_config(dir.path(), &tls_config(&ca))?;
    let bridge = Bridge::spawn(&good)?;
    wait_streaming(&pg, &["slot_erp"], &bridge).await?;
    let encrypted: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE s.ssl AND r.application_name = 'tributary-erp'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(encrypted, 1, "the walsender's connection uses TLS");
    db.batch_execute("INSERT INTO orders VALUES (1, 1, 1, 'over tls', now())")
        .await?;
    let client = nats.connect().await?;
    wait_for_messages(&client, "CDC_ERP", 1, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", bridge.log()))?;
    assert_eq!(bridge.stop().await?, 0);
    Ok(())
}

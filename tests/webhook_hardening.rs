//! The internet-facing webhook listeners hold against requests that never authenticate:
//! empty or weak secrets stop the load, signature headers are bounded before any hashing,
//! slow headers and bodies are cut off, bodies are limited while streaming, connections are
//! capped, and header values that would reach a NATS subject are checked first, so one bad
//! request cannot drop the shared NATS connection. Every refusal is counted with a reason.
//! (The flood with /healthz latency and memory is tests/webhook_flood.rs.)

#[path = "support/raw_http.rs"]
mod raw_http;
#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use raw_http::*;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tributary_saas::shopify::ShopifySources;
use tributary_saas::wms::WmsWebhookSource;
use tributary_sandbox::webhooks::hmac_sha256_base64;
use tributary_testkit::NatsServer;

const SECRET: &str = "7d1e4b9a02c6f35e8a4d7c1b90e2f6a3";
const DUMMY_SOURCE: &str = "[[sources]]\nname = \"unused\"\npublication = \"p\"\nslot = \"s\"\n\
     [sources.connection]\nhost = \"127.0.0.1\"\nuser = \"u\"\ndbname = \"d\"\n";

/// One recorder for the whole test binary: the listeners count into it.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}

/// The value of the series of `name` whose labels contain every one of `labels`.
fn counter(name: &str, labels: &[&str]) -> f64 {
    recorder()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn shopify_rejected(reason: &str) -> f64 {
    counter(
        "tributary_shopify_webhooks_rejected_total",
        &[&format!("reason=\"{reason}\"")],
    )
}

fn http_rejected(listener: &str, reason: &str) -> f64 {
    counter(
        "tributary_http_rejected_total",
        &[
            &format!("listener=\"{listener}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
}

/// A listener running in-process until dropped.
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    _task: tokio::task::JoinHandle<()>,
    nats: async_nats::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn shopify(nats: &NatsServer, server: &str) -> Result<Running> {
    recorder();
    let text = format!(
        "[nats]\nservers = [\"{}\"]\n{server}\n{DUMMY_SOURCE}\
         [[shopify]]\nname = \"web\"\nshop_domain = \"{SHOP_DOMAIN}\"\nlisten = \"127.0.0.1:0\"\n\
         webhook_secret = \"{SECRET}\"\ndomain_events = false\n",
        nats.url()
    );
    let config = tributary_config::parse(&text)?;
    let client = nats.connect().await?;
    let sources = ShopifySources::prepare(&config, jetstream::new(client.clone()))
        .await?
        .context("no shop")?;
    let addr = sources.local_addrs()[0];
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = sources.run(s).await;
    });
    Ok(Running {
        addr,
        stop,
        _task: task,
        nats: client,
    })
}

fn wms_config(nats: &NatsServer, server: &str, secret: &str) -> String {
    format!(
        "[nats]\nservers = [\"{}\"]\n{server}\n{DUMMY_SOURCE}\
         [sinks]\n[sinks.wms]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n\
         [sinks.wms.webhooks]\nlisten = \"127.0.0.1:0\"\nsecret = \"{secret}\"\n",
        nats.url()
    )
}

async fn wms(nats: &NatsServer, server: &str) -> Result<Running> {
    recorder();
    let config = tributary_config::parse(&wms_config(nats, server, SECRET))?;
    let client = nats.connect().await?;
    let source = WmsWebhookSource::prepare(&config, jetstream::new(client.clone()))
        .await?
        .context("no WMS webhooks")?;
    let addr = source.local_addr().context("no address")?;
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = source.run(s).await;
    });
    Ok(Running {
        addr,
        stop,
        _task: task,
        nats: client,
    })
}

fn order_body(id: u64) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"id": id, "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
        "updated_at": "2026-01-01T00:00:00Z", "line_items": []}),
    )
    .unwrap_or_default()
}

async fn signed_shopify(addr: SocketAddr, topic: &str, event: &str) -> Result<Option<u16>> {
    let body = order_body(1);
    let hmac = hmac_sha256_base64(SECRET.as_bytes(), &body);
    let head = shopify_head("/webhooks/shopify/web", topic, event, &hmac, body.len());
    send(addr, &head, body, Duration::from_secs(10)).await
}

fn now_secs() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string()
}

fn wms_head(id: &str, ts: &str, signature: &str, len: usize) -> String {
    format!(
        "POST /webhooks/wms HTTP/1.1\r\nhost: bridge\r\ncontent-length: {len}\r\n\
         webhook-id: {id}\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {signature}\r\n"
    )
}

fn wms_signature(id: &str, ts: &str, body: &[u8]) -> String {
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    format!("v1,{}", hmac_sha256_base64(SECRET.as_bytes(), &signed))
}

/// Defect 1: an empty secret (literal or resolved from the environment) and a weak one are
/// refused at load, by `check-config --strict` and by `run`, each naming the key.
#[tokio::test]
async fn empty_or_weak_webhook_secrets_are_refused_at_load() -> Result<()> {
    let nats = NatsServer::start().await?;
    let http = tributary_testkit::free_port();
    let shop = |secret: &str| {
        format!(
            "http_listen = \"127.0.0.1:{http}\"\n[nats]\nservers = [\"{}\"]\n[[shopify]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             webhook_secret = {secret}\ndomain_events = false\n",
            nats.url()
        )
    };
    for (secret, says) in [
        ("\"\"", "is empty"),
        ("\"hunter2hunter2hunter2\"", "too weak"),
    ] {
        let err = tributary_config::parse(&shop(secret))
            .err()
            .context("accepted")?
            .to_string();
        assert!(
            err.contains("`shopify[0].webhook_secret`") && err.contains(says),
            "{err}"
        );
        assert!(
            !err.contains("hunter2"),
            "the secret is never quoted: {err}"
        );
    }
    let err = tributary_config::parse(&wms_config(&nats, "", ""))
        .err()
        .context("accepted")?
        .to_string();
    assert!(err.contains("`sinks.wms.webhooks.secret`"), "{err}");

    // From the environment: check-config --strict and run both refuse it.
    let dir = tempfile::tempdir()?;
    let path = write_config(dir.path(), &shop("{ env = \"TRIB_TEST_EMPTY_SECRET\" }"))?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["check-config", "--strict", "--config"])
        .arg(&path)
        .env("TRIB_TEST_EMPTY_SECRET", "")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "check-config accepted it: {err}");
    assert!(err.contains("`shopify[0].webhook_secret`"), "{err}");
    let run = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args(["run", "--config"])
            .arg(&path)
            .env("TRIB_TEST_EMPTY_SECRET", "")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("run did not stop")??;
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "run started: {err}");
    assert!(err.contains("shopify[0].webhook_secret"), "{err}");
    Ok(())
}

/// Defect 2: more than 8 candidate signatures is a 401 without any HMAC (even when one of
/// them is right); two requests of 1000 entries and 4 MiB each (an HMAC of the whole body per
/// entry, on the runtime, before) no longer hold a valid delivery; a header of thousands of
/// entries is refused by the header limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_header_with_too_many_entries_is_refused_before_hashing() -> Result<()> {
    let nats = NatsServer::start().await?;
    let hook = wms(&nats, "").await?;
    let body = br#"{"id":"evt_1","type":"inventory.updated","data":{}}"#.to_vec();
    let ts = now_secs();
    let good = wms_signature("evt_1", &ts, &body);
    let mut nine: Vec<String> = (0..8).map(|_| format!("v1,{}", wrong_hmac())).collect();
    nine.push(good.clone());
    let before = counter(
        "tributary_wms_webhooks_rejected_total",
        &["reason=\"too_many_signatures\""],
    );
    let head = wms_head("evt_1", &ts, &nine.join(" "), body.len());
    let status = send(hook.addr, &head, body.clone(), Duration::from_secs(5)).await?;
    assert_eq!(status, Some(401));
    let after = counter(
        "tributary_wms_webhooks_rejected_total",
        &["reason=\"too_many_signatures\""],
    );
    assert_eq!(after - before, 1.0);

    // Two unauthenticated 4 MiB requests of 1000 entries while a valid delivery comes in.
    let thousand: Vec<String> = (0..1000).map(|_| format!("v1,{}", wrong_hmac())).collect();
    let head = wms_head("evt_3", &ts, &thousand.join(" "), 4 << 20);
    let attacks: Vec<_> = (0..2)
        .map(|_| {
            let head = head.clone();
            let addr = hook.addr;
            tokio::spawn(async move {
                send(addr, &head, vec![b'x'; 4 << 20], Duration::from_secs(60)).await
            })
        })
        .collect();
    // Valid deliveries every 250 ms while the attack bodies arrive and are (not) hashed.
    let mut slowest = Duration::ZERO;
    for n in 0..12 {
        let id = format!("evt_valid_{n}");
        let body2 = format!(r#"{{"id":"{id}","type":"inventory.updated","data":{{}}}}"#);
        let head = wms_head(
            &id,
            &ts,
            &wms_signature(&id, &ts, body2.as_bytes()),
            body2.len(),
        );
        let started = Instant::now();
        let status = send(
            hook.addr,
            &head,
            body2.into_bytes(),
            Duration::from_secs(60),
        )
        .await?;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, Some(200));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("slowest valid WMS delivery beside two 1000-entry 4 MiB requests: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "a valid delivery took {slowest:?}"
    );
    for a in attacks {
        let status = a.await??;
        assert!(matches!(status, Some(401) | None), "{status:?}");
    }

    // Thousands of entries with a 4 MiB body: refused at once, the body never hashed.
    let many: Vec<String> = (0..5000).map(|_| format!("v1,{}", wrong_hmac())).collect();
    let big = vec![b'x'; 4 << 20];
    let head = wms_head("evt_2", &ts, &many.join(" "), big.len());
    let started = Instant::now();
    let status = send(hook.addr, &head, big, Duration::from_secs(5)).await?;
    assert!(matches!(status, None | Some(431)), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Eight entries with the right one among them still pass: key rotation works.
    let mut eight: Vec<String> = (0..7).map(|_| format!("v1,{}", wrong_hmac())).collect();
    eight.push(good);
    let head = wms_head("evt_1", &ts, &eight.join(" "), body.len());
    assert_eq!(
        send(hook.addr, &head, body, Duration::from_secs(10)).await?,
        Some(200)
    );
    Ok(())
}

/// Defect 3: slow headers and slow bodies are cut off, a declared or streamed body over the
/// limit is refused (413, before reading for a declared one), and each is counted.
#[tokio::test]
async fn slow_and_oversized_requests_are_cut_off_and_counted() -> Result<()> {
    let nats = NatsServer::start().await?;
    let server = "[webhook_server]\nheader_timeout_ms = 500\nbody_timeout_ms = 500\nmax_body_bytes = 1048576\n";
    let hook = shopify(&nats, server).await?;
    let rejected = shopify_rejected;
    let header_timeouts = || http_rejected("shopify", "header_timeout");

    // Slow headers: a line every 200 ms never completes the head; closed after ~0.5 s.
    let before = header_timeouts();
    let mut slow = TcpStream::connect(hook.addr).await?;
    slow.write_all(b"POST /webhooks/shopify/web HTTP/1.1\r\n")
        .await?;
    let started = Instant::now();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow
            .write_all(format!("x-h{i}: v\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
    }
    assert!(closed || closed_within(&mut slow, Duration::from_secs(2)).await);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(header_timeouts() - before, 1.0);

    // Slow body: 10 of 1000 declared bytes, then nothing: 408.
    let before = rejected("body_timeout");
    let head = shopify_head(
        "/webhooks/shopify/web",
        "orders/create",
        "e1",
        &wrong_hmac(),
        1000,
    );
    let status = send(hook.addr, &head, vec![b'{'; 10], Duration::from_secs(5)).await?;
    assert_eq!(status, Some(408));
    assert_eq!(rejected("body_timeout") - before, 1.0);

    // Declared too large: 413 at once, without sending the body.
    let before = rejected("body_too_large");
    let head = shopify_head(
        "/webhooks/shopify/web",
        "orders/create",
        "e2",
        &wrong_hmac(),
        100 << 20,
    );
    let started = Instant::now();
    assert_eq!(
        send(hook.addr, &head, Vec::new(), Duration::from_secs(5)).await?,
        Some(413)
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // Chunked past the limit: cut off at 1 MiB, 413.
    let head = format!(
        "POST /webhooks/shopify/web HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\
         x-shopify-topic: orders/create\r\nx-shopify-hmac-sha256: {}\r\nx-shopify-event-id: e3\r\n",
        wrong_hmac()
    );
    let mut chunked = Vec::new();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked.extend_from_slice(&[b' '; 65536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        send(hook.addr, &head, chunked, Duration::from_secs(5)).await?,
        Some(413)
    );
    assert_eq!(rejected("body_too_large") - before, 2.0);

    // A valid webhook still goes through.
    assert_eq!(
        signed_shopify(hook.addr, "orders/create", "ok-1").await?,
        Some(200)
    );
    Ok(())
}

/// Defect 3, with the default limits: a declared body over `max_body_bytes` (8 MiB) is a 413
/// before any byte of it is read, and it is counted.
#[tokio::test]
async fn oversized_body_with_default_limits_is_refused_unread_and_counted() -> Result<()> {
    let nats = NatsServer::start().await?;
    let hook = shopify(&nats, "").await?;
    let before = shopify_rejected("body_too_large");
    let head = shopify_head(
        "/webhooks/shopify/web",
        "orders/create",
        "e9",
        &wrong_hmac(),
        (8 << 20) + 1,
    );
    let started = Instant::now();
    let status = send(hook.addr, &head, Vec::new(), Duration::from_secs(5)).await?;
    assert_eq!(status, Some(413));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(shopify_rejected("body_too_large") - before, 1.0);
    Ok(())
}

/// Defect 3: connections over the limit are answered 503 at once and counted, and a freed
/// connection slot is usable again.
#[tokio::test]
async fn connections_over_the_limit_are_refused_at_once() -> Result<()> {
    let nats = NatsServer::start().await?;
    let server = "[webhook_server]\nmax_connections = 4\nheader_timeout_ms = 60000\n";
    let hook = shopify(&nats, server).await?;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(hook.addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = http_rejected("shopify", "connection_limit");
    // The 503 is written before the close; a client still writing may see the reset first.
    let status = signed_shopify(hook.addr, "orders/create", "over").await?;
    assert!(matches!(status, Some(503) | None), "{status:?}");
    let after = http_rejected("shopify", "connection_limit");
    assert_eq!(after - before, 1.0);
    held.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        signed_shopify(hook.addr, "orders/create", "again").await?,
        Some(200)
    );
    Ok(())
}

/// Defect 4: a 5 KB `X-Shopify-Topic` (not covered by the HMAC) or `webhook-id` is a 400
/// before anything is published; the shared NATS connection never reconnects and the next
/// valid webhook is stored.
#[tokio::test]
async fn oversized_subject_headers_are_refused_and_nats_is_untouched() -> Result<()> {
    let nats = NatsServer::start().await?;
    let hook = shopify(&nats, "").await?;
    let topic = format!("orders/{}", "a".repeat(5000));
    let before = shopify_rejected("bad_header");
    assert_eq!(
        signed_shopify(hook.addr, &topic, "long-1").await?,
        Some(400)
    );
    assert_eq!(
        signed_shopify(hook.addr, "orders/cre*ate", "star").await?,
        Some(400)
    );
    let after = shopify_rejected("bad_header");
    assert_eq!(after - before, 2.0);
    assert_eq!(
        signed_shopify(hook.addr, "orders/create", "fine-1").await?,
        Some(200)
    );
    assert_eq!(
        hook.nats
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let wms = wms(&nats, "").await?;
    let body = br#"{"id":"x","type":"inventory.updated","data":{}}"#.to_vec();
    let (id, ts) = ("i".repeat(5000), now_secs());
    let head = wms_head(&id, &ts, &wms_signature(&id, &ts, &body), body.len());
    assert_eq!(
        send(wms.addr, &head, body.clone(), Duration::from_secs(5)).await?,
        Some(400)
    );
    let long_type = format!(
        r#"{{"id":"x","type":"order.{}","data":{{}}}}"#,
        "t".repeat(5000)
    );
    let body = long_type.into_bytes();
    let head = wms_head(
        "evt-lt",
        &ts,
        &wms_signature("evt-lt", &ts, &body),
        body.len(),
    );
    assert_eq!(
        send(wms.addr, &head, body, Duration::from_secs(5)).await?,
        Some(400)
    );
    assert_eq!(
        wms.nats
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    Ok(())
}

/// The listeners bind loopback unless told otherwise.
#[test]
fn listeners_default_to_loopback() -> Result<()> {
    let text = format!(
        "[nats]\nservers = [\"nats://127.0.0.1:1\"]\n[[shopify]]\nname = \"web\"\nwebhook_secret = \"{SECRET}\"\n\
         [sinks]\n[sinks.wms]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n[sinks.wms.webhooks]\nsecret = \"{SECRET}\"\n"
    );
    let config = tributary_config::parse(&text)?;
    assert_eq!(config.shopify[0].listen, "127.0.0.1:8088");
    let hooks = config
        .sinks
        .and_then(|s| s.wms)
        .and_then(|w| w.webhooks)
        .context("no webhooks")?;
    assert_eq!(hooks.listen, "127.0.0.1:8089");
    assert_eq!(config.http_listen, "127.0.0.1:8471");
    Ok(())
}

//! HTTP/1.1 at the byte level, for requests a well-behaved client library will not send:
//! slow headers, slow or oversized bodies, huge header values.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SHOP_DOMAIN: &str = "sandbox.myshopify.com";

/// The request head of a Shopify delivery (no final blank line): `extra` lines are added as is.
pub fn shopify_head(path: &str, topic: &str, event_id: &str, hmac: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: bridge\r\ncontent-type: application/json\r\n\
         content-length: {len}\r\nx-shopify-topic: {topic}\r\nx-shopify-hmac-sha256: {hmac}\r\n\
         x-shopify-shop-domain: {SHOP_DOMAIN}\r\nx-shopify-event-id: {event_id}\r\n\
         x-shopify-webhook-id: wh-{event_id}\r\nx-shopify-triggered-at: 2026-01-01T00:00:00Z\r\n"
    )
}

/// A syntactically valid signature that matches nothing.
pub fn wrong_hmac() -> String {
    tributary_sandbox::webhooks::hmac_sha256_base64(b"not-the-secret-at-all", b"x")
}

/// Reads the status code of the first response line; None when the server closed first.
pub async fn read_status(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<u16> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
        if buf.len() > 4096 {
            return None;
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `head` + blank line + `body` (written concurrently, so that a server answering before
/// the body is read is seen) and returns the status code, within `within`.
pub async fn send(
    addr: SocketAddr,
    head: &str,
    body: Vec<u8>,
    within: Duration,
) -> anyhow::Result<Option<u16>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    let request = format!("{head}\r\n").into_bytes();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        let _ = wr.write_all(&body).await;
        // Keep the write half open until the answer is read.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(wr);
    });
    let status = tokio::time::timeout(within, read_status(&mut rd))
        .await
        .context("no answer in time")?;
    writer.abort();
    Ok(status)
}

/// True when the server closes `stream` (or answers) within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a 408 or 503) before the close counts as closed.
            Ok(Ok(_)) => continue,
        }
    }
}

/// VmRSS of a process in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

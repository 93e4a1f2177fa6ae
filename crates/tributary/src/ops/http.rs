//! A running bridge seen through its HTTP endpoint (`http_listen`): `/readyz` and `/metrics`,
//! fetched with a minimal HTTP/1.0 client (one request per connection, bounded in time and size).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TIMEOUT: Duration = Duration::from_secs(3);
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// What the bridge's HTTP endpoint says, per source where it applies.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BridgeReport {
    /// The address asked (`http_listen`, with an unspecified address replaced by loopback).
    pub address: String,
    /// The endpoint answered.
    pub up: bool,
    /// `/readyz` answered 200: every source is streaming.
    pub ready: Option<bool>,
    /// `/readyz`'s body, e.g. `not streaming: erp`.
    pub readyz: Option<String>,
    /// Why the endpoint could not be read.
    pub error: Option<String>,
    #[serde(skip)]
    pub metrics: BTreeMap<String, SourceMetrics>,
}

/// The bridge's metrics of one source.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct SourceMetrics {
    pub source_up: Option<bool>,
    pub replication_lag_seconds: Option<f64>,
    pub replication_lag_bytes: Option<f64>,
    pub published_messages_total: Option<f64>,
}

pub(crate) async fn fetch_bridge(http_listen: &str) -> BridgeReport {
    let mut report = BridgeReport {
        address: http_listen.to_string(),
        ..Default::default()
    };
    let mut addr: SocketAddr = match http_listen.parse() {
        Ok(a) => a,
        Err(e) => {
            report.error = Some(format!("http_listen {http_listen:?}: {e}"));
            return report;
        }
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    report.address = addr.to_string();
    match get(addr, "/readyz").await {
        Ok((status, body)) => {
            report.up = true;
            report.ready = Some(status == 200);
            report.readyz = Some(body.trim().to_string());
        }
        Err(e) => {
            report.error = Some(format!("no bridge answers on {addr}: {e}"));
            return report;
        }
    }
    match get(addr, "/metrics").await {
        Ok((200, body)) => report.metrics = parse_metrics(&body),
        Ok((status, _)) => report.error = Some(format!("GET /metrics answered {status}")),
        Err(e) => report.error = Some(format!("GET /metrics: {e}")),
    }
    report
}

/// `GET path` over HTTP/1.0; returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: tributary-status\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        parse_response(&raw)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size".to_string())?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The per-source series of the bridge's Prometheus text output that `status` shows.
fn parse_metrics(text: &str) -> BTreeMap<String, SourceMetrics> {
    let mut out: BTreeMap<String, SourceMetrics> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let Some(source) = label(labels, "source") else {
            continue;
        };
        let entry = out.entry(source).or_default();
        match name {
            "tributary_source_up" => entry.source_up = Some(value > 0.0),
            "tributary_source_replication_lag_seconds" => {
                entry.replication_lag_seconds = Some(value)
            }
            "tributary_source_replication_lag_bytes" => entry.replication_lag_bytes = Some(value),
            "tributary_source_published_messages_total" => {
                entry.published_messages_total = Some(value)
            }
            _ => {}
        }
    }
    out
}

/// The value of label `key` in `a="x",b="y"` (with `\"` and `\\` escapes).
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => value.push(c),
            }
        }
        if k.trim().trim_start_matches(',').trim() == key {
            return Some(value);
        }
        rest = after.get(end..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses_plain_and_chunked() {
        let plain = b"HTTP/1.0 503 Service Unavailable\r\ncontent-type: text/plain\r\n\r\nnot streaming: erp\n";
        assert_eq!(
            parse_response(plain),
            Ok((503, "not streaming: erp\n".to_string()))
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\n1\r\n\n\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((200, "ready\n".to_string())));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn reads_source_series() {
        let text = "# HELP tributary_source_replication_lag_seconds lag\n\
                    tributary_source_replication_lag_seconds{source=\"erp\"} 1.5\n\
                    tributary_source_up{source=\"erp\"} 1\n\
                    tributary_source_changes_total{source=\"pos\",table=\"a,b\",op=\"insert\"} 7\n\
                    tributary_source_replication_lag_bytes{source=\"pos\"} 2048\n";
        let m = parse_metrics(text);
        assert_eq!(m["erp"].replication_lag_seconds, Some(1.5));
        assert_eq!(m["erp"].source_up, Some(true));
        assert_eq!(m["pos"].replication_lag_bytes, Some(2048.0));
        assert_eq!(
            label("a=\"x\\\"y\",source=\"pos\"", "source"),
            Some("pos".into())
        );
    }
}

//! The WMS's side of the shared webhook receiver: Standard Webhooks headers and signature,
//! and the JSON change envelope each delivery is stored as.

use super::*;

/// The signing key: `whsec_<base64>` (Standard Webhooks) is decoded, anything else is used as is.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// Most candidates a `webhook-signature` header may carry (a key rotation needs two); a longer
/// header is refused before any hashing.
pub const MAX_SIGNATURES: usize = 8;

/// The `v1` tags of a `webhook-signature` header (space-separated `v<n>,<base64>` entries):
/// `Err(reason)` when there are more than [`MAX_SIGNATURES`] entries or no usable `v1` one.
pub fn signature_candidates(header: &str) -> Result<Vec<Vec<u8>>, &'static str> {
    let entries: Vec<&str> = header.split_whitespace().take(MAX_SIGNATURES + 1).collect();
    if entries.len() > MAX_SIGNATURES {
        return Err("too_many_signatures");
    }
    let tags: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|e| e.strip_prefix("v1,"))
        .filter_map(verify::decode_tag)
        .collect();
    if tags.is_empty() {
        Err("bad_signature")
    } else {
        Ok(tags)
    }
}

/// Verifies a `webhook-signature` header over `<id>.<timestamp>.<body>`: one HMAC, compared
/// with each candidate in constant time.
pub fn verify_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(candidates) = signature_candidates(header) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{id}.{timestamp}.").as_bytes());
    ctx.update(body);
    let tag = ctx.sign();
    candidates
        .iter()
        .fold(false, |ok, c| ok | verify::tag_matches(&tag, c))
}

/// Event types become a subject token and the envelope's table.
fn event_type_ok(kind: &str) -> bool {
    !kind.is_empty() && kind.len() <= MAX_EVENT_TYPE_BYTES && kind.bytes().all(verify::id_char)
}

/// The headers the envelope needs, checked before the body is read.
pub(super) struct Checked {
    id: String,
    timestamp: String,
    timestamp_secs: i64,
    type_header: Option<String>,
}

impl Feed for Endpoint {
    type Checked = Checked;

    fn key(&self) -> &ring::hmac::Key {
        &self.key
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn js(&self) -> &jetstream::Context {
        &self.js
    }

    fn check(&self, headers: &HeaderMap) -> Result<Signed<Checked>, Reject> {
        let digits = |b: u8| b.is_ascii_digit();
        let id = verify::header(headers, "webhook-id", MAX_ID_BYTES, verify::id_char);
        let ts = verify::header(headers, "webhook-timestamp", 12, digits);
        let kind = verify::header(
            headers,
            "x-wms-event-type",
            MAX_EVENT_TYPE_BYTES,
            verify::id_char,
        );
        let sig = headers.get("webhook-signature").map(|v| v.to_str());
        let (Ok(Some(id)), Ok(Some(ts)), Some(Ok(sig))) = (id, ts, sig) else {
            return Err(match (id, ts) {
                (Err(_), _) | (_, Err(_)) => Reject("bad_header", StatusCode::BAD_REQUEST),
                _ => Reject("missing_signature", StatusCode::UNAUTHORIZED),
            });
        };
        let Ok(type_header) = kind else {
            return Err(Reject("bad_header", StatusCode::BAD_REQUEST));
        };
        let candidates =
            signature_candidates(sig).map_err(|r| Reject(r, StatusCode::UNAUTHORIZED))?;
        let Ok(timestamp_secs) = ts.parse::<i64>() else {
            return Err(Reject("bad_timestamp", StatusCode::UNAUTHORIZED));
        };
        let tolerance = self.cfg.timestamp_tolerance_secs as i64;
        if tolerance > 0 && (now_micros() / 1_000_000 - timestamp_secs).abs() > tolerance {
            return Err(Reject(
                "timestamp_out_of_tolerance",
                StatusCode::UNAUTHORIZED,
            ));
        }
        Ok(Signed {
            prefix: format!("{id}.{ts}.").into_bytes(),
            candidates,
            checked: Checked {
                id: id.to_string(),
                timestamp: ts.to_string(),
                timestamp_secs,
                type_header: type_header.map(str::to_string),
            },
        })
    }

    fn envelope(&self, c: Checked, body: &str) -> Result<Delivery, Reject> {
        let json: Value =
            serde_json::from_str(body).map_err(|_| Reject("bad_body", StatusCode::BAD_REQUEST))?;
        let kind = json
            .get("type")
            .and_then(Value::as_str)
            .or(c.type_header.as_deref())
            .unwrap_or("unknown");
        if !event_type_ok(kind) {
            return Err(Reject("bad_event_type", StatusCode::BAD_REQUEST));
        }
        let subject = format!(
            "{SUBJECT_PREFIX}.{}",
            tributary_nats::subject::token(&kind.replace('.', "_"))
        );
        let mut headers = NatsHeaders::new();
        headers.insert("Webhook-Id", c.id.as_str());
        headers.insert("Webhook-Timestamp", c.timestamp.as_str());
        headers.insert("Wms-Event-Type", kind);
        let msg_id = format!("wms:{}", c.id);
        let change = JsonChange {
            event_id: msg_id.clone(),
            source: &self.cfg.system,
            database: "",
            schema: "wms",
            table: kind,
            op: if kind.ends_with(".created") {
                Operation::Insert
            } else {
                Operation::Update
            },
            payload: body.to_string(),
            commit_micros: c.timestamp_secs.saturating_mul(1_000_000),
            origin: format!("webhook:{}", c.id),
        }
        .into_event();
        Ok(Delivery {
            subject,
            msg_id,
            headers,
            change,
        })
    }

    fn rejected(&self, reason: &'static str) {
        metrics::counter!(WEBHOOKS_REJECTED, "reason" => reason).increment(1);
        debug!(reason, "WMS webhook rejected");
    }

    fn stored(&self, _delivery: &Delivery, duplicate: bool) {
        if duplicate {
            metrics::counter!(WEBHOOKS_DUPLICATE).increment(1);
        } else {
            metrics::counter!(WEBHOOKS_STORED).increment(1);
        }
    }

    fn sender(&self) -> &'static str {
        "WMS"
    }
}

pub(super) async fn receive(
    State(ep): State<Arc<Endpoint>>,
    headers: HeaderMap,
    raw_body: Body,
) -> (StatusCode, &'static str) {
    metrics::counter!(WEBHOOKS_RECEIVED).increment(1);
    receiver::receive(ep.as_ref(), &headers, raw_body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_forgery() {
        let key = b"s3cret";
        let body = br#"{"id":"evt_1"}"#;
        let mut signed = b"evt_1.1700000000.".to_vec();
        signed.extend_from_slice(body);
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), &signed);
        let header = format!(
            "v0,xxx v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
        );
        assert!(verify_signature(key, "evt_1", "1700000000", body, &header));
        assert!(!verify_signature(key, "evt_1", "1700000001", body, &header));
        assert!(!verify_signature(
            b"other",
            "evt_1",
            "1700000000",
            body,
            &header
        ));
        assert!(!verify_signature(
            key,
            "evt_1",
            "1700000000",
            body,
            "v1,!!!"
        ));
    }

    #[test]
    fn more_than_eight_signature_entries_are_refused_unhashed() {
        let entry = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let eight = [entry.as_str(); 8].join(" ");
        let nine = [entry.as_str(); 9].join(" ");
        assert_eq!(signature_candidates(&eight).map(|c| c.len()), Ok(8));
        assert_eq!(signature_candidates(&nine), Err("too_many_signatures"));
        assert_eq!(
            signature_candidates("v1,short v2,xyz"),
            Err("bad_signature")
        );
    }
}

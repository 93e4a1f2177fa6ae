//! The CopyBoth replication stream: XLogData and keepalives in, standby status updates out.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use postgres_protocol::message::backend::Message;
use tributary_core::Lsn;

use super::connection::{server_error, ReplicationConnection};
use crate::PgError;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

#[derive(Debug)]
pub enum ReplicationMessage {
    /// A pgoutput message starting at `wal_start`.
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    /// The server's position; answer at once when `reply_requested`.
    Keepalive { wal_end: Lsn, reply_requested: bool },
}

pub struct ReplicationStream {
    conn: ReplicationConnection,
    /// Position last reported as flushed; never moves backwards.
    reported_flush: Lsn,
}

impl ReplicationStream {
    pub(crate) fn new(conn: ReplicationConnection, start: Lsn) -> Self {
        ReplicationStream {
            conn,
            reported_flush: start,
        }
    }

    /// The next message already in the read buffer, without waiting.
    pub fn try_next(&mut self) -> Result<Option<ReplicationMessage>, PgError> {
        loop {
            let Some(message) = Message::parse(&mut self.conn.read_buf)? else {
                return Ok(None);
            };
            match message {
                Message::CopyData(body) => return parse_copy_data(body.into_bytes()).map(Some),
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                // The walsender ends the stream this way when the server shuts down.
                Message::CopyDone | Message::CommandComplete(_) | Message::ReadyForQuery(_) => {
                    return Err(PgError::Closed)
                }
                Message::NoticeResponse(_) | Message::ParameterStatus(_) => continue,
                _ => {
                    return Err(PgError::Protocol(
                        "unexpected message in the replication stream".into(),
                    ))
                }
            }
        }
    }

    /// Waits for more bytes from the server. Cancel-safe: use it in `select!`.
    pub async fn fill(&mut self) -> Result<(), PgError> {
        self.conn.fill().await
    }

    /// Reports `flushed` as written, flushed and applied. The server takes it as the
    /// slot's confirmed position: only pass positions that are durable downstream.
    pub async fn send_status(
        &mut self,
        flushed: Lsn,
        reply_requested: bool,
    ) -> Result<(), PgError> {
        if flushed > self.reported_flush {
            self.reported_flush = flushed;
        }
        let lsn = self.reported_flush.0;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(PG_EPOCH_OFFSET_MICROS)
            - PG_EPOCH_OFFSET_MICROS;
        let mut payload = [0u8; 34];
        let mut p = &mut payload[..];
        p.put_u8(b'r');
        p.put_u64(lsn);
        p.put_u64(lsn);
        p.put_u64(lsn);
        p.put_i64(now);
        p.put_u8(u8::from(reply_requested));
        let buf = self.conn.write_buf();
        buf.put_u8(b'd');
        buf.put_i32(4 + payload.len() as i32);
        buf.put_slice(&payload);
        self.conn.flush().await
    }

    pub fn reported_flush(&self) -> Lsn {
        self.reported_flush
    }

    /// Ends the stream with CopyDone and closes the connection.
    pub async fn close(mut self) {
        let buf = self.conn.write_buf();
        buf.put_u8(b'c');
        buf.put_i32(4);
        let _ = self.conn.flush().await;
        self.conn.close().await;
    }
}

fn parse_copy_data(mut data: Bytes) -> Result<ReplicationMessage, PgError> {
    if data.is_empty() {
        return Err(PgError::Protocol("empty CopyData".into()));
    }
    match data.get_u8() {
        b'w' => {
            if data.len() < 24 {
                return Err(PgError::Protocol("short XLogData header".into()));
            }
            let wal_start = Lsn(data.get_u64());
            let wal_end = Lsn(data.get_u64());
            let _server_clock = data.get_i64();
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
            })
        }
        b'k' => {
            if data.len() < 17 {
                return Err(PgError::Protocol("short keepalive".into()));
            }
            let wal_end = Lsn(data.get_u64());
            let _server_clock = data.get_i64();
            let reply_requested = data.get_u8() != 0;
            Ok(ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
            })
        }
        tag => Err(PgError::Protocol(format!(
            "unknown CopyData message {:?}",
            tag as char
        ))),
    }
}

//! A replication-mode connection (`replication=database`) spoken with `postgres-protocol`.

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{ConnectParams, PgError, TlsMode};

pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// Session settings that fix the text form of values for the decoder.
const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "iso_8601"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
];

pub struct ReplicationConnection {
    io: Box<dyn AsyncStream>,
    pub(crate) read_buf: BytesMut,
    write_buf: BytesMut,
    params: ConnectParams,
}

/// Rows of a simple-query result, as text.
pub type Rows = Vec<Vec<Option<String>>>;

impl ReplicationConnection {
    pub async fn connect(params: &ConnectParams) -> Result<Self, PgError> {
        let endpoint = params.endpoint();
        let tcp = tokio::time::timeout(
            params.connect_timeout,
            TcpStream::connect((params.host.as_str(), params.port)),
        )
        .await
        .map_err(|_| PgError::ConnectTimeout(endpoint.clone()))?
        .map_err(|source| PgError::Connect {
            endpoint: endpoint.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let io = negotiate_tls(tcp, params).await?;
        let mut conn = ReplicationConnection {
            io,
            read_buf: BytesMut::with_capacity(256 * 1024),
            write_buf: BytesMut::with_capacity(1024),
            params: params.clone(),
        };
        tokio::time::timeout(params.connect_timeout, conn.startup())
            .await
            .map_err(|_| PgError::ConnectTimeout(endpoint))??;
        Ok(conn)
    }

    async fn startup(&mut self) -> Result<(), PgError> {
        let mut startup: Vec<(&str, &str)> = vec![
            ("user", self.params.user.as_str()),
            ("database", self.params.dbname.as_str()),
            ("replication", "database"),
            ("application_name", self.params.application_name.as_str()),
        ];
        startup.extend_from_slice(SESSION_SETTINGS);
        frontend::startup_message(startup.iter().copied(), &mut self.write_buf)?;
        self.flush().await?;
        self.authenticate().await?;
        loop {
            match self.read_message().await? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                _ => {}
            }
        }
    }

    async fn authenticate(&mut self) -> Result<(), PgError> {
        let auth_err = |this: &Self, message: String| PgError::Auth {
            user: this.params.user.clone(),
            endpoint: this.params.endpoint(),
            message,
        };
        let configured = self.params.password.as_ref().map(|p| p.as_bytes().to_vec());
        let no_password = auth_err(
            self,
            "the server asks for a password and none is configured".into(),
        );
        let password = move || configured.ok_or(no_password);
        match self.read_message().await? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let pw = password()?;
                frontend::password_message(&pw, &mut self.write_buf)?;
                self.flush().await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let pw = password()?;
                let hash = md5_hash(self.params.user.as_bytes(), &pw, body.salt());
                frontend::password_message(hash.as_bytes(), &mut self.write_buf)?;
                self.flush().await?;
            }
            Message::AuthenticationSasl(body) => {
                let pw = password()?;
                let mut mechanisms = body.mechanisms();
                let mut scram = false;
                while let Some(m) = mechanisms.next()? {
                    scram |= m == sasl::SCRAM_SHA_256;
                }
                if !scram {
                    return Err(auth_err(self, "the server offers no SASL mechanism Tributary supports (SCRAM-SHA-256)".into()));
                }
                let mut client = sasl::ScramSha256::new(&pw, sasl::ChannelBinding::unsupported());
                frontend::sasl_initial_response(sasl::SCRAM_SHA_256, client.message(), &mut self.write_buf)?;
                self.flush().await?;
                match self.read_message().await? {
                    Message::AuthenticationSaslContinue(body) => client.update(body.data())?,
                    Message::ErrorResponse(body) => return Err(self.auth_failure(&body)),
                    _ => return Err(PgError::Protocol("unexpected message during SCRAM".into())),
                }
                frontend::sasl_response(client.message(), &mut self.write_buf)?;
                self.flush().await?;
                match self.read_message().await? {
                    Message::AuthenticationSaslFinal(body) => client.finish(body.data())?,
                    Message::ErrorResponse(body) => return Err(self.auth_failure(&body)),
                    _ => return Err(PgError::Protocol("unexpected message during SCRAM".into())),
                }
            }
            Message::ErrorResponse(body) => return Err(self.auth_failure(&body)),
            _ => {
                return Err(auth_err(self, "the server asks for an authentication method Tributary does not support (use trust, md5 or scram-sha-256)".into()))
            }
        }
        match self.read_message().await? {
            Message::AuthenticationOk => Ok(()),
            Message::ErrorResponse(body) => Err(self.auth_failure(&body)),
            _ => Err(PgError::Protocol("expected AuthenticationOk".into())),
        }
    }

    fn auth_failure(&self, body: &ErrorResponseBody) -> PgError {
        match server_error(body) {
            PgError::Server { code, message, .. } if code == "28P01" || code == "28000" => {
                PgError::Auth {
                    user: self.params.user.clone(),
                    endpoint: self.params.endpoint(),
                    message,
                }
            }
            other => other,
        }
    }

    /// Runs a replication command or plain SQL with the simple query protocol.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Rows, PgError> {
        frontend::query(sql, &mut self.write_buf)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.read_message().await? {
                Message::DataRow(body) => {
                    let buf = body.buffer();
                    let mut row = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) = ranges.next()? {
                        row.push(match range {
                            Some(r) => Some(
                                std::str::from_utf8(buf.get(r).unwrap_or_default())
                                    .map_err(|_| {
                                        PgError::Protocol("non-UTF-8 text in a query result".into())
                                    })?
                                    .to_string(),
                            ),
                            None => None,
                        });
                    }
                    rows.push(row);
                }
                Message::ErrorResponse(body) => error = Some(server_error(&body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Sends START_REPLICATION and waits for CopyBothResponse.
    pub(crate) async fn start_copy_both(&mut self, command: &str) -> Result<(), PgError> {
        frontend::query(command, &mut self.write_buf)?;
        self.flush().await?;
        loop {
            // CopyBothResponse ('W') is not in postgres-protocol's Message enum: read the raw header.
            self.fill_at_least(5).await?;
            let tag = self.read_buf[0];
            let len = u32::from_be_bytes([
                self.read_buf[1],
                self.read_buf[2],
                self.read_buf[3],
                self.read_buf[4],
            ]) as usize;
            if tag == b'W' {
                self.fill_at_least(1 + len).await?;
                self.read_buf.advance(1 + len);
                return Ok(());
            }
            match self.read_message().await? {
                Message::ErrorResponse(body) => {
                    let err = server_error(&body);
                    // Drain to ReadyForQuery so the connection stays usable.
                    loop {
                        if let Message::ReadyForQuery(_) = self.read_message().await? {
                            break;
                        }
                    }
                    return Err(err);
                }
                Message::NoticeResponse(_) | Message::ParameterStatus(_) => {}
                _ => {
                    return Err(PgError::Protocol(
                        "unexpected reply to START_REPLICATION".into(),
                    ))
                }
            }
        }
    }

    pub(crate) async fn fill_at_least(&mut self, n: usize) -> Result<(), PgError> {
        while self.read_buf.len() < n {
            self.fill().await?;
        }
        Ok(())
    }

    /// Reads more bytes from the socket into the buffer. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> Result<(), PgError> {
        if self.read_buf.capacity() - self.read_buf.len() < 64 * 1024 {
            self.read_buf.reserve(256 * 1024);
        }
        let n = self.io.read_buf(&mut self.read_buf).await?;
        if n == 0 {
            return Err(PgError::Closed);
        }
        Ok(())
    }

    pub(crate) async fn read_message(&mut self) -> Result<Message, PgError> {
        loop {
            // `Message::parse` reserves room for the length a header declares before the bytes
            // arrive; no server message can exceed PostgreSQL's own allocation limit (1 GB), so a
            // larger length is a broken or hostile peer, refused before anything is reserved.
            if self.read_buf.len() >= 5 {
                let len = u32::from_be_bytes([
                    self.read_buf[1],
                    self.read_buf[2],
                    self.read_buf[3],
                    self.read_buf[4],
                ]);
                if len as usize > MAX_MESSAGE_BYTES {
                    return Err(PgError::Protocol(format!(
                        "server message of {len} bytes (tag {:?}) exceeds the {MAX_MESSAGE_BYTES}-byte limit",
                        self.read_buf[0] as char
                    )));
                }
            }
            if let Some(m) = Message::parse(&mut self.read_buf)? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }

    pub(crate) fn write_buf(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    pub(crate) async fn flush(&mut self) -> Result<(), PgError> {
        self.io.write_all(&self.write_buf).await?;
        self.io.flush().await?;
        self.write_buf.clear();
        Ok(())
    }

    /// Ends the session politely; errors are irrelevant at that point.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}

/// PostgreSQL's MaxAllocSize: no backend message can be larger.
const MAX_MESSAGE_BYTES: usize = 0x3fff_ffff;

pub(crate) fn server_error(body: &ErrorResponseBody) -> PgError {
    let mut code = String::new();
    let mut message = String::new();
    let mut detail = None;
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'D' => detail = Some(String::from_utf8_lossy(f.value_bytes()).into_owned()),
            _ => {}
        }
    }
    PgError::Server {
        code,
        message,
        detail,
    }
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    params: &ConnectParams,
) -> Result<Box<dyn AsyncStream>, PgError> {
    if params.tls == TlsMode::Disable {
        return Ok(Box::new(tcp));
    }
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        if params.tls == TlsMode::Prefer {
            return Ok(Box::new(tcp));
        }
        return Err(PgError::Tls(format!(
            "server {} does not accept TLS connections",
            params.endpoint()
        )));
    }
    let connector = tokio_rustls::TlsConnector::from(params.rustls_config()?);
    let name = rustls::pki_types::ServerName::try_from(params.host.clone())
        .map_err(|e| PgError::Tls(format!("invalid server name {:?}: {e}", params.host)))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| PgError::Tls(format!("handshake with {}: {e}", params.endpoint())))?;
    Ok(Box::new(tls))
}

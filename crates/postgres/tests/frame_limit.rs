//! A server message whose header declares more than PostgreSQL can ever send (its 1 GB
//! allocation limit) is refused before anything is reserved for it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary_postgres::replication::ReplicationConnection;
use tributary_postgres::{ConnectParams, PgError, TlsMode};

#[tokio::test]
async fn a_message_longer_than_postgres_allows_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        // The startup message: length-prefixed; read it whole, then answer with a header
        // declaring a 2 GiB message.
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).await.unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        sock.read_exact(&mut rest).await.unwrap();
        sock.write_all(&[b'R', 0x7f, 0xff, 0xff, 0xf0, 0, 0, 0, 0])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let params = ConnectParams {
        host: "127.0.0.1".into(),
        port,
        user: "u".into(),
        password: None,
        dbname: "d".into(),
        tls: TlsMode::Disable,
        root_cert: None,
        connect_timeout: Duration::from_secs(3),
        application_name: "frame-limit-test".into(),
    };
    let err = ReplicationConnection::connect(&params)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, PgError::Protocol(m) if m.contains("exceeds")),
        "{err:?}"
    );
    peer.abort();
}

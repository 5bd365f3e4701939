//! One mTLS exchange over loopback TCP between two rustls configs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::workload::spiffe_id_from_certificate;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long one end waits for the other.
const PATIENCE: Duration = Duration::from_secs(30);

/// What each end of a connection saw of the other.
#[derive(Debug)]
pub struct Exchange {
    /// The client's leaf, as the server received it.
    pub client_leaf: Vec<u8>,
    /// The server's leaf, as the client received it.
    pub server_leaf: Vec<u8>,
    /// The server's answer to the client's line.
    pub reply: String,
}

/// One mTLS connection over loopback TCP: a TLS handshake with the two
/// configs, a line from the client and the server's answer naming the
/// SPIFFE ID it saw. `Err` with both ends' errors if either end failed.
pub async fn exchange(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<Exchange, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server_end = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| format!("server handshake: {e}"))?;
        let client_leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let peer = spiffe_id_from_certificate(&client_leaf).map_err(|e| e.to_string())?;
        let mut tls = BufReader::new(tls);
        let mut line = String::new();
        tls.read_line(&mut line)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        tls.write_all(format!("hello {peer}\n").as_bytes())
            .await
            .map_err(|e| format!("server write: {e}"))?;
        tls.shutdown().await.ok();
        Ok::<_, String>(client_leaf)
    });
    let client_end = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        // Any name: SPIFFE checks the server's SPIFFE ID, not its name.
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("client handshake: {e}"))?;
        let server_leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let mut tls = BufReader::new(tls);
        tls.write_all(b"ping\n")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut reply = String::new();
        tls.read_line(&mut reply)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        if reply.is_empty() {
            return Err("client read: the server closed the connection".to_owned());
        }
        Ok::<_, String>((server_leaf, reply.trim_end().to_owned()))
    };
    let client_result = tokio::time::timeout(PATIENCE, client_end)
        .await
        .map_err(|_| "client timed out".to_owned())
        .and_then(|r| r);
    let server_result = tokio::time::timeout(PATIENCE, server_end)
        .await
        .map_err(|_| "server timed out".to_owned())
        .and_then(|joined| joined.map_err(|e| e.to_string()))
        .and_then(|r| r);
    match (client_result, server_result) {
        (Ok((server_leaf, reply)), Ok(client_leaf)) => Ok(Exchange {
            client_leaf,
            server_leaf,
            reply,
        }),
        (client, server) => Err(format!("client: {client:?}; server: {server:?}")),
    }
}

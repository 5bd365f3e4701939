//! Connection limits on the broker port: clients that complete the TLS
//! handshake and then say nothing, or speak HTTP/2 and then make no request,
//! lose their connection within the configured time; connections without a
//! client certificate, and connections from one address, are capped so
//! that workloads with an SVID are always served. Each refusal runs next to
//! a positive control.
//!
//! The deadlines asserted here are generous multiples of the configured
//! timeouts: they check that a connection is closed, not how fast.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::TestBroker;
use mayfly_sdk::proto::v1 as pb;
use rustls::pki_types::ServerName;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::client::TlsStream;
use tokio_stream::StreamExt as _;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
/// An HTTP/2 PING frame with an 8-byte payload.
const PING: [u8; 17] = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
const HOME: [u8; 4] = [127, 0, 0, 1];
const ELSEWHERE: [u8; 4] = [127, 0, 0, 2];
/// How long a test waits for something the server should do within a
/// second or two.
const PATIENCE: Duration = Duration::from_secs(10);

fn client_config(broker: &TestBroker) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&broker.bundle_pem()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A TLS connection without a client certificate from `from` (any port),
/// which has sent nothing yet.
async fn tls_from(broker: &TestBroker, from: [u8; 4]) -> io::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    // All of 127/8 is loopback on Linux: a second client address.
    socket.bind(SocketAddr::new(IpAddr::from(from), 0))?;
    let tcp = socket.connect(broker.server().grpc_addr()).await?;
    let name = ServerName::IpAddress(IpAddr::from(HOME).into());
    let connector = tokio_rustls::TlsConnector::from(client_config(broker));
    timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))?
}

/// Sends the preface and SETTINGS, and waits for the server's SETTINGS:
/// the server speaks HTTP/2 on this connection.
async fn speak_http2(stream: &mut TlsStream<TcpStream>) -> io::Result<()> {
    stream.write_all(PREFACE).await?;
    stream.write_all(&EMPTY_SETTINGS).await?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut header = [0u8; 9];
        timeout_at(deadline, stream.read_exact(&mut header)).await??;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; length];
        timeout_at(deadline, stream.read_exact(&mut payload)).await??;
        if header[3] == 4 {
            return Ok(());
        }
    }
}

/// A connection from `from` on which the server speaks HTTP/2.
async fn http2_from(broker: &TestBroker, from: [u8; 4]) -> io::Result<TlsStream<TcpStream>> {
    let mut stream = tls_from(broker, from).await?;
    speak_http2(&mut stream).await?;
    Ok(stream)
}

/// Whether the server closes the connection (end of stream or an error)
/// within `within`; whatever it sends before is read and dropped.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 1024];
    loop {
        match timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A GetBundle over a new connection without a client certificate.
async fn anonymous_call(broker: &TestBroker) -> Result<pb::Bundle, String> {
    let mut client = mayfly_sdk::client::connect_broker(&broker.url(), &broker.bundle_pem(), None)
        .await
        .map_err(|e| e.to_string())?;
    client
        .get_bundle(pb::GetBundleRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| e.to_string())
}

/// Retries `call` until it succeeds or `PATIENCE` runs out.
async fn eventually<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    mut call: impl FnMut() -> F,
) -> Result<T, E> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test]
async fn idle_anonymous_connections_cannot_lock_out_workloads_with_an_svid() {
    // The handshake timeout is long here so that the silent connections
    // stay for the whole test: this is about the caps, not the timeout.
    let broker = TestBroker::start_configured(|c| {
        c.limits.max_connections = 20;
        c.limits.max_anonymous_connections = Some(10);
        c.limits.handshake_timeout = Duration::from_secs(60);
        c.limits.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let (_, svid) = broker.enrolled("/workload", &["aud"]).await;

    // 30 clients complete the TLS handshake and send nothing.
    let mut silent = Vec::new();
    let mut refused_at_handshake = 0;
    for _ in 0..30 {
        match tls_from(&broker, HOME).await {
            Ok(stream) => silent.push(stream),
            Err(_) => refused_at_handshake += 1,
        }
    }
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in silent {
        checks.spawn(async move {
            let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
            (closed, stream)
        });
    }
    let mut held = Vec::new();
    let mut refused = refused_at_handshake;
    while let Some(checked) = checks.join_next().await {
        match checked.unwrap() {
            (false, stream) => held.push(stream),
            (true, _) => refused += 1,
        }
    }
    assert_eq!(held.len(), 10, "the anonymous cap holds ten");
    assert_eq!(refused, 20, "the rest is closed after the handshake");

    // While they hold their slots, a workload with an SVID is served...
    let minted = broker.mint(&svid, "aud", 60).await.unwrap();
    assert!(!minted.token.is_empty());
    broker.renew(&svid).await.unwrap();
    // ...and another anonymous client is not: the silent ones do hold slots.
    assert!(anonymous_call(&broker).await.is_err());

    drop(held);
    // positive control: with the slots free, anonymous clients are served.
    eventually(|| anonymous_call(&broker)).await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_sends_the_preface_is_cut_at_the_handshake_timeout() {
    let broker = TestBroker::start_configured(|c| {
        c.limits.handshake_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut silent = tls_from(&broker, HOME).await.unwrap();
    let mut speaking = http2_from(&broker, HOME).await.unwrap();
    assert!(closed_within(&mut silent, PATIENCE).await);
    // control: a client that sent the preface in time outlives the
    // handshake timeout several times over.
    assert!(!closed_within(&mut speaking, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn a_client_that_sends_something_else_than_http2_is_cut_at_once() {
    let broker = TestBroker::start_configured(|c| {
        c.limits.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let mut http1 = tls_from(&broker, HOME).await.unwrap();
    http1
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut http1, PATIENCE).await);
    // positive control: the preface, on the same server, is answered.
    http2_from(&broker, HOME).await.unwrap();
}

#[tokio::test]
async fn idle_means_no_request_in_flight_not_no_bytes() {
    let idle = Duration::from_secs(2);
    let broker = TestBroker::start_configured(move |c| {
        c.limits.handshake_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = idle;
    })
    .await;

    // A client that speaks HTTP/2, makes no request and pings every 300 ms.
    let (mut reader, mut writer) = tokio::io::split(http2_from(&broker, HOME).await.unwrap());
    let pinger = tokio::spawn(async move {
        while writer.write_all(&PING).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    // A silent server stream (WatchBundle sends only on change) on a
    // connection with nothing else in flight.
    let mut watcher = broker.broker().await;
    let mut bundles = watcher
        .watch_bundle(pb::WatchBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = timeout(PATIENCE, bundles.next()).await.unwrap().unwrap();
    assert_eq!(first.unwrap().x509_authorities.len(), 1);
    // A unary client whose connection will be closed under it.
    let mut unary = broker.broker().await;
    unary.get_bundle(pb::GetBundleRequest {}).await.unwrap();

    assert!(
        closed_within(&mut reader, idle * 5).await,
        "pings do not keep an idle connection open"
    );
    pinger.abort();

    // The stream outlived the idle timeout several times over: it still
    // delivers the next bundle (a new root joins it).
    tokio::time::sleep(idle * 2).await;
    broker
        .admin()
        .await
        .ca_prepare(pb::CaPrepareRequest::default())
        .await
        .unwrap();
    let next = timeout(PATIENCE, bundles.next()).await.unwrap().unwrap();
    assert_eq!(next.unwrap().x509_authorities.len(), 2);
    // A client whose idle connection was closed just reconnects.
    unary.get_bundle(pb::GetBundleRequest {}).await.unwrap();
}

#[tokio::test]
async fn one_address_is_capped_and_other_addresses_are_served() {
    let broker = TestBroker::start_configured(|c| {
        c.limits.max_connections_per_peer = 3;
        c.limits.handshake_timeout = Duration::from_secs(60);
        c.limits.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut from_elsewhere = Vec::new();
    for _ in 0..3 {
        from_elsewhere.push(http2_from(&broker, ELSEWHERE).await.unwrap());
    }
    // One more from the same address is closed at once (well before any
    // timeout), whether during the TLS handshake or just after it.
    let refused = match tls_from(&broker, ELSEWHERE).await {
        Err(_) => true,
        Ok(mut stream) => closed_within(&mut stream, PATIENCE).await,
    };
    assert!(refused, "a fourth connection from 127.0.0.2");
    // Another address is served, by tonic and raw.
    anonymous_call(&broker).await.unwrap();
    http2_from(&broker, HOME).await.unwrap();
    // positive control: the cap counts open connections; closing one lets
    // the address in again.
    drop(from_elsewhere.pop());
    eventually(|| http2_from(&broker, ELSEWHERE)).await.unwrap();
}

//! TLS for the broker port: rustls on aws-lc-rs, a server certificate from
//! the broker's own CA that is re-issued before it expires and whenever the
//! CA rotates, and optional client certificates (mTLS) verified against
//! every published root (so a root rotation needs no restart).
//!
//! Connections are accepted here rather than by tonic so that each one
//! carries its peer certificates and its connection-limit slots, a slow
//! handshake cannot hold up the accept loop, and a client that never speaks
//! HTTP/2 is cut before tonic sees it (see [`super::connections`] for the
//! limits on the rest of a connection's life).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use mayfly_ca::CertificateAuthority;
use mayfly_sdk::SpiffeId;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::coalesce::CoalescedWrites;
use super::connections::{
    ConnectionActivity, IdleDeadline, PeerConnections, PeerSlot, deadline_after,
};
use crate::clock::Clock;
use crate::config::Limits;

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, leaf first, when it sent one. It has
    /// already been verified against the trust bundle by rustls.
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// What the handlers made of the client certificate, worked out on the
    /// connection's first request and shared by the rest (parsing a
    /// certificate per request would cost more than the request).
    pub caller: Arc<std::sync::OnceLock<CallerOutcome>>,
    /// Requests in flight on the connection, for its idle timeout.
    pub activity: Arc<ConnectionActivity>,
}

/// The caller a client certificate names, or why it names none.
pub type CallerOutcome = Result<Arc<crate::mint::Caller>, (tonic::Code, String)>;

/// One accepted TLS connection whose client has sent the HTTP/2 preface.
#[derive(Debug)]
pub struct TlsConnection {
    /// Writes held until h2's flush, and that flush one scheduler turn
    /// later, so that the responses of a busy moment share a `writev` and
    /// TLS records.
    stream: CoalescedWrites<TlsStream<TcpStream>>,
    info: PeerInfo,
    /// How much of the preface, read and checked before the connection was
    /// handed on, hyper has been given back.
    preface_replayed: usize,
    idle: IdleDeadline,
    /// The connection was idle too long; every read now ends it.
    closed_as_idle: bool,
    /// The last read returned data (maybe a request not yet counted).
    bytes_just_read: bool,
    _slots: ConnectionSlots,
}

/// The limits a connection counts against until it is dropped.
#[derive(Debug)]
struct ConnectionSlots {
    _any: OwnedSemaphorePermit,
    _peer: PeerSlot,
    /// Held by connections without a client certificate.
    anonymous: Option<OwnedSemaphorePermit>,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = HTTP2_PREFACE.get(this.preface_replayed..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.preface_replayed += n;
            return Poll::Ready(Ok(()));
        }
        if this.closed_as_idle || this.idle.poll_expired(cx, this.bytes_just_read) {
            if !this.closed_as_idle {
                tracing::debug!(remote_addr = ?this.info.remote_addr, "closing an idle connection");
                this.closed_as_idle = true;
            }
            // An empty read is end of stream: hyper closes the connection.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.bytes_just_read = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        polled
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves the current server certificate; swapped without a lock when it is
/// re-issued.
#[derive(Debug)]
pub struct ServerCertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Why the broker's TLS could not be set up (or its certificate renewed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The broker's SPIFFE ID cannot be made in this trust domain.
    #[error("the broker's SPIFFE ID: {0}")]
    ServerId(#[source] mayfly_sdk::SpiffeIdError),
    /// The CA would not issue the broker's certificate.
    #[error("issuing the broker's certificate: {0}")]
    Issue(#[source] mayfly_ca::CaError),
    /// rustls refused the broker's key.
    #[error("loading the broker's key: {0}")]
    Key(#[source] rustls::Error),
    /// rustls refused a root of the trust domain.
    #[error("trusting the CA's roots: {0}")]
    Roots(#[source] rustls::Error),
    /// The client-certificate verifier cannot be built.
    #[error("verifying client certificates: {0}")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
    /// The protocol versions are refused by the crypto provider.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// Verifies client certificates against the roots the CA publishes now;
/// rebuilt (and swapped without a lock) when they change.
#[derive(Debug)]
pub struct ClientRoots {
    ca: Arc<CertificateAuthority>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<(u64, Arc<dyn ClientCertVerifier>)>,
}

impl ClientRoots {
    fn new(ca: Arc<CertificateAuthority>, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let generation = ca.generation();
        let verifier = build_client_verifier(&ca, &provider)?;
        Ok(ClientRoots {
            ca,
            provider,
            current: ArcSwap::from_pointee((generation, verifier)),
        })
    }

    /// The verifier for the CA's current roots.
    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        let current = self.current.load();
        let generation = self.ca.generation();
        if current.0 == generation {
            return current.1.clone();
        }
        match build_client_verifier(&self.ca, &self.provider) {
            Ok(verifier) => {
                self.current.store(Arc::new((generation, verifier.clone())));
                verifier
            }
            Err(error) => {
                tracing::error!(%error, "cannot trust the CA's new roots; keeping the old ones");
                current.1.clone()
            }
        }
    }
}

fn build_client_verifier(
    ca: &CertificateAuthority,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for root in ca.bundle(0, Duration::ZERO).x509_authorities {
        roots
            .add(CertificateDer::from(root))
            .map_err(TlsError::Roots)?;
    }
    // Client certificates are optional at the TLS layer: attestation and
    // validation need none; the handlers that need one insist on it.
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(TlsError::ClientVerifier)
}

impl ClientCertVerifier for ClientRoots {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; SPIFFE clients present their one SVID anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }

    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }
}

/// Issues the broker's TLS certificates.
#[derive(Debug)]
pub struct ServerIdentity {
    ca: Arc<CertificateAuthority>,
    ttl: Duration,
    spiffe_id: SpiffeId,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    provider: Arc<CryptoProvider>,
}

impl ServerIdentity {
    /// The broker's identity is `spiffe://<td>/mayfly/server`, with
    /// `localhost`, the loopback addresses and the configured names as SANs.
    /// Its certificate lives `ttl` (the longest X509-SVID lifetime, so that
    /// an old intermediate is never needed longer for the broker than for
    /// the workloads) and is re-issued at half.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        ttl: Duration,
        extra_dns_names: &[String],
        extra_ip_addresses: &[IpAddr],
    ) -> Result<Self, TlsError> {
        let spiffe_id =
            SpiffeId::new(ca.trust_domain(), "/mayfly/server").map_err(TlsError::ServerId)?;
        let mut dns_names = vec!["localhost".to_owned()];
        dns_names.extend(extra_dns_names.iter().cloned());
        dns_names.dedup();
        let mut ip_addresses: Vec<IpAddr> =
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        ip_addresses.extend(extra_ip_addresses.iter().copied());
        ip_addresses.dedup();
        Ok(ServerIdentity {
            ca,
            ttl,
            spiffe_id,
            dns_names,
            ip_addresses,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        })
    }

    /// The broker's own SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Half the life a certificate issued now gets (it never outlives the
    /// intermediate), at least a second.
    fn half_life(&self, clock: &dyn Clock) -> Duration {
        let until_signer_ends = self
            .ca
            .intermediate_not_after()
            .duration_since(clock.now())
            .unwrap_or_default();
        (self.ttl.min(until_signer_ends) / 2).max(Duration::from_secs(1))
    }

    fn issue(&self, clock: &dyn Clock) -> Result<Arc<CertifiedKey>, TlsError> {
        let issued = self
            .ca
            .issue_server_certificate(
                &self.spiffe_id,
                &self.dns_names,
                &self.ip_addresses,
                self.ttl,
                clock.now(),
            )
            .map_err(TlsError::Issue)?;
        let chain = issued
            .cert_chain_der
            .iter()
            .map(|der| CertificateDer::from(der.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            issued.private_key_pkcs8_der.to_vec(),
        ));
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(TlsError::Key)?;
        Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
    }

    /// The rustls config of the broker port, and the resolver that the
    /// renewal task updates.
    pub fn server_config(
        &self,
        clock: &dyn Clock,
    ) -> Result<(Arc<ServerConfig>, Arc<ServerCertResolver>), TlsError> {
        let resolver = Arc::new(ServerCertResolver {
            current: ArcSwap::new(self.issue(clock)?),
        });
        let verifier = Arc::new(ClientRoots::new(self.ca.clone(), self.provider.clone())?);
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok((Arc::new(config), resolver))
    }

    /// Re-issues the server certificate at half its life, and at once when
    /// the CA rotates (`ca_changes`: a new intermediate or root), until
    /// cancelled. A failed re-issue keeps the last good certificate and
    /// retries soon.
    pub async fn keep_fresh(
        self: Arc<Self>,
        resolver: Arc<ServerCertResolver>,
        clock: Arc<dyn Clock>,
        mut ca_changes: tokio::sync::watch::Receiver<u64>,
        cancel: CancellationToken,
    ) {
        let mut wait = self.half_life(clock.as_ref());
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                Ok(()) = ca_changes.changed() => {}
            }
            match self.issue(clock.as_ref()) {
                Ok(key) => {
                    resolver.current.store(key);
                    wait = self.half_life(clock.as_ref());
                    tracing::info!("re-issued the broker's TLS certificate");
                }
                Err(error) => {
                    wait = Duration::from_secs(60);
                    tracing::error!(%error, "cannot re-issue the broker's TLS certificate; retrying in 60s");
                }
            }
        }
    }
}

/// Accepts TCP connections and admits them concurrently: at most
/// `limits.max_connections` open (handshaking ones included) and
/// `limits.max_connections_per_peer` from one address, the TLS handshake and
/// the HTTP/2 preface within `limits.handshake_timeout`, at most
/// `limits.anonymous_connection_cap()` without a client certificate. What
/// comes out has spoken HTTP/2 and closes itself after
/// `limits.idle_timeout` with nothing in flight.
///
/// The second value counts the open connections, for the metrics.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: &Limits,
    cancel: CancellationToken,
) -> (
    ReceiverStream<Result<TlsConnection, io::Error>>,
    OpenConnections,
) {
    let (sender, receiver) = mpsc::channel(128);
    let admission = Arc::new(Admission {
        acceptor: TlsAcceptor::from(config),
        peers: PeerConnections::new(limits.max_connections_per_peer),
        anonymous: Arc::new(Semaphore::new(limits.anonymous_connection_cap())),
        handshake_timeout: limits.handshake_timeout,
        idle_timeout: limits.idle_timeout,
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let open = OpenConnections {
        all: (Arc::downgrade(&permits), limits.max_connections),
        anonymous: (
            Arc::downgrade(&admission.anonymous),
            limits.anonymous_connection_cap(),
        ),
    };
    tokio::spawn(accept_loop(listener, permits, admission, sender, cancel));
    (ReceiverStream::new(receiver), open)
}

/// How many connections the gRPC listener holds now, read from the slots
/// they take.
#[derive(Debug, Clone)]
pub struct OpenConnections {
    all: (std::sync::Weak<Semaphore>, usize),
    anonymous: (std::sync::Weak<Semaphore>, usize),
}

impl OpenConnections {
    /// Open connections (handshaking ones included), and those without a
    /// client certificate; `None` once the listener is gone.
    pub fn now(&self) -> Option<(usize, usize)> {
        let held = |(slots, cap): &(std::sync::Weak<Semaphore>, usize)| {
            slots
                .upgrade()
                .map(|slots| cap.saturating_sub(slots.available_permits()))
        };
        Some((held(&self.all)?, held(&self.anonymous)?))
    }
}

async fn accept_loop(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    admission: Arc<Admission>,
    sender: mpsc::Sender<Result<TlsConnection, io::Error>>,
    cancel: CancellationToken,
) {
    loop {
        // Taken before accepting, so that a full server leaves new clients
        // in the listen backlog instead of accepting and dropping them.
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, remote_addr) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE; pausing keeps the loop from spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Dropping the socket and the permit here closes the connection
        // at once and gives the slot straight back.
        let Some(peer_slot) = admission.peers.try_open(remote_addr.ip()) else {
            tracing::debug!(%remote_addr, "refused: too many connections from this address");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let slots = ConnectionSlots {
            _any: permit,
            _peer: peer_slot,
            anonymous: None,
        };
        let admission = admission.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            if let Some(connection) = admission.establish(tcp, remote_addr, slots).await {
                let _ = sender.send(Ok(connection)).await;
            }
        });
    }
}

/// What a new connection must get through before tonic sees it.
struct Admission {
    acceptor: TlsAcceptor,
    peers: Arc<PeerConnections>,
    anonymous: Arc<Semaphore>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

impl Admission {
    /// The TLS handshake, the anonymous cap and the HTTP/2 preface, all
    /// within one deadline; `None` (logged at debug: a flood of refusals
    /// must not flood the log) when the connection is refused.
    async fn establish(
        &self,
        tcp: TcpStream,
        remote_addr: SocketAddr,
        mut slots: ConnectionSlots,
    ) -> Option<TlsConnection> {
        let deadline = deadline_after(Instant::now(), self.handshake_timeout);
        let mut stream = tls_handshake(&self.acceptor, tcp, remote_addr, deadline).await?;
        let certificates = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect()));
        if certificates.is_none() {
            let Ok(permit) = self.anonymous.clone().try_acquire_owned() else {
                tracing::debug!(%remote_addr, "refused: too many connections without a client certificate");
                return None;
            };
            slots.anonymous = Some(permit);
        }
        match timeout_at(deadline, read_preface(&mut stream)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%remote_addr, %error, "no HTTP/2 preface");
                return None;
            }
            Err(_) => {
                tracing::debug!(%remote_addr, "HTTP/2 preface timed out");
                return None;
            }
        }
        let activity = ConnectionActivity::new();
        let info = PeerInfo {
            remote_addr: Some(remote_addr),
            certificates,
            caller: Arc::default(),
            activity: activity.clone(),
        };
        Some(TlsConnection {
            stream: CoalescedWrites::new(stream),
            info,
            preface_replayed: 0,
            idle: IdleDeadline::new(activity, self.idle_timeout),
            closed_as_idle: false,
            bytes_just_read: false,
            _slots: slots,
        })
    }
}

async fn tls_handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    deadline: Instant,
) -> Option<TlsStream<TcpStream>> {
    match timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%remote_addr, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote_addr, "TLS handshake timed out");
            None
        }
    }
}

/// Reads the client's first 24 bytes and checks they are the HTTP/2
/// preface; the connection replays them to hyper.
async fn read_preface(stream: &mut TlsStream<TcpStream>) -> io::Result<()> {
    let mut preface = [0u8; HTTP2_PREFACE.len()];
    stream.read_exact(&mut preface).await?;
    if &preface != HTTP2_PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not the HTTP/2 client preface",
        ));
    }
    Ok(())
}

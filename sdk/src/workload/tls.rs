//! mTLS with X509-SVIDs: rustls configs whose certificate comes from an
//! [`X509Source`] and whose peer is verified against the source's current
//! bundle, then authorized by SPIFFE ID.
//!
//! SPIFFE authenticates a peer by the SPIFFE ID in its certificate's URI
//! SAN, not by a DNS name: the server name a client connects with is not
//! checked, and a server certificate need not name any host. Who may
//! connect is decided by an [`Authorizer`]; whether the peer's certificate
//! is still good, by the broker's revocation set when the source was built
//! [`with_revocations`](X509Source::with_revocations).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{WorkloadError, X509Source};
use crate::clock::now_unix_millis as unix_now_ms;
use crate::revocation::RevocationSet;
use crate::x509::{LeafFacts as LeafInfo, inspect_leaf};
use crate::{SpiffeId, TrustDomain};

/// Which SPIFFE IDs a peer may have. Checked after the peer's chain has
/// been verified against the bundle of its trust domain.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorizer {
    rule: Rule,
}

#[derive(Clone, PartialEq, Eq)]
enum Rule {
    TrustDomain(TrustDomain),
    Exact(SpiffeId),
    OneOf(Vec<SpiffeId>),
}

impl Authorizer {
    /// Any SPIFFE ID in `trust_domain`: every workload of the domain.
    pub fn any_in_trust_domain(trust_domain: TrustDomain) -> Self {
        Authorizer {
            rule: Rule::TrustDomain(trust_domain),
        }
    }

    /// Exactly `spiffe_id`.
    pub fn exact(spiffe_id: SpiffeId) -> Self {
        Authorizer {
            rule: Rule::Exact(spiffe_id),
        }
    }

    /// Any of `spiffe_ids`. An empty list authorizes nobody.
    pub fn one_of(spiffe_ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Authorizer {
            rule: Rule::OneOf(spiffe_ids.into_iter().collect()),
        }
    }

    /// Whether a peer with `spiffe_id` is authorized.
    pub fn authorizes(&self, spiffe_id: &SpiffeId) -> bool {
        match &self.rule {
            Rule::TrustDomain(trust_domain) => spiffe_id.is_member_of(trust_domain),
            Rule::Exact(expected) => spiffe_id == expected,
            Rule::OneOf(allowed) => allowed.contains(spiffe_id),
        }
    }
}

impl fmt::Display for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::TrustDomain(trust_domain) => write!(f, "any SPIFFE ID in {trust_domain}"),
            Rule::Exact(expected) => write!(f, "{expected}"),
            Rule::OneOf(allowed) => {
                let ids: Vec<&str> = allowed.iter().map(SpiffeId::as_str).collect();
                write!(f, "one of [{}]", ids.join(", "))
            }
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authorizer({self})")
    }
}

/// The TLS versions offered: 1.3 first, 1.2 for older peers.
static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

impl X509Source {
    /// A rustls server config for mTLS: it presents this source's current
    /// SVID and requires a client certificate that chains to the current
    /// bundle of the client's trust domain and whose SPIFFE ID `authorize`
    /// accepts; with [`with_revocations`](Self::with_revocations), one that
    /// the broker has not revoked either.
    ///
    /// Both the certificate and the bundle are read at each handshake, so
    /// one config serves across rotations. Session resumption is off: a
    /// resumed session skips verification against the current bundle and
    /// pins the certificates of the first handshake. Set ALPN and the like
    /// on the returned config.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::Tls`] if rustls refuses the configuration (a bug).
    pub fn server_config(&self, authorize: Authorizer) -> Result<ServerConfig, WorkloadError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = SpiffeVerifier::new(self.clone(), authorize, &provider, Peer::Client);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(tls_error)?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(SvidResolver {
                source: self.clone(),
            }));
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }

    /// A rustls client config for mTLS: it presents this source's current
    /// SVID and accepts a server whose certificate chains to the current
    /// bundle of the server's trust domain and whose SPIFFE ID `authorize`
    /// accepts; with [`with_revocations`](Self::with_revocations), one that
    /// the broker has not revoked either.
    ///
    /// **The server name is not checked**: SPIFFE authenticates the server
    /// by its SPIFFE ID, so connect with any name (for instance
    /// `ServerName::try_from("localhost")`); `authorize` is what decides.
    /// As for [`server_config`](Self::server_config), one config serves
    /// across rotations and session resumption is off.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::Tls`] if rustls refuses the configuration (a bug).
    pub fn client_config(&self, authorize: Authorizer) -> Result<ClientConfig, WorkloadError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = SpiffeVerifier::new(self.clone(), authorize, &provider, Peer::Server);
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(SvidResolver {
                source: self.clone(),
            }));
        config.resumption = Resumption::disabled();
        Ok(config)
    }
}

fn tls_error(error: rustls::Error) -> WorkloadError {
    WorkloadError::Tls {
        reason: error.to_string(),
    }
}

/// Presents the source's current SVID, on both sides.
#[derive(Debug)]
struct SvidResolver {
    source: X509Source,
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.source.svid().certified_key().clone())
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.source.svid().certified_key().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Which side the verifier checks.
#[derive(Debug, Clone, Copy)]
enum Peer {
    Client,
    Server,
}

/// Verifies the peer's chain with rustls-webpki against the source's
/// current bundle of the peer's trust domain, authorizes its SPIFFE ID,
/// then checks the source's revocation set, if it has one.
struct SpiffeVerifier {
    source: X509Source,
    authorize: Authorizer,
    algorithms: WebPkiSupportedAlgorithms,
    peer: Peer,
}

impl fmt::Debug for SpiffeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeVerifier")
            .field("authorize", &self.authorize)
            .field("peer", &self.peer)
            .field("revocations", &self.source.revocation_set().is_some())
            .finish_non_exhaustive()
    }
}

impl SpiffeVerifier {
    fn new(
        source: X509Source,
        authorize: Authorizer,
        provider: &CryptoProvider,
        peer: Peer,
    ) -> Self {
        SpiffeVerifier {
            source,
            authorize,
            algorithms: provider.signature_verification_algorithms,
            peer,
        }
    }

    /// X509-SVID.md §5: the leaf's SPIFFE ID names the trust domain whose
    /// bundle the chain must reach; then the application's authorization;
    /// then revocation.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let leaf = inspect_leaf(end_entity).map_err(|error| {
            rejected(WorkloadError::NotAnX509Svid {
                reason: error.to_string(),
            })
        })?;
        let trust_domain = leaf.spiffe_id.trust_domain();
        let context = self.source.context();
        let bundle = context
            .bundle(&trust_domain)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(webpki_error)?;
        let usage = match self.peer {
            Peer::Client => webpki::KeyUsage::client_auth(),
            Peer::Server => webpki::KeyUsage::server_auth(),
        };
        certificate
            .verify_for_usage(
                self.algorithms.all,
                bundle.trust_anchors(),
                intermediates,
                now,
                usage,
                // No CRLs: revocation is checked below, against the
                // broker's streamed set, which also covers identities.
                None,
                None,
            )
            .map_err(webpki_error)?;
        if !self.authorize.authorizes(&leaf.spiffe_id) {
            tracing::debug!(peer = %leaf.spiffe_id, expected = %self.authorize, "peer refused");
            return Err(rejected(WorkloadError::PeerNotAuthorized {
                peer: leaf.spiffe_id,
                expected: self.authorize.to_string(),
            }));
        }
        if let Some(revocations) = self.source.revocation_set() {
            check_revocation(revocations, leaf, now)?;
        }
        Ok(())
    }

    fn verify_tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>, // SPIFFE: the SPIFFE ID is checked instead
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The roots change with the bundle; clients have one SVID to offer
        // anyway, so no hints.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks a verified leaf against `revocations`: freshness first (failing
/// closed), then its serial, then its SPIFFE ID against `notBefore`.
///
/// Run only once the chain holds, so a forged certificate naming a revoked
/// serial is refused as invalid, never as revoked: the answer tells a
/// forger nothing about the set.
fn check_revocation(
    revocations: &RevocationSet,
    leaf: LeafInfo,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    // rustls's `now` has whole seconds, which would let the set pass up to
    // a second past its bound. Its freshness is kept in milliseconds on the
    // local clock (the watch caps the broker's word at it), so it is judged
    // there, as `JwtVerifier::verify` does.
    let checked = revocations.check_fresh(unix_now_ms()).and_then(|()| {
        revocations.check_x509(&leaf.spiffe_id, &leaf.serial, leaf.not_before, now_secs)
    });
    checked.map_err(|reason| {
        tracing::debug!(
            peer = %leaf.spiffe_id,
            serial = %leaf.serial,
            %reason,
            "peer refused by the revocation check"
        );
        rejected(WorkloadError::PeerRevoked {
            peer: leaf.spiffe_id,
            reason,
        })
    })
}

/// A certificate refused for a reason of ours.
fn rejected(error: WorkloadError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// rustls-webpki's verdict in rustls terms, so peers get the right alert.
fn webpki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let certificate_error = match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertRevoked => CertificateError::Revoked,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(certificate_error)
}

#[cfg(test)]
mod tests;

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
mod tests {
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    };

    use super::*;
    use crate::proto::workload as wl;
    use crate::revocation::{Revocation, RevocationError, RevocationKind};
    use crate::workload::X509Context;

    const API: &str = "spiffe://example.org/api";
    const WEB: &str = "spiffe://example.org/web";
    /// Serials with the high bit set, so their DER encoding has a leading
    /// zero that the canonical hex drops.
    const API_SERIAL: u64 = 0x8000_0000_0000_0a01;
    const WEB_SERIAL: u64 = 0x8000_0000_0000_0b01;
    const OTHER_SERIAL: u64 = 0x8000_0000_0000_0b02;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn now_secs() -> i64 {
        unix_now_ms() / 1000
    }

    /// The CA of example.org, issuing X509-SVIDs with rcgen.
    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: Vec<u8>,
    }

    impl Ca {
        fn new() -> Self {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let der = params.self_signed(&key).unwrap().der().to_vec();
            Ca {
                issuer: Issuer::new(params, key),
                der,
            }
        }

        /// A source with no agent behind it, holding an SVID for
        /// `spiffe_id` with `serial`, issued (`notBefore`) at `issued_at`.
        async fn source(&self, spiffe_id: &str, serial: u64, issued_at: i64) -> X509Source {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
            params.serial_number = Some(SerialNumber::from(serial));
            params.not_before = rcgen::date_time_ymd(1970, 1, 1)
                + Duration::from_secs(u64::try_from(issued_at).unwrap());
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let leaf = params.signed_by(&key, &self.issuer).unwrap();
            let response = wl::X509svidResponse {
                svids: vec![wl::X509svid {
                    spiffe_id: spiffe_id.to_owned(),
                    x509_svid: leaf.der().to_vec(),
                    x509_svid_key: key.serialize_der(),
                    bundle: self.der.clone(),
                    hint: String::new(),
                }],
                ..Default::default()
            };
            let context = X509Context::parse(response).unwrap();
            X509Source::with_fixed_context(context, None).unwrap()
        }
    }

    /// A set that has just heard from its source.
    fn fresh_set(revocations: impl IntoIterator<Item = Revocation>) -> Arc<RevocationSet> {
        let set = RevocationSet::following(Duration::from_secs(15));
        set.replace_all(revocations);
        set.mark_heard(unix_now_ms());
        Arc::new(set)
    }

    /// The revocation of one certificate, as an operator would type its
    /// serial (`openssl x509 -serial`: uppercase hex).
    fn serial_revoked(serial: u64) -> Revocation {
        let now = now_secs();
        let mut revocation = Revocation::new(
            RevocationKind::Serial,
            &format!("{serial:X}"),
            now - 10,
            Some(now + 3600),
        )
        .unwrap();
        revocation.reason = "key leaked".into();
        revocation
    }

    /// The revocation of `spiffe_id` at `revoked_at`, covering the
    /// certificates issued until then.
    fn spiffe_id_revoked(spiffe_id: &str, revoked_at: i64) -> Revocation {
        let mut revocation = Revocation::new(
            RevocationKind::SpiffeId,
            spiffe_id,
            revoked_at,
            Some(now_secs() + 3600),
        )
        .unwrap();
        revocation.subjects = vec![id(spiffe_id)];
        revocation.reason = "compromised".into();
        revocation
    }

    /// `api` serves and accepts only `web`.
    fn server_of(api: &X509Source) -> ServerConfig {
        api.server_config(Authorizer::exact(id(WEB))).unwrap()
    }

    /// `web` connects and accepts only `api`.
    fn client_of(web: &X509Source) -> ClientConfig {
        web.client_config(Authorizer::exact(id(API))).unwrap()
    }

    /// The end that refused the handshake, and its error.
    #[derive(Debug)]
    struct Refusal {
        by: &'static str,
        error: rustls::Error,
    }

    /// A TLS handshake between the two configs, in memory.
    fn handshake(server: ServerConfig, client: ClientConfig) -> Result<(), Refusal> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = rustls::Connection::Client(
            rustls::ClientConnection::new(Arc::new(client), name).unwrap(),
        );
        let mut server =
            rustls::Connection::Server(rustls::ServerConnection::new(Arc::new(server)).unwrap());
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            transfer(&mut client, &mut server).map_err(|error| Refusal {
                by: "server",
                error,
            })?;
            transfer(&mut server, &mut client).map_err(|error| Refusal {
                by: "client",
                error,
            })?;
        }
        panic!("the handshake did not finish");
    }

    /// Moves what `from` has to send to `to`, which processes it.
    fn transfer(
        from: &mut rustls::Connection,
        to: &mut rustls::Connection,
    ) -> Result<(), rustls::Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut unread = bytes.as_slice();
        while !unread.is_empty() {
            to.read_tls(&mut unread).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// The revocation refusal inside a failed handshake, checking that the
    /// right end refused the right peer.
    fn revocation_refusal(
        result: Result<(), Refusal>,
        by: &str,
        peer: &str,
    ) -> (WorkloadError, RevocationError) {
        let refusal = result.expect_err("the handshake is refused");
        assert_eq!(refusal.by, by, "{refusal:?}");
        let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) =
            &refusal.error
        else {
            panic!("not a refusal of ours: {refusal:?}");
        };
        let error = inner.downcast_ref::<WorkloadError>().unwrap().clone();
        let WorkloadError::PeerRevoked {
            peer: refused,
            reason,
        } = &error
        else {
            panic!("not refused for revocation: {error:?}");
        };
        assert_eq!(refused, &id(peer));
        let reason = reason.clone();
        (error, reason)
    }

    #[tokio::test]
    async fn an_unrevoked_peer_handshakes_when_the_set_is_fresh() {
        let ca = Ca::new();
        let issued = now_secs() - 60;
        // Revocations of other certificates and identities only.
        let set = fresh_set([
            serial_revoked(OTHER_SERIAL),
            spiffe_id_revoked("spiffe://example.org/db", now_secs()),
        ]);
        let api = ca
            .source(API, API_SERIAL, issued)
            .await
            .with_revocation_set(set.clone());
        let web = ca
            .source(WEB, WEB_SERIAL, issued)
            .await
            .with_revocation_set(set);
        assert!(api.revocation_set().is_some() && web.revocation_set().is_some());
        handshake(server_of(&api), client_of(&web)).unwrap();
    }

    #[tokio::test]
    async fn a_peer_whose_serial_is_revoked_is_refused() {
        let ca = Ca::new();
        let issued = now_secs() - 60;
        let set = fresh_set([serial_revoked(WEB_SERIAL), serial_revoked(API_SERIAL)]);
        let api = ca.source(API, API_SERIAL, issued).await;
        let web = ca.source(WEB, WEB_SERIAL, issued).await;

        // The server refuses the client …
        let server = server_of(&api.clone().with_revocation_set(set.clone()));
        let (error, reason) =
            revocation_refusal(handshake(server.clone(), client_of(&web)), "server", WEB);
        assert!(
            matches!(
                &reason,
                RevocationError::Revoked { kind: RevocationKind::Serial, value, reason, .. }
                    // A serial revocation is kept compact: its reason stays in the store.
                    if value == &format!("{WEB_SERIAL:x}") && reason.is_empty()
            ),
            "{reason:?}"
        );
        assert!(!error.is_retryable());
        assert!(
            error
                .to_string()
                .contains("peer spiffe://example.org/web refused by the revocation check"),
            "{error}"
        );
        // … but not the same workload's next certificate.
        let reissued = ca.source(WEB, OTHER_SERIAL, issued).await;
        handshake(server, client_of(&reissued)).unwrap();

        // The client refuses the server likewise.
        let client = client_of(&web.with_revocation_set(set));
        let (_, reason) =
            revocation_refusal(handshake(server_of(&api), client.clone()), "client", API);
        assert!(matches!(
            reason,
            RevocationError::Revoked {
                kind: RevocationKind::Serial,
                ..
            }
        ));
        let reissued = ca.source(API, OTHER_SERIAL, issued).await;
        handshake(server_of(&reissued), client).unwrap();
    }

    #[tokio::test]
    async fn a_peer_whose_spiffe_id_is_revoked_is_refused() {
        let now = now_secs();
        let ca = Ca::new();
        let revoked_at = now - 3600;
        let set = fresh_set([spiffe_id_revoked(WEB, revoked_at)]);
        let api = ca
            .source(API, API_SERIAL, now - 7200)
            .await
            .with_revocation_set(set.clone());
        let server = server_of(&api);

        // Issued before the revocation: covered, whatever its serial.
        let before = ca.source(WEB, WEB_SERIAL, revoked_at - 60).await;
        let (error, reason) =
            revocation_refusal(handshake(server.clone(), client_of(&before)), "server", WEB);
        assert!(
            matches!(
                &reason,
                RevocationError::Revoked { kind: RevocationKind::SpiffeId, value, .. }
                    if value == WEB
            ),
            "{reason:?}"
        );
        assert!(!error.is_retryable());
        let at = ca.source(WEB, OTHER_SERIAL, revoked_at).await;
        revocation_refusal(handshake(server.clone(), client_of(&at)), "server", WEB);

        // Issued after it (the workload was re-attested): not covered. So
        // the check reads the leaf's notBefore.
        let after = ca.source(WEB, OTHER_SERIAL, revoked_at + 60).await;
        handshake(server, client_of(&after)).unwrap();

        // Another SPIFFE ID is not covered: a client checking the same set
        // accepts the server.
        let web = after.with_revocation_set(set);
        handshake(server_of(&api), client_of(&web)).unwrap();
    }

    #[tokio::test]
    async fn a_stale_set_refuses_every_peer_until_it_hears_again() {
        let ca = Ca::new();
        let issued = now_secs() - 60;
        let set = Arc::new(RevocationSet::following(Duration::from_secs(15)));
        let api = ca
            .source(API, API_SERIAL, issued)
            .await
            .with_revocation_set(set.clone());
        let web = ca.source(WEB, WEB_SERIAL, issued).await;
        let server = server_of(&api);

        // Never heard from its source: stale.
        let (error, reason) =
            revocation_refusal(handshake(server.clone(), client_of(&web)), "server", WEB);
        assert!(
            matches!(
                reason,
                RevocationError::Stale {
                    age_secs: i64::MAX,
                    bound_secs: 15
                }
            ),
            "{reason:?}"
        );
        assert!(error.is_retryable(), "a stale set may be fresh later");
        assert!(error.to_string().contains("failing closed"), "{error}");

        // Last heard a minute ago, past its 15 s bound: still stale.
        set.mark_heard(unix_now_ms() - 60_000);
        let (_, reason) =
            revocation_refusal(handshake(server.clone(), client_of(&web)), "server", WEB);
        assert!(
            matches!(
                reason,
                RevocationError::Stale {
                    age_secs: 60..=61,
                    ..
                }
            ),
            "{reason:?}"
        );

        // Fresh again: the same config accepts the peer, so the set is read
        // at each handshake.
        set.mark_heard(unix_now_ms());
        handshake(server, client_of(&web)).unwrap();
    }

    #[tokio::test]
    async fn a_source_without_revocations_is_unaffected() {
        let ca = Ca::new();
        let issued = now_secs() - 60;
        // Revokes the client, and is stale besides.
        let set = Arc::new(RevocationSet::following(Duration::from_secs(15)));
        set.upsert(serial_revoked(WEB_SERIAL));
        let api = ca.source(API, API_SERIAL, issued).await;
        let web = ca.source(WEB, WEB_SERIAL, issued).await;
        let before = server_of(&api);
        let checking = api.clone().with_revocation_set(set);

        // The checking source refuses the client …
        revocation_refusal(
            handshake(server_of(&checking), client_of(&web)),
            "server",
            WEB,
        );
        // … the source it was made from, and a config built before, do not.
        assert!(api.revocation_set().is_none() && api.revocations().is_none());
        handshake(server_of(&api), client_of(&web)).unwrap();
        handshake(before, client_of(&web)).unwrap();
        assert!(format!("{api:?}").contains("revocations: None"), "{api:?}");
    }

    #[test]
    fn authorizers_accept_exactly_what_they_say() {
        let api = id("spiffe://example.org/api");
        let web = id("spiffe://example.org/web");
        let elsewhere = id("spiffe://other.org/api");

        let domain = Authorizer::any_in_trust_domain(TrustDomain::new("example.org").unwrap());
        assert!(domain.authorizes(&api) && domain.authorizes(&web));
        assert!(!domain.authorizes(&elsewhere));

        let exact = Authorizer::exact(api.clone());
        assert!(exact.authorizes(&api));
        assert!(!exact.authorizes(&web) && !exact.authorizes(&elsewhere));

        let some = Authorizer::one_of([api.clone(), web.clone()]);
        assert!(some.authorizes(&api) && some.authorizes(&web));
        assert!(!some.authorizes(&elsewhere));

        assert!(!Authorizer::one_of([]).authorizes(&api));
        assert_eq!(
            some.to_string(),
            "one of [spiffe://example.org/api, spiffe://example.org/web]"
        );
    }
}

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
    let mut client =
        rustls::Connection::Client(rustls::ClientConnection::new(Arc::new(client), name).unwrap());
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
    let (_, reason) = revocation_refusal(handshake(server_of(&api), client.clone()), "client", API);
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
    let (_, reason) = revocation_refusal(handshake(server.clone(), client_of(&web)), "server", WEB);
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

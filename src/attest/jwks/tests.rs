use std::time::UNIX_EPOCH;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use mayfly_sdk::jose::{JsonError, JwkError, KeyError};

use super::*;
use crate::attest::testing::{TestIssuer, TestKey, jwks_of};
use crate::clock::ManualClock;

const ISSUER: &str = "https://issuer.example";

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ))
}

fn inline(document: String) -> Result<JwksCache, JwksError> {
    JwksCache::new(ISSUER, JwksSource::Inline(document))
}

fn load_error(result: Result<JwksCache, JwksError>) -> JwksError {
    match result {
        Err(error) => error,
        Ok(cache) => panic!("expected a load error, got {cache:?}"),
    }
}

#[tokio::test]
async fn inline_rsa_and_ec_keys() {
    let rsa = TestKey::rsa(0, "r");
    let p256 = TestKey::p256("p");
    let p384 = TestKey::p384("q");
    let cache = inline(jwks_of(&[&rsa, &p256, &p384])).unwrap();
    let key = cache.key("r").await.unwrap();
    assert_eq!(key.key_type(), KeyType::Rsa { modulus_bits: 2048 });
    assert_eq!(key.algorithms(), [JwsAlgorithm::Rs256]);
    assert_eq!(
        cache.key("p").await.unwrap().algorithms(),
        [JwsAlgorithm::Es256]
    );
    assert_eq!(cache.key("q").await.unwrap().key_type(), KeyType::EcP384);
    assert_eq!(
        cache.key("zz").await.unwrap_err(),
        AttestError::UnknownKeyId {
            kid: "zz".into(),
            issuer: ISSUER.into()
        }
    );
    assert!(format!("{cache:?}").contains("keys: 3"));
}

#[test]
fn keys_mayfly_does_not_use_are_skipped() {
    let good = TestKey::p256("good");
    let mut encryption = TestKey::p256("enc").jwk();
    encryption["use"] = json!("enc");
    let mut no_kid = TestKey::p256("x").jwk();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut wrap_only = TestKey::p256("wrap").jwk();
    wrap_only["key_ops"] = json!(["wrapKey"]);
    let mut rs512 = TestKey::rsa(1, "rs512").jwk();
    rs512["alg"] = json!("RS512");
    let okp = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AAAA"});
    let p521 = json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AAAA", "y": "AAAA"});
    let document = json!({"keys": [good.jwk(), encryption, no_kid, wrap_only, rs512, okp, p521]});
    let keys = parse_jwks(document.to_string().as_bytes()).unwrap();
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
}

#[test]
fn malformed_documents_are_refused() {
    let key = TestKey::p256("k");
    // Control: the document with just the good key loads.
    inline(jwks_of(&[&key])).unwrap();

    let duplicate = jwks_of(&[&key, &TestKey::p256("k")]);
    let err = load_error(inline(duplicate));
    assert!(
        matches!(&err, JwksError::DuplicateKid { index: 1, kid } if kid == "k"),
        "{err}"
    );

    let mut private = key.jwk();
    private["d"] = json!("AAAA");
    let err = load_error(inline(json!({"keys": [private]}).to_string()));
    assert!(
        matches!(err, JwksError::PrivateKey { index: 0, .. }),
        "{err}"
    );

    let mut short = TestKey::rsa(0, "r").jwk();
    let n = URL_SAFE_NO_PAD
        .decode(short["n"].as_str().unwrap())
        .unwrap();
    short["n"] = json!(URL_SAFE_NO_PAD.encode(&n[..128]));
    let err = load_error(inline(json!({"keys": [short]}).to_string()));
    assert!(
        matches!(
            err,
            JwksError::UnusableKey {
                source: KeyError::RsaModulusSize { bits: 1024 },
                ..
            }
        ),
        "{err}"
    );

    let mut off_curve = key.jwk();
    off_curve["y"] = off_curve["x"].clone();
    let err = load_error(inline(json!({"keys": [off_curve]}).to_string()));
    assert!(
        matches!(
            err,
            JwksError::UnusableKey {
                source: KeyError::NotOnCurve { .. },
                ..
            }
        ),
        "{err}"
    );

    let mut short_x = key.jwk();
    short_x["x"] = json!("AAAA");
    let err = load_error(inline(json!({"keys": [short_x]}).to_string()));
    assert!(
        matches!(
            err,
            JwksError::InvalidJwk {
                source: JwkError::CoordinateLength { expected: 32, .. },
                ..
            }
        ),
        "{err}"
    );

    let err = load_error(inline("[]".to_owned()));
    assert!(
        matches!(
            err,
            JwksError::NotJson {
                source: JsonError::NotAnObject
            }
        ),
        "{err}"
    );
    let err = load_error(inline("not json".to_owned()));
    assert!(
        matches!(
            err,
            JwksError::NotJson {
                source: JsonError::Invalid { .. }
            }
        ),
        "{err}"
    );
    let err = load_error(inline("{\"keys\": {}}".to_owned()));
    assert!(matches!(err, JwksError::NoKeysArray), "{err}");
    let err = load_error(inline("{\"keys\": [1]}".to_owned()));
    assert!(matches!(err, JwksError::KeyNotObject { index: 0 }), "{err}");
    let err = load_error(inline("{\"keys\": []}".to_owned()));
    assert!(matches!(err, JwksError::NoUsableKey), "{err}");
    let padding = " ".repeat(MAX_JWKS_BYTES);
    let err = load_error(inline(format!("{}{padding}", jwks_of(&[&key]))));
    assert!(matches!(err, JwksError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn file_source_is_reread_for_an_unknown_kid() {
    let old = TestKey::p256("old");
    let new = TestKey::p256("new");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks_of(&[&old])).unwrap();
    let clock = clock();
    let cache =
        JwksCache::with_clock(ISSUER, JwksSource::File(path.clone()), clock.clone()).unwrap();
    assert_eq!(cache.key("old").await.unwrap().kid, "old");

    std::fs::write(&path, jwks_of(&[&old, &new])).unwrap();
    // Read at startup: not again within the interval.
    assert!(matches!(
        cache.key("new").await,
        Err(AttestError::UnknownKeyId { .. })
    ));
    clock.advance(REFETCH_INTERVAL);
    assert_eq!(cache.key("new").await.unwrap().kid, "new");

    // A file that became invalid keeps the cached keys and fails closed
    // for the others.
    std::fs::write(&path, "garbage").unwrap();
    clock.advance(REFETCH_INTERVAL);
    assert!(matches!(
        cache.key("other").await,
        Err(AttestError::Unavailable { .. })
    ));
    assert_eq!(cache.key("old").await.unwrap().kid, "old");

    let missing = dir.path().join("missing");
    let err = load_error(JwksCache::new(ISSUER, JwksSource::File(missing.clone())));
    assert!(
        matches!(&err, JwksError::ReadFile { path, .. } if *path == missing),
        "{err}"
    );
    // The message carries its cause: a chain of its sources adds nothing.
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(mayfly_sdk::error_chain(&err), err.to_string());

    // A file that is there but invalid names the file, then the problem.
    std::fs::write(&path, "{\"keys\": []}").unwrap();
    let err = load_error(JwksCache::new(ISSUER, JwksSource::File(path.clone())));
    assert!(matches!(err, JwksError::NoUsableKey), "{err}");
    std::fs::write(&path, "{\"keys\": [1]}").unwrap();
    let err = load_error(JwksCache::new(ISSUER, JwksSource::File(path.clone())));
    assert!(
        matches!(&err, JwksError::File { path: named, source } if *named == path
            && matches!(**source, JwksError::KeyNotObject { index: 0 })),
        "{err}"
    );
    assert!(err.to_string().contains("jwks.json: key 0"), "{err}");
}

#[tokio::test]
async fn discovery_fetches_lazily_and_refetches_at_most_once_per_interval() {
    let first = TestKey::rsa(0, "first");
    let second = TestKey::p256("second");
    let server = TestIssuer::start(jwks_of(&[&first])).await;
    let clock = clock();
    let source = JwksSource::Discovery {
        url: server.discovery_url(),
    };
    let cache = JwksCache::with_clock(&server.base, source, clock.clone()).unwrap();
    assert_eq!(server.jwks_hits(), 0, "discovery is fetched on first use");

    assert_eq!(cache.key("first").await.unwrap().kid, "first");
    assert_eq!((server.discovery_hits(), server.jwks_hits()), (1, 1));
    assert_eq!(cache.key("first").await.unwrap().kid, "first");
    assert_eq!(
        server.jwks_hits(),
        1,
        "known keys are served from the cache"
    );

    clock.advance(REFETCH_INTERVAL);
    assert!(matches!(
        cache.key("unknown-1").await,
        Err(AttestError::UnknownKeyId { .. })
    ));
    assert_eq!(server.jwks_hits(), 2, "an unknown kid refetches once");
    for kid in ["unknown-2", "unknown-3", "second"] {
        assert!(matches!(
            cache.key(kid).await,
            Err(AttestError::UnknownKeyId { .. })
        ));
    }
    assert_eq!(
        server.jwks_hits(),
        2,
        "no more than one refetch per interval"
    );

    // The issuer rotates: the new key is picked up by the next refetch.
    server.set_jwks(jwks_of(&[&first, &second]));
    assert!(matches!(
        cache.key("second").await,
        Err(AttestError::UnknownKeyId { .. })
    ));
    clock.advance(REFETCH_INTERVAL);
    assert_eq!(cache.key("second").await.unwrap().kid, "second");
    assert_eq!(server.jwks_hits(), 3);
}

#[tokio::test]
async fn concurrent_misses_share_one_fetch() {
    let key = TestKey::p256("k");
    let server = TestIssuer::start(jwks_of(&[&key])).await;
    let cache = JwksCache::new(
        &server.base,
        JwksSource::Discovery {
            url: server.discovery_url(),
        },
    )
    .unwrap();
    let (a, b, c) = tokio::join!(cache.key("k"), cache.key("k"), cache.key("nope"));
    assert_eq!(a.unwrap().kid, "k");
    assert_eq!(b.unwrap().kid, "k");
    assert!(matches!(c, Err(AttestError::UnknownKeyId { .. })));
    assert_eq!(server.jwks_hits(), 1);
}

#[tokio::test]
async fn withdrawn_keys_stop_verifying_and_outages_keep_cached_keys() {
    let first = TestKey::p256("first");
    let second = TestKey::p256("second");
    let server = TestIssuer::start(jwks_of(&[&first, &second])).await;
    let clock = clock();
    let source = JwksSource::Discovery {
        url: server.discovery_url(),
    };
    let cache = JwksCache::with_clock(&server.base, source, clock.clone()).unwrap();
    cache.key("first").await.unwrap();

    // The issuer is down: cached keys still verify, others fail closed.
    server.fail_with(Some(axum::http::StatusCode::SERVICE_UNAVAILABLE));
    clock.advance(MAX_KEYS_AGE);
    assert_eq!(cache.key("first").await.unwrap().kid, "first");
    let err = cache.key("third").await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable { reason } if reason.contains("503")),
        "{err}"
    );
    clock.advance(REFETCH_INTERVAL);
    let err = cache.key("third").await.unwrap_err();
    assert!(matches!(err, AttestError::Unavailable { .. }));

    // Back, without `first`: once the cached set is old, the recheck
    // withdraws `first`; `second` is still there.
    server.fail_with(None);
    server.set_jwks(jwks_of(&[&second]));
    clock.advance(REFETCH_INTERVAL);
    assert!(matches!(
        cache.key("first").await,
        Err(AttestError::UnknownKeyId { .. })
    ));
    assert_eq!(cache.key("second").await.unwrap().kid, "second");
}

#[tokio::test]
async fn discovery_document_must_name_the_issuer() {
    let key = TestKey::p256("k");
    let server = TestIssuer::start(jwks_of(&[&key])).await;
    server.set_issuer("https://someone-else.example");
    let cache = JwksCache::new(
        &server.base,
        JwksSource::Discovery {
            url: server.discovery_url(),
        },
    )
    .unwrap();
    let err = cache.key("k").await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable { reason } if reason.contains("someone-else")),
        "{err}"
    );
    assert_eq!(server.jwks_hits(), 0);
}

#[tokio::test]
async fn oversized_and_redirected_answers_are_refused() {
    let key = TestKey::p256("k");
    let server = TestIssuer::start(format!(
        "{}{}",
        jwks_of(&[&key]),
        " ".repeat(MAX_JWKS_BYTES)
    ))
    .await;
    let cache = JwksCache::new(
        &server.base,
        JwksSource::Discovery {
            url: server.discovery_url(),
        },
    )
    .unwrap();
    let err = cache.key("k").await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable { reason } if reason.contains("larger than")),
        "{err}"
    );

    server.fail_with(Some(axum::http::StatusCode::FOUND));
    let cache = JwksCache::new(
        &server.base,
        JwksSource::Discovery {
            url: server.discovery_url(),
        },
    )
    .unwrap();
    let err = cache.key("k").await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable { reason } if reason.contains("redirects")),
        "{err}"
    );
}

#[test]
fn plain_http_only_to_loopback() {
    for url in [
        "https://issuer.example/.well-known/openid-configuration",
        "http://127.0.0.1:8080/.well-known/openid-configuration",
        "http://127.1.2.3/x",
        "http://[::1]:9000/x",
    ] {
        checked_url(url).unwrap();
    }
    for url in [
        "http://10.0.0.1/.well-known/openid-configuration",
        "http://issuer.example/x",
        "http://localhost/x",
        "ftp://127.0.0.1/x",
        "https://user:pass@issuer.example/x",
        "https://issuer.example/x#frag",
        "/relative",
    ] {
        assert!(checked_url(url).is_err(), "{url}");
    }
    assert!(matches!(
        checked_url("http://10.0.0.1/x"),
        Err(UrlError::PlainHttp { .. })
    ));
    assert!(matches!(
        checked_url("ftp://127.0.0.1/x"),
        Err(UrlError::NotHttps { .. })
    ));
    assert!(matches!(
        checked_url("https://issuer.example/x#frag"),
        Err(UrlError::CredentialsOrFragment { .. })
    ));
    assert!(matches!(
        checked_url("/relative"),
        Err(UrlError::NotAbsolute { .. })
    ));
    let err = load_error(JwksCache::new(
        ISSUER,
        JwksSource::Discovery {
            url: "http://192.0.2.1/.well-known/openid-configuration".into(),
        },
    ));
    assert!(
        matches!(err, JwksError::DiscoveryUrl(UrlError::PlainHttp { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("loopback"), "{err}");
    JwksCache::new(
        ISSUER,
        JwksSource::Discovery {
            url: "http://127.0.0.1:1/x".into(),
        },
    )
    .unwrap();
}

#[test]
fn source_from_config_options() {
    let path = Path::new("/etc/jwks.json");
    assert_eq!(
        JwksSource::from_options(Some(path), None, None),
        Some(JwksSource::File(path.to_owned()))
    );
    assert_eq!(JwksSource::from_options(None, None, None), None);
    assert_eq!(
        JwksSource::from_options(Some(path), Some("https://x"), None),
        None
    );
}

//! Keys, JWKS documents, signed tokens and a local issuer for the attestors'
//! tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// RSA key generation is slow in debug builds: a few keys, made once.
fn rsa_pair(index: usize) -> &'static RsaKeyPair {
    static KEYS: OnceLock<Vec<RsaKeyPair>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..2)
            .map(|_| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
            .collect()
    })[index]
}

enum Material {
    Rsa(&'static RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str, usize),
}

/// A signing key with a `kid`.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    material: Material,
}

impl TestKey {
    /// One of two fixed RSA-2048 keys (index 0 or 1).
    pub(crate) fn rsa(index: usize, kid: &str) -> Self {
        TestKey {
            kid: kid.to_owned(),
            material: Material::Rsa(rsa_pair(index)),
        }
    }

    /// A fresh P-256 key.
    pub(crate) fn p256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        TestKey {
            kid: kid.to_owned(),
            material: Material::Ec(pair, "P-256", 32),
        }
    }

    /// A fresh P-384 key.
    pub(crate) fn p384(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        TestKey {
            kid: kid.to_owned(),
            material: Material::Ec(pair, "P-384", 48),
        }
    }

    /// The JWS algorithm this key signs with.
    pub(crate) fn alg(&self) -> &'static str {
        match &self.material {
            Material::Rsa(_) => "RS256",
            Material::Ec(_, "P-256", _) => "ES256",
            Material::Ec(..) => "ES384",
        }
    }

    /// The public JWK.
    pub(crate) fn jwk(&self) -> Value {
        match &self.material {
            Material::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Material::Ec(pair, crv, size) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "kid": self.kid, "crv": crv,
                    "x": URL_SAFE_NO_PAD.encode(&point[1..1 + size]),
                    "y": URL_SAFE_NO_PAD.encode(&point[1 + size..]),
                })
            }
        }
    }

    /// The public key bytes (PKCS#1 RSAPublicKey or SEC 1 point): what
    /// an HS256 key-confusion attack would use as the HMAC secret.
    pub(crate) fn public_key_bytes(&self) -> Vec<u8> {
        match &self.material {
            Material::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            Material::Ec(pair, ..) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs raw bytes with this key's algorithm.
    pub(crate) fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.material {
            Material::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .unwrap();
                signature
            }
            Material::Ec(pair, ..) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }

    /// A token with the usual header (`alg`, `kid`, `typ`).
    pub(crate) fn token(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// A token with `header`, signed by this key whatever it says.
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// A token whose claims are exactly `payload`.
    pub(crate) fn sign_raw(&self, payload: &[u8]) -> String {
        let header = json!({"alg": self.alg(), "kid": self.kid});
        self.sign_parts(header.to_string().as_bytes(), payload)
    }

    fn sign_parts(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self.signature(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// `header.claims.signature`, with the given signature bytes.
pub(crate) fn encode_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An HS256 token MACed with `secret`.
pub(crate) fn hs256_token(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// A JWKS document holding `keys`' public JWKs.
pub(crate) fn jwks_of(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|key| key.jwk()).collect::<Vec<_>>()}).to_string()
}

#[derive(Default)]
struct Served {
    issuer: Mutex<String>,
    jwks: Mutex<String>,
    /// When set, the server answers this status instead.
    failure: Mutex<Option<StatusCode>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

/// An OIDC issuer on 127.0.0.1 serving discovery and a JWKS; stops when
/// dropped.
pub(crate) struct TestIssuer {
    /// `http://127.0.0.1:<port>`, also the issuer.
    pub(crate) base: String,
    served: std::sync::Arc<Served>,
    task: tokio::task::JoinHandle<()>,
}

impl TestIssuer {
    pub(crate) async fn start(jwks: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(Served::default());
        *served.issuer.lock().unwrap() = base.clone();
        *served.jwks.lock().unwrap() = jwks;
        let jwks_uri = format!("{base}/keys");
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(
                    move |State(served): State<std::sync::Arc<Served>>| async move {
                        served.discovery_hits.fetch_add(1, Ordering::SeqCst);
                        if let Some(status) = *served.failure.lock().unwrap() {
                            return (status, String::new());
                        }
                        let issuer = served.issuer.lock().unwrap().clone();
                        (
                            StatusCode::OK,
                            json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string(),
                        )
                    },
                ),
            )
            .route(
                "/keys",
                get(|State(served): State<std::sync::Arc<Served>>| async move {
                    served.jwks_hits.fetch_add(1, Ordering::SeqCst);
                    served.jwks.lock().unwrap().clone()
                }),
            )
            .with_state(std::sync::Arc::clone(&served));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        TestIssuer { base, served, task }
    }

    pub(crate) fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base)
    }

    pub(crate) fn set_jwks(&self, jwks: String) {
        *self.served.jwks.lock().unwrap() = jwks;
    }

    pub(crate) fn set_issuer(&self, issuer: &str) {
        *self.served.issuer.lock().unwrap() = issuer.to_owned();
    }

    pub(crate) fn fail_with(&self, status: Option<StatusCode>) {
        *self.served.failure.lock().unwrap() = status;
    }

    pub(crate) fn jwks_hits(&self) -> usize {
        self.served.jwks_hits.load(Ordering::SeqCst)
    }

    pub(crate) fn discovery_hits(&self) -> usize {
        self.served.discovery_hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Where an issuer's signing keys come from: a JWKS file, an inline JWKS
//! document, or OIDC discovery. Keys are parsed once, when they are loaded,
//! and served from an immutable snapshot that readers never lock.
//!
//! # Refreshing
//!
//! - A token whose `kid` is not cached makes the cache reload its source
//!   (re-read the file, or fetch discovery and then `jwks_uri`) — at most
//!   once per [`REFETCH_INTERVAL`], so a flood of tokens with random `kid`s
//!   cannot hammer the issuer. Within that window an unknown `kid` is
//!   [`AttestError::UnknownKeyId`].
//! - Cached keys older than [`MAX_KEYS_AGE`] are re-checked on use, so a key
//!   the issuer withdrew (rotated out after a compromise) stops verifying.
//! - A failed load fails closed ([`AttestError::Unavailable`]) for keys not
//!   cached, and keeps serving the keys already cached.
//! - An inline document never changes.
//!
//! # Fetching
//!
//! Discovery and `jwks_uri` must be `https` URLs, verified against the
//! operating system's root certificates. Plain `http://` is accepted only
//! when the host is a literal loopback address (`127.0.0.0/8`, `[::1]`):
//! local test issuers, never a network peer. Each request has a
//! [`FETCH_TIMEOUT`], bodies are limited to [`MAX_JWKS_BYTES`], and
//! redirects are not followed (configure the final URL). The discovery
//! document's `issuer` must be the configured issuer (OpenID Connect
//! Discovery §4.3).
//!
//! # Keys
//!
//! `kty` `RSA` (2048–8192-bit modulus, for RS256) and `EC` (`P-256` for
//! ES256, `P-384` for ES384), read and parsed once by the SDK's JOSE layer
//! ([`mayfly_sdk::jose::jwk`], [`VerificationKey`]), as the SPIFFE bundle's
//! keys are. Keys with a `use` other than `sig`, `key_ops` without
//! `verify`, an `alg` other than one Mayfly would verify with, another `kty`
//! or curve, or no `kid` are skipped; a malformed key, private key material
//! or a duplicate `kid` makes the whole document invalid.
//!
//! ```
//! use mayfly::attest::jwks::{JwksCache, JwksSource};
//!
//! let document = r#"{"keys": []}"#.to_owned();
//! // A document without a usable key is refused at load: it can only be a
//! // configuration mistake.
//! assert!(JwksCache::new("https://issuer.example", JwksSource::Inline(document)).is_err());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_LENGTH, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mayfly_sdk::jose::{
    AlgorithmPolicy, JwsAlgorithm, KeyType, VerificationKey, jwk, parse_object,
};
use serde_json::{Map, Value};

use super::jwt_evidence::DEFAULT_ALGORITHMS;
use super::{AttestError, truncated};
use crate::clock::{Clock, SystemClock};

/// Largest JWKS or discovery document accepted, from a file or the network.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// An unknown `kid` reloads the source at most this often.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Cached keys older than this are re-checked against the source on use.
pub const MAX_KEYS_AGE: Duration = Duration::from_secs(5 * 60);
/// Time limit for one HTTP request, connection and body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// More usable keys than this in one document is refused: real issuers
/// publish a handful, and each RSA key costs a parse.
const MAX_KEYS: usize = 100;
const MAX_KID_BYTES: usize = 256;

/// Where an issuer's JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS file, read at startup and re-read on refresh.
    File(PathBuf),
    /// An OIDC discovery document
    /// (`<issuer>/.well-known/openid-configuration`), whose `jwks_uri` is
    /// then fetched. Fetched on first use, not at startup.
    Discovery {
        /// The discovery document's URL: `https://`, or `http://` to a
        /// loopback address.
        url: String,
    },
    /// A JWKS document itself (tests, or pasted into the config).
    Inline(String),
}

impl JwksSource {
    /// The source named by a config section's three mutually exclusive
    /// fields (`jwks_file`, `discovery_url`, `jwks`).
    ///
    /// # Errors
    ///
    /// A sentence for the operator unless exactly one is given.
    pub fn from_options(
        file: Option<&Path>,
        discovery_url: Option<&str>,
        inline: Option<&str>,
    ) -> Result<Self, String> {
        match (file, discovery_url, inline) {
            (Some(path), None, None) => Ok(JwksSource::File(path.to_owned())),
            (None, Some(url), None) => Ok(JwksSource::Discovery {
                url: url.to_owned(),
            }),
            (None, None, Some(document)) => Ok(JwksSource::Inline(document.to_owned())),
            _ => Err("set exactly one of jwks_file, discovery_url, jwks".to_owned()),
        }
    }
}

/// One issuer public key, parsed once when its JWKS was loaded.
pub struct VerifyingKey {
    /// The JWK's `kid`.
    pub kid: String,
    key: VerificationKey,
}

impl VerifyingKey {
    /// The key, for [`ParsedJws::verify`](mayfly_sdk::jose::ParsedJws::verify).
    pub fn key(&self) -> &VerificationKey {
        &self.key
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key.key_type()
    }

    /// The algorithms an attestor verifies with this key: those of its type
    /// that issuer tokens may use (an RSA key verifies RS256, not PS256).
    pub fn algorithms(&self) -> Vec<JwsAlgorithm> {
        AlgorithmPolicy::new(DEFAULT_ALGORITHMS).usable_with(self.key_type())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type())
            .finish_non_exhaustive()
    }
}

type KeyMap = HashMap<String, Arc<VerifyingKey>>;

/// An immutable snapshot of an issuer's keys.
struct KeySet {
    keys: KeyMap,
    /// When the source was last read successfully; `None` before the first
    /// discovery fetch.
    loaded_at: Option<SystemTime>,
}

/// Bookkeeping of reloads, behind the single-flight lock.
#[derive(Default)]
struct RefreshState {
    last_attempt: Option<SystemTime>,
    /// Why the last reload failed, until one succeeds.
    last_error: Option<String>,
}

impl RefreshState {
    fn may_reload(&self, now: SystemTime) -> bool {
        match self.last_attempt {
            None => true,
            // A clock that went backwards allows one early reload rather
            // than none until it catches up again.
            Some(last) => now
                .duration_since(last)
                .map_or(true, |elapsed| elapsed >= REFETCH_INTERVAL),
        }
    }
}

enum Origin {
    Inline,
    File(PathBuf),
    Discovery(Box<Discovery>),
}

/// An issuer's verifying keys, cached, with rate-limited reloads (see the
/// [module docs](self)).
pub struct JwksCache {
    issuer: String,
    origin: Origin,
    /// Readers only load this snapshot; reloads replace it whole.
    keys: ArcSwap<KeySet>,
    /// Held across a reload so that concurrent misses wait for one fetch
    /// instead of each starting their own. Known keys never touch it.
    refresh: tokio::sync::Mutex<RefreshState>,
    clock: Arc<dyn Clock>,
}

impl JwksCache {
    /// A cache of `issuer`'s keys from `source`. A file or inline document
    /// is parsed now, so a bad one is a startup error; discovery is fetched
    /// on first use.
    ///
    /// # Errors
    ///
    /// [`AttestError::Unavailable`], whose reason names the issuer and the
    /// problem: the file cannot be read, the document is invalid or has no
    /// usable key, the discovery URL is not `https` (or `http` to a
    /// loopback address), or no root certificates could be loaded.
    pub fn new(issuer: &str, source: JwksSource) -> Result<Self, AttestError> {
        Self::with_clock(issuer, source, Arc::new(SystemClock))
    }

    /// Like [`JwksCache::new`], with the clock that times reloads (tests
    /// move it instead of sleeping).
    ///
    /// # Errors
    ///
    /// As [`JwksCache::new`].
    pub fn with_clock(
        issuer: &str,
        source: JwksSource,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AttestError> {
        let unavailable = |reason: String| AttestError::Unavailable {
            reason: format!("JWKS of issuer {issuer}: {reason}"),
        };
        let now = clock.now();
        let (origin, keys, loaded_at) = match source {
            JwksSource::Inline(document) => {
                let keys = parse_jwks(document.as_bytes())
                    .and_then(non_empty)
                    .map_err(unavailable)?;
                (Origin::Inline, keys, Some(now))
            }
            JwksSource::File(path) => {
                let keys = read_jwks_file(&path)
                    .and_then(non_empty)
                    .map_err(unavailable)?;
                (Origin::File(path), keys, Some(now))
            }
            JwksSource::Discovery { url } => {
                let discovery = Discovery::new(issuer, &url).map_err(unavailable)?;
                (Origin::Discovery(Box::new(discovery)), KeyMap::new(), None)
            }
        };
        Ok(JwksCache {
            issuer: issuer.to_owned(),
            origin,
            keys: ArcSwap::from_pointee(KeySet { keys, loaded_at }),
            // Loading at startup counts as an attempt: the source is read at
            // most once per interval, whatever the reason.
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_attempt: loaded_at,
                last_error: None,
            }),
            clock,
        })
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The verifying key for `kid`.
    ///
    /// # Errors
    ///
    /// [`AttestError::UnknownKeyId`] when the key is not in the JWKS, even
    /// after the one reload the rate limit allows;
    /// [`AttestError::Unavailable`] when the key is not cached and the
    /// source cannot be read.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, AttestError> {
        let snapshot = self.keys.load_full();
        match snapshot.keys.get(kid) {
            Some(key) if self.is_stale(&snapshot) => self.recheck(kid, Arc::clone(key)).await,
            Some(key) => Ok(Arc::clone(key)),
            None => self.reload_for_unknown(kid).await,
        }
    }

    fn is_stale(&self, snapshot: &KeySet) -> bool {
        if matches!(self.origin, Origin::Inline) {
            return false;
        }
        snapshot.loaded_at.is_none_or(|loaded_at| {
            self.clock
                .now()
                .duration_since(loaded_at)
                .is_ok_and(|age| age >= MAX_KEYS_AGE)
        })
    }

    /// A cached key is old: re-read the source, unless another task is
    /// already doing it or the rate limit says no. Failing to reload keeps
    /// the cached key; a reload that no longer has it withdraws it.
    async fn recheck(
        &self,
        kid: &str,
        cached: Arc<VerifyingKey>,
    ) -> Result<Arc<VerifyingKey>, AttestError> {
        let Ok(mut state) = self.refresh.try_lock() else {
            return Ok(cached);
        };
        let now = self.clock.now();
        if !state.may_reload(now) {
            return Ok(cached);
        }
        match self.reload(&mut state, now).await {
            Ok(snapshot) => snapshot
                .keys
                .get(kid)
                .cloned()
                .ok_or_else(|| self.unknown(kid)),
            Err(_) => Ok(cached),
        }
    }

    async fn reload_for_unknown(&self, kid: &str) -> Result<Arc<VerifyingKey>, AttestError> {
        if matches!(self.origin, Origin::Inline) {
            return Err(self.unknown(kid));
        }
        let mut state = self.refresh.lock().await;
        // The reload this task waited for may have brought the key.
        if let Some(key) = self.keys.load().keys.get(kid) {
            return Ok(Arc::clone(key));
        }
        let now = self.clock.now();
        if !state.may_reload(now) {
            return Err(match &state.last_error {
                Some(reason) => AttestError::Unavailable {
                    reason: reason.clone(),
                },
                None => self.unknown(kid),
            });
        }
        let snapshot = self.reload(&mut state, now).await?;
        snapshot
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| self.unknown(kid))
    }

    /// Reads the source and publishes the new snapshot; on failure keeps the
    /// old one and remembers why.
    async fn reload(
        &self,
        state: &mut RefreshState,
        now: SystemTime,
    ) -> Result<Arc<KeySet>, AttestError> {
        state.last_attempt = Some(now);
        let loaded = match &self.origin {
            Origin::Inline => return Ok(self.keys.load_full()),
            Origin::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_jwks_file(&path))
                    .await
                    .unwrap_or_else(|e| Err(format!("reading the file failed: {e}")))
            }
            Origin::Discovery(discovery) => discovery.fetch().await,
        };
        match loaded {
            Ok(keys) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), "loaded JWKS");
                state.last_error = None;
                let snapshot = Arc::new(KeySet {
                    keys,
                    loaded_at: Some(now),
                });
                self.keys.store(Arc::clone(&snapshot));
                Ok(snapshot)
            }
            Err(reason) => {
                let reason = format!(
                    "cannot load the signing keys of issuer {}: {reason}",
                    self.issuer
                );
                tracing::warn!(%reason, "keeping the cached JWKS");
                state.last_error = Some(reason.clone());
                Err(AttestError::Unavailable { reason })
            }
        }
    }

    fn unknown(&self, kid: &str) -> AttestError {
        AttestError::UnknownKeyId {
            kid: truncated(kid),
            issuer: self.issuer.clone(),
        }
    }
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.origin {
            Origin::Inline => "inline".to_owned(),
            Origin::File(path) => format!("file {}", path.display()),
            Origin::Discovery(discovery) => format!("discovery {}", discovery.url),
        };
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("source", &source)
            .field("keys", &self.keys.load().keys.len())
            .finish_non_exhaustive()
    }
}

/// Fetches an issuer's keys through OIDC discovery.
struct Discovery {
    issuer: String,
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Discovery {
    fn new(issuer: &str, url: &str) -> Result<Self, String> {
        let uri = checked_url(url)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = if uri.scheme_str() == Some("https") {
            HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
        } else {
            // Loopback http only: no certificate is ever trusted.
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot configure TLS: {e}"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(tls)
        };
        // Every URL is checked by `checked_url` before it is requested, which
        // is what keeps plain http on loopback.
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new())
            // Fetches are minutes apart: keeping idle connections buys nothing.
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Discovery {
            issuer: issuer.to_owned(),
            url: uri,
            client,
        })
    }

    async fn fetch(&self) -> Result<KeyMap, String> {
        let body = self.get(&self.url).await?;
        let document = parse_object(&body)
            .map_err(|e| format!("the discovery document at {} is {e}", self.url))?;
        match document.get("issuer") {
            Some(Value::String(issuer)) if *issuer == self.issuer => {}
            Some(Value::String(issuer)) => {
                return Err(format!(
                    "the discovery document at {} is for issuer {:?}",
                    self.url,
                    truncated(issuer)
                ));
            }
            _ => {
                return Err(format!(
                    "the discovery document at {} has no issuer",
                    self.url
                ));
            }
        }
        let Some(Value::String(jwks_uri)) = document.get("jwks_uri") else {
            return Err(format!(
                "the discovery document at {} has no jwks_uri",
                self.url
            ));
        };
        let jwks_uri = checked_url(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        let body = self.get(&jwks_uri).await?;
        parse_jwks(&body).map_err(|e| format!("the JWKS at {jwks_uri}: {e}"))
    }

    async fn get(&self, uri: &Uri) -> Result<Vec<u8>, String> {
        let request = Request::get(uri.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| format!("GET {uri}: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("GET {uri}: {}", error_chain(&e)))?;
            let status = response.status();
            if status != StatusCode::OK {
                let hint = if status.is_redirection() {
                    " (redirects are not followed: configure the final URL)"
                } else {
                    ""
                };
                return Err(format!("GET {uri} answered {status}{hint}"));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            let too_large =
                || format!("GET {uri}: the response is larger than {MAX_JWKS_BYTES} bytes");
            if declared.is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
                return Err(too_large());
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        too_large()
                    } else {
                        format!("GET {uri}: {}", error_chain(e.as_ref()))
                    }
                })?;
            Ok(body.to_bytes().to_vec())
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("GET {uri}: no complete answer within {FETCH_TIMEOUT:?}"))?
    }
}

/// Parses a URL we are about to fetch: `https`, or `http` to a literal
/// loopback address; no credentials, no fragment.
fn checked_url(text: &str) -> Result<Uri, String> {
    let shown = truncated(text);
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("{shown:?} is not a valid URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("{shown:?} is not an absolute URL"));
    };
    if authority.as_str().contains('@') || text.contains('#') {
        return Err(format!(
            "{shown:?} must not contain credentials or a fragment"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match scheme {
        "https" => Ok(uri),
        "http" if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) => Ok(uri),
        "http" => Err(format!(
            "{shown:?} uses plain http, which is allowed only to a loopback address (127.0.0.1, [::1]); use https"
        )),
        _ => Err(format!("{shown:?} must be an https URL")),
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read_jwks_file(path: &Path) -> Result<KeyMap, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "exactly the limit" from "over it".
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    parse_jwks(&bytes).map_err(|e| format!("{shown}: {e}"))
}

fn non_empty(keys: KeyMap) -> Result<KeyMap, String> {
    if keys.is_empty() {
        Err(
            "no usable signing key (RSA of 2048-8192 bits, EC P-256 or P-384, with a kid)"
                .to_owned(),
        )
    } else {
        Ok(keys)
    }
}

/// Parses a JWKS document into its usable keys.
fn parse_jwks(bytes: &[u8]) -> Result<KeyMap, String> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "the document is larger than {MAX_JWKS_BYTES} bytes"
        ));
    }
    let document = parse_object(bytes).map_err(|e| format!("the document is {e}"))?;
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err("the document has no \"keys\" array".to_owned());
    };
    let mut keys = KeyMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(jwk) = entry else {
            return Err(format!("key {index} is not a JSON object"));
        };
        let Some(key) = parse_jwk(jwk).map_err(|e| format!("key {index}: {e}"))? else {
            continue;
        };
        if keys.len() == MAX_KEYS {
            return Err(format!("more than {MAX_KEYS} usable keys"));
        }
        if keys.contains_key(&key.kid) {
            return Err(format!(
                "key {index}: kid {:?} appears twice",
                truncated(&key.kid)
            ));
        }
        keys.insert(key.kid.clone(), Arc::new(key));
    }
    Ok(keys)
}

/// One JWK: `Ok(None)` for a key Mayfly does not use, an error for one that
/// is malformed.
fn parse_jwk(jwk: &Map<String, Value>) -> Result<Option<VerifyingKey>, String> {
    if optional_str(jwk, "use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if let Some(operations) = jwk.get("key_ops") {
        let Some(operations) = operations.as_array() else {
            return Err("key_ops is not an array".to_owned());
        };
        if !operations.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let Some(kid) = optional_str(jwk, "kid")? else {
        return Ok(None);
    };
    if kid.is_empty() || kid.len() > MAX_KID_BYTES {
        return Err(format!("kid must be 1-{MAX_KID_BYTES} bytes"));
    }
    // Someone pasted a private key: refuse loudly rather than hold it.
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|name| jwk.contains_key(*name))
    {
        return Err(format!(
            "kid {:?} contains private key material; a JWKS must hold public keys only",
            truncated(kid)
        ));
    }
    let Some(public_key) = jwk::public_key(jwk).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let key = VerificationKey::new(&public_key).map_err(|e| e.to_string())?;
    let key = VerifyingKey {
        kid: kid.to_owned(),
        key,
    };
    if optional_str(jwk, "alg")?.is_some_and(|alg| {
        JwsAlgorithm::from_name(alg).is_none_or(|alg| !key.algorithms().contains(&alg))
    }) {
        return Ok(None);
    }
    Ok(Some(key))
}

fn optional_str<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

/// Keys, JWKS documents, signed tokens and a local issuer for the attestors'
/// tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
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
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::testing::{TestIssuer, TestKey, jwks_of};
    use super::*;
    use crate::clock::ManualClock;

    const ISSUER: &str = "https://issuer.example";

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ))
    }

    fn inline(document: String) -> Result<JwksCache, AttestError> {
        JwksCache::new(ISSUER, JwksSource::Inline(document))
    }

    fn reason(result: Result<JwksCache, AttestError>) -> String {
        match result {
            Err(AttestError::Unavailable { reason }) => reason,
            other => panic!("expected a load error, got {other:?}"),
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
        let document =
            json!({"keys": [good.jwk(), encryption, no_kid, wrap_only, rs512, okp, p521]});
        let keys = parse_jwks(document.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
    }

    #[test]
    fn malformed_documents_are_refused() {
        let key = TestKey::p256("k");
        // Control: the document with just the good key loads.
        inline(jwks_of(&[&key])).unwrap();

        let duplicate = jwks_of(&[&key, &TestKey::p256("k")]);
        assert!(reason(inline(duplicate)).contains("appears twice"));

        let mut private = key.jwk();
        private["d"] = json!("AAAA");
        assert!(reason(inline(json!({"keys": [private]}).to_string())).contains("private key"));

        let mut short = TestKey::rsa(0, "r").jwk();
        let n = URL_SAFE_NO_PAD
            .decode(short["n"].as_str().unwrap())
            .unwrap();
        short["n"] = json!(URL_SAFE_NO_PAD.encode(&n[..128]));
        assert!(reason(inline(json!({"keys": [short]}).to_string())).contains("1024 bits"));

        let mut off_curve = key.jwk();
        off_curve["y"] = off_curve["x"].clone();
        assert!(reason(inline(json!({"keys": [off_curve]}).to_string())).contains("not a point"));

        let mut short_x = key.jwk();
        short_x["x"] = json!("AAAA");
        assert!(reason(inline(json!({"keys": [short_x]}).to_string())).contains("32 bytes"));

        for document in [
            "[]",
            "{\"keys\": {}}",
            "{\"keys\": [1]}",
            "{\"keys\": []}",
            "not json",
        ] {
            assert!(inline(document.to_owned()).is_err(), "{document}");
        }
        let padding = " ".repeat(MAX_JWKS_BYTES);
        assert!(reason(inline(format!("{}{padding}", jwks_of(&[&key])))).contains("larger than"));
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

        assert!(
            reason(JwksCache::new(
                ISSUER,
                JwksSource::File(dir.path().join("missing"))
            ))
            .contains("cannot open")
        );
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
        let err = JwksCache::new(
            ISSUER,
            JwksSource::Discovery {
                url: "http://192.0.2.1/.well-known/openid-configuration".into(),
            },
        );
        assert!(reason(err).contains("loopback"));
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
            Ok(JwksSource::File(path.to_owned()))
        );
        assert!(JwksSource::from_options(None, None, None).is_err());
        assert!(JwksSource::from_options(Some(path), Some("https://x"), None).is_err());
    }
}

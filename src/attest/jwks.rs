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
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mayfly_sdk::jose::{
    AlgorithmPolicy, JwsAlgorithm, KeyType, VerificationKey, jwk, parse_object,
};
use serde_json::{Map, Value};

use mayfly_sdk::error_chain;

use super::{AttestError, truncated};
use crate::clock::{Clock, SystemClock};
use crate::outbound::{ConnectorError, Roots};

mod error;
use error::BoxError;
pub use error::{JwksError, UrlError};

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
    /// `None` unless exactly one is given.
    pub fn from_options(
        file: Option<&Path>,
        discovery_url: Option<&str>,
        inline: Option<&str>,
    ) -> Option<Self> {
        match (file, discovery_url, inline) {
            (Some(path), None, None) => Some(JwksSource::File(path.to_owned())),
            (None, Some(url), None) => Some(JwksSource::Discovery {
                url: url.to_owned(),
            }),
            (None, None, Some(document)) => Some(JwksSource::Inline(document.to_owned())),
            _ => None,
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
        // The algorithms issuer tokens may use (`jwt_evidence::DEFAULT_ALGORITHMS`).
        AlgorithmPolicy::new(AlgorithmPolicy::ISSUER_TOKEN.allowed()).usable_with(self.key_type())
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
    /// [`JwksError::ReadFile`] when the file cannot be read; the
    /// [`JwksError`] that names the problem when the document is invalid
    /// (inside [`JwksError::File`] for a file); [`JwksError::NoUsableKey`]
    /// when it has no usable key; [`JwksError::DiscoveryUrl`] when the
    /// discovery URL is not `https` (or `http` to a loopback address);
    /// [`JwksError::RootCertificates`] or [`JwksError::Tls`] when the HTTPS
    /// client cannot be set up.
    pub fn new(issuer: &str, source: JwksSource) -> Result<Self, JwksError> {
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
    ) -> Result<Self, JwksError> {
        let now = clock.now();
        let (origin, keys, loaded_at) = match source {
            JwksSource::Inline(document) => {
                let keys = parse_jwks(document.as_bytes()).and_then(non_empty)?;
                (Origin::Inline, keys, Some(now))
            }
            JwksSource::File(path) => {
                let keys = read_jwks_file(&path).and_then(non_empty)?;
                (Origin::File(path), keys, Some(now))
            }
            JwksSource::Discovery { url } => {
                let discovery = Discovery::new(issuer, &url)?;
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
                    .unwrap_or_else(|e| {
                        Err(JwksError::ReadTask {
                            source: Box::new(e),
                        })
                    })
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
            Err(error) => {
                let reason = format!(
                    "cannot load the signing keys of issuer {}: {}",
                    self.issuer,
                    error_chain(&error)
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
    fn new(issuer: &str, url: &str) -> Result<Self, JwksError> {
        let uri = checked_url(url)?;
        // Loopback http only gets no root at all: no certificate is ever trusted. Every URL
        // is checked by `checked_url` before it is requested, which is what keeps plain
        // http on loopback.
        let roots = if uri.scheme_str() == Some("https") {
            Roots::Native
        } else {
            Roots::Nothing
        };
        let connector = crate::outbound::connector(roots, None).map_err(|e| match e {
            ConnectorError::NativeRoots(source) => JwksError::RootCertificates { source },
            ConnectorError::Tls(e) => JwksError::Tls {
                source: Box::new(e),
            },
        })?;
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

    async fn fetch(&self) -> Result<KeyMap, JwksError> {
        let body = self.get(&self.url).await?;
        let url = || self.url.to_string();
        let document = parse_object(&body)
            .map_err(|source| JwksError::DiscoveryNotJson { url: url(), source })?;
        match document.get("issuer") {
            Some(Value::String(issuer)) if *issuer == self.issuer => {}
            Some(Value::String(issuer)) => {
                return Err(JwksError::WrongIssuer {
                    url: url(),
                    found: truncated(issuer),
                });
            }
            _ => return Err(JwksError::NoIssuer { url: url() }),
        }
        let Some(Value::String(jwks_uri)) = document.get("jwks_uri") else {
            return Err(JwksError::NoJwksUri { url: url() });
        };
        let jwks_uri = checked_url(jwks_uri).map_err(|source| JwksError::JwksUri { source })?;
        let body = self.get(&jwks_uri).await?;
        parse_jwks(&body).map_err(|source| JwksError::Fetched {
            uri: jwks_uri.to_string(),
            source: Box::new(source),
        })
    }

    async fn get(&self, uri: &Uri) -> Result<Vec<u8>, JwksError> {
        let http = |source: BoxError| JwksError::Http {
            uri: uri.to_string(),
            source,
        };
        let request = Request::get(uri.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| http(Box::new(e)))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| http(Box::new(e)))?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(JwksError::Status {
                    uri: uri.to_string(),
                    status: status.as_u16(),
                });
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            let too_large = || JwksError::ResponseTooLarge {
                uri: uri.to_string(),
                limit: MAX_JWKS_BYTES,
            };
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
                        http(e)
                    }
                })?;
            Ok(body.to_bytes().to_vec())
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| JwksError::Timeout {
                uri: uri.to_string(),
                limit: FETCH_TIMEOUT,
            })?
    }
}

/// Parses a URL we are about to fetch: `https`, or `http` to a literal
/// loopback address; no credentials, no fragment.
fn checked_url(text: &str) -> Result<Uri, UrlError> {
    let url = || truncated(text);
    let uri: Uri = text.parse().map_err(|_| UrlError::Invalid { url: url() })?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(UrlError::NotAbsolute { url: url() });
    };
    if authority.as_str().contains('@') || text.contains('#') {
        return Err(UrlError::CredentialsOrFragment { url: url() });
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match scheme {
        "https" => Ok(uri),
        "http" if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) => Ok(uri),
        "http" => Err(UrlError::PlainHttp { url: url() }),
        _ => Err(UrlError::NotHttps { url: url() }),
    }
}

fn read_jwks_file(path: &Path) -> Result<KeyMap, JwksError> {
    let read_error = |source| JwksError::ReadFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells "exactly the limit" from "over it".
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    parse_jwks(&bytes).map_err(|source| JwksError::File {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

fn non_empty(keys: KeyMap) -> Result<KeyMap, JwksError> {
    if keys.is_empty() {
        Err(JwksError::NoUsableKey)
    } else {
        Ok(keys)
    }
}

/// Parses a JWKS document into its usable keys.
fn parse_jwks(bytes: &[u8]) -> Result<KeyMap, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge {
            limit: MAX_JWKS_BYTES,
        });
    }
    let document = parse_object(bytes).map_err(|source| JwksError::NotJson { source })?;
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err(JwksError::NoKeysArray);
    };
    let mut keys = KeyMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(jwk) = entry else {
            return Err(JwksError::KeyNotObject { index });
        };
        let Some(key) = parse_jwk(index, jwk)? else {
            continue;
        };
        if keys.len() == MAX_KEYS {
            return Err(JwksError::TooManyKeys { max: MAX_KEYS });
        }
        if keys.contains_key(&key.kid) {
            return Err(JwksError::DuplicateKid {
                index,
                kid: truncated(&key.kid),
            });
        }
        keys.insert(key.kid.clone(), Arc::new(key));
    }
    Ok(keys)
}

/// The JWK at `index` in `keys`: `Ok(None)` for a key Mayfly does not use,
/// an error for one that is malformed.
fn parse_jwk(index: usize, jwk: &Map<String, Value>) -> Result<Option<VerifyingKey>, JwksError> {
    if optional_str(index, jwk, "use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if let Some(operations) = jwk.get("key_ops") {
        let Some(operations) = operations.as_array() else {
            return Err(JwksError::KeyOpsNotArray { index });
        };
        if !operations.iter().any(|op| op.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let Some(kid) = optional_str(index, jwk, "kid")? else {
        return Ok(None);
    };
    if kid.is_empty() || kid.len() > MAX_KID_BYTES {
        return Err(JwksError::KidLength {
            index,
            max: MAX_KID_BYTES,
        });
    }
    // Someone pasted a private key: refuse loudly rather than hold it.
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|name| jwk.contains_key(*name))
    {
        return Err(JwksError::PrivateKey {
            index,
            kid: truncated(kid),
        });
    }
    let Some(public_key) =
        jwk::public_key(jwk).map_err(|source| JwksError::InvalidJwk { index, source })?
    else {
        return Ok(None);
    };
    let key = VerificationKey::new(&public_key)
        .map_err(|source| JwksError::UnusableKey { index, source })?;
    let key = VerifyingKey {
        kid: kid.to_owned(),
        key,
    };
    if optional_str(index, jwk, "alg")?.is_some_and(|alg| {
        JwsAlgorithm::from_name(alg).is_none_or(|alg| !key.algorithms().contains(&alg))
    }) {
        return Ok(None);
    }
    Ok(Some(key))
}

fn optional_str<'a>(
    index: usize,
    jwk: &'a Map<String, Value>,
    member: &'static str,
) -> Result<Option<&'a str>, JwksError> {
    match jwk.get(member) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(JwksError::MemberNotString { index, member }),
    }
}

#[cfg(test)]
mod tests;

//! Why an issuer's key set cannot be loaded.

use std::path::PathBuf;
use std::time::Duration;

use mayfly_sdk::jose::{JsonError, JwkError, KeyError};

/// An error from a dependency (hyper, rustls, tokio), kept as a source
/// without its type leaking into our public errors.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a JWKS (from a file, inline, or through OIDC discovery) cannot be
/// loaded. Each message says what was wrong and where; variants with a
/// source print it too, so `to_string()` is the whole story.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The JWKS file cannot be opened or read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        /// The configured `jwks_file`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS file was read, but what it holds is not a usable JWKS.
    #[error("{}: {source}", .path.display())]
    File {
        /// The configured `jwks_file`.
        path: PathBuf,
        /// What is wrong with its content.
        #[source]
        source: Box<JwksError>,
    },
    /// Re-reading the JWKS file on a blocking thread did not finish (the
    /// task panicked or was cancelled).
    #[error("reading the file failed: {source}")]
    ReadTask {
        /// The task's failure.
        #[source]
        source: BoxError,
    },
    /// The document is over [`MAX_JWKS_BYTES`](super::MAX_JWKS_BYTES).
    #[error("the document is larger than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The document is not a strict JSON object.
    #[error("the document is {source}")]
    NotJson {
        /// What the JSON parser refused.
        #[source]
        source: JsonError,
    },
    /// The document has no `keys` array.
    #[error("the document has no \"keys\" array")]
    NoKeysArray,
    /// An element of `keys` is not an object.
    #[error("key {index} is not a JSON object")]
    KeyNotObject {
        /// Its position in `keys`, from 0.
        index: usize,
    },
    /// A JWK member that must be a string (`use`, `kid`, `alg`) is not.
    #[error("key {index}: {member} is not a string")]
    MemberNotString {
        /// The key's position in `keys`, from 0.
        index: usize,
        /// The member.
        member: &'static str,
    },
    /// A JWK's `key_ops` is not an array.
    #[error("key {index}: key_ops is not an array")]
    KeyOpsNotArray {
        /// The key's position in `keys`, from 0.
        index: usize,
    },
    /// A JWK's `kid` is empty or too long.
    #[error("key {index}: kid must be 1-{max} bytes")]
    KidLength {
        /// The key's position in `keys`, from 0.
        index: usize,
        /// The longest `kid` accepted, bytes.
        max: usize,
    },
    /// A JWK holds private key material: someone pasted a private key.
    #[error(
        "key {index}: kid {kid:?} contains private key material; a JWKS must hold public keys only"
    )]
    PrivateKey {
        /// The key's position in `keys`, from 0.
        index: usize,
        /// Its `kid`, truncated.
        kid: String,
    },
    /// A JWK's key parameters cannot be read (missing, not base64url, wrong
    /// length).
    #[error("key {index}: {source}")]
    InvalidJwk {
        /// The key's position in `keys`, from 0.
        index: usize,
        /// What the JWK reader refused.
        #[source]
        source: JwkError,
    },
    /// A JWK names a key that cannot verify anything (an RSA modulus
    /// outside 2048–8192 bits, a point not on its curve).
    #[error("key {index}: {source}")]
    UnusableKey {
        /// The key's position in `keys`, from 0.
        index: usize,
        /// Why the key is refused.
        #[source]
        source: KeyError,
    },
    /// More usable keys than any real issuer publishes.
    #[error("more than {max} usable keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// Two usable keys share a `kid`: which one a token means would be a
    /// guess.
    #[error("key {index}: kid {kid:?} appears twice")]
    DuplicateKid {
        /// The position in `keys`, from 0, of the second one.
        index: usize,
        /// The `kid`, truncated.
        kid: String,
    },
    /// The document holds no key Mayfly can verify with: at startup, this
    /// can only be a configuration mistake.
    #[error("no usable signing key (RSA of 2048-8192 bits, EC P-256 or P-384, with a kid)")]
    NoUsableKey,
    /// The discovery URL cannot be fetched.
    #[error(transparent)]
    DiscoveryUrl(#[from] UrlError),
    /// The discovery document's `jwks_uri` cannot be fetched.
    #[error("jwks_uri: {source}")]
    JwksUri {
        /// Why.
        #[source]
        source: UrlError,
    },
    /// The operating system's root certificates cannot be loaded, so no
    /// `https` URL can be verified.
    #[error("cannot load the system's root certificates: {source}")]
    RootCertificates {
        /// The loader's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS client cannot be configured.
    #[error("cannot configure TLS: {source}")]
    Tls {
        /// rustls's error.
        #[source]
        source: BoxError,
    },
    /// A request failed: no connection, a TLS failure, a broken body.
    #[error("GET {uri}: {}", chain(.source))]
    Http {
        /// The URL.
        uri: String,
        /// The client's error, with its causes.
        #[source]
        source: BoxError,
    },
    /// The server answered with a status other than 200 OK.
    #[error("GET {uri} answered {}{}", status_text(*.status), redirect_hint(*.status))]
    Status {
        /// The URL.
        uri: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The answer is over [`MAX_JWKS_BYTES`](super::MAX_JWKS_BYTES).
    #[error("GET {uri}: the response is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The URL.
        uri: String,
        /// The limit, bytes.
        limit: usize,
    },
    /// No complete answer within [`FETCH_TIMEOUT`](super::FETCH_TIMEOUT).
    #[error("GET {uri}: no complete answer within {limit:?}")]
    Timeout {
        /// The URL.
        uri: String,
        /// The time limit.
        limit: Duration,
    },
    /// The discovery document is not a strict JSON object.
    #[error("the discovery document at {url} is {source}")]
    DiscoveryNotJson {
        /// The discovery URL.
        url: String,
        /// What the JSON parser refused.
        #[source]
        source: JsonError,
    },
    /// The discovery document is for another issuer (OpenID Connect
    /// Discovery §4.3).
    #[error("the discovery document at {url} is for issuer {found:?}")]
    WrongIssuer {
        /// The discovery URL.
        url: String,
        /// The document's `issuer`, truncated.
        found: String,
    },
    /// The discovery document has no string `issuer`.
    #[error("the discovery document at {url} has no issuer")]
    NoIssuer {
        /// The discovery URL.
        url: String,
    },
    /// The discovery document has no string `jwks_uri`.
    #[error("the discovery document at {url} has no jwks_uri")]
    NoJwksUri {
        /// The discovery URL.
        url: String,
    },
    /// The JWKS fetched from `jwks_uri` is not a usable JWKS.
    #[error("the JWKS at {uri}: {source}")]
    Fetched {
        /// The `jwks_uri`.
        uri: String,
        /// What is wrong with it.
        #[source]
        source: Box<JwksError>,
    },
}

/// Why a URL will not be fetched: only `https`, or `http` to a literal
/// loopback address, without credentials or a fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a valid URL")]
    Invalid {
        /// The text, truncated.
        url: String,
    },
    /// A URL without a scheme or a host.
    #[error("{url:?} is not an absolute URL")]
    NotAbsolute {
        /// The URL, truncated.
        url: String,
    },
    /// A URL with `user:password@` or a `#fragment`.
    #[error("{url:?} must not contain credentials or a fragment")]
    CredentialsOrFragment {
        /// The URL, truncated.
        url: String,
    },
    /// Plain `http` to a host that is not a literal loopback address.
    #[error(
        "{url:?} uses plain http, which is allowed only to a loopback address (127.0.0.1, [::1]); use https"
    )]
    PlainHttp {
        /// The URL, truncated.
        url: String,
    },
    /// A scheme other than `https` or `http`.
    #[error("{url:?} must be an https URL")]
    NotHttps {
        /// The URL, truncated.
        url: String,
    },
}

fn chain(source: &BoxError) -> String {
    mayfly_sdk::error_chain(source.as_ref())
}

/// `503 Service Unavailable`, or the bare code when it has no name.
fn status_text(status: u16) -> String {
    match hyper::StatusCode::from_u16(status) {
        Ok(code) => code.to_string(),
        Err(_) => status.to_string(),
    }
}

fn redirect_hint(status: u16) -> &'static str {
    if (300..400).contains(&status) {
        " (redirects are not followed: configure the final URL)"
    } else {
        ""
    }
}

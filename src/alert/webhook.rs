//! The alert webhook (`[alerts] webhook_url`): each alert is one JSON `POST`, its body
//! signed with a shared secret so that the receiver knows it comes from this broker and was
//! not changed or replayed.
//!
//! The protocol (docs/operations.md, "Alerts"):
//! - `POST <url>`, `Content-Type: application/json`, the body an [`Alert`](super::Alert).
//! - `Mayfly-Event: <kind>` and `Mayfly-Delivery: <id>`: the id is the same on every try
//!   of one alert, so a receiver that got it once can drop the repeats.
//! - `Mayfly-Signature: t=<unix seconds>,v1=<hex>`: HMAC-SHA256 with the secret over
//!   `<t>.<body>`. A receiver recomputes it ([`verify_signature`]), compares in constant
//!   time and refuses a `t` far from its clock (a replay). Each try is signed anew.
//! - A 2xx answer delivers the alert. A 408, 429 or 5xx, no answer or a timeout is tried
//!   again after 1, 2, 4 and 8 seconds ([`MAX_TRIES`] in all); any other status is final.
//!
//! The secret is read once, at start, from a file private to its owner; it is never
//! logged. Redirects are not followed; every try has a [`CONNECT_TIMEOUT`] and a
//! [`REQUEST_TIMEOUT`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use zeroize::Zeroizing;

use crate::outbound::{self, HttpUrl, Roots};

/// Time limit for the TCP connection to the receiver.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time limit for one try: connection, TLS handshake, request and answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of one alert, the first included.
pub const MAX_TRIES: u32 = 5;
/// The wait before the second try; it doubles before each next one.
pub const FIRST_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// The longest secret accepted, in bytes.
const MAX_SECRET_LEN: usize = 4096;
/// The most of an answer read (and dropped, so the connection can be reused).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The header with the body's signature.
pub const SIGNATURE_HEADER: &str = "mayfly-signature";
/// The header naming the alert's kind.
pub const EVENT_HEADER: &str = "mayfly-event";
/// The header with the alert's delivery id, the same on every try.
pub const DELIVERY_HEADER: &str = "mayfly-delivery";

/// The settings of the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `webhook_url`.
    pub url: HttpUrl,
    /// `webhook_secret_file`: a file (0600 or 0400) holding the signing secret.
    pub secret_file: PathBuf,
    /// `webhook_ca`: a PEM file of the CA(s) that vouch for the receiver's certificate,
    /// trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// Why the webhook cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The secret file cannot be read, or others may read it.
    #[error("cannot read the secret file {}: {source}", path.display())]
    SecretFile {
        /// `webhook_secret_file`.
        path: PathBuf,
        /// Why.
        #[source]
        source: mayfly_sdk::files::FileError,
    },
    /// The secret is too short or too long.
    #[error(
        "{}: the secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes \
         (for example `openssl rand -hex 32`)",
        path.display()
    )]
    SecretLength {
        /// `webhook_secret_file`.
        path: PathBuf,
    },
    /// The CA file cannot be used.
    #[error(transparent)]
    CaFile(#[from] outbound::CaFileError),
    /// The HTTPS client cannot be set up.
    #[error("HTTPS client: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
}

/// Why one try failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryError {
    /// The receiver answered with a status other than 2xx.
    #[error("status {0}")]
    Status(u16),
    /// No answer: no connection, a TLS failure, a broken exchange.
    #[error("{0}")]
    Request(String),
    /// No complete answer within [`REQUEST_TIMEOUT`].
    #[error("no answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
}

impl TryError {
    /// Whether another try may succeed: no answer, a timeout, 408, 429 or 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            TryError::Status(status) => matches!(status, 408 | 429 | 500..=599),
            TryError::Request(_) | TryError::Timeout => true,
        }
    }
}

/// The signing secret; it never prints.
struct Secret(Zeroizing<Vec<u8>>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Secret {
    /// Reads the secret file: private to its owner, [`MIN_SECRET_LEN`] to 4096 bytes (a
    /// final newline is dropped).
    fn read(path: &Path) -> Result<Self, WebhookError> {
        let secret =
            outbound::read_secret_line(path).map_err(|source| WebhookError::SecretFile {
                path: path.to_owned(),
                source,
            })?;
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
            return Err(WebhookError::SecretLength {
                path: path.to_owned(),
            });
        }
        Ok(Secret(secret))
    }
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`: the value of
/// [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(tag(secret, timestamp, body))
    )
}

fn tag(secret: &[u8], timestamp: i64, body: &[u8]) -> aws_lc_rs::hmac::Tag {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// Why a receiver refuses a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The header is not `t=<integer>,v1=<64 hex digits>`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from the receiver's clock than it allows.
    #[error("signed at {signed}, more than {tolerance}s from now ({now})")]
    Stale {
        /// The signed timestamp.
        signed: i64,
        /// The receiver's clock.
        now: i64,
        /// The tolerance, in seconds.
        tolerance: u64,
    },
    /// The HMAC does not match: another secret, or a changed body or timestamp.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// What a receiver does with a delivery: checks `header` against `body` with the shared
/// `secret`, and that it was signed within `tolerance` of `now`. Comparison in constant time.
///
/// # Errors
/// [`SignatureError`] saying what is wrong.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .ok_or(SignatureError::Malformed)?;
    let signed: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    let given = hex::decode(v1).map_err(|_| SignatureError::Malformed)?;
    if given.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let tolerance_seconds = tolerance.as_secs();
    if now.abs_diff(signed) > tolerance_seconds {
        return Err(SignatureError::Stale {
            signed,
            now,
            tolerance: tolerance_seconds,
        });
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut message = Vec::with_capacity(t.len() + 1 + body.len());
    message.extend_from_slice(t.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    aws_lc_rs::hmac::verify(&key, &message, &given).map_err(|_| SignatureError::Mismatch)
}

/// The client of the webhook.
pub struct Webhook {
    url: HttpUrl,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    secret: Secret,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A client for `config`: reads the secret and CA files now.
    ///
    /// # Errors
    /// [`WebhookError`] naming the file or setting that cannot be used.
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        let secret = Secret::read(&config.secret_file)?;
        let roots = match &config.ca_file {
            Some(path) => Roots::Only(outbound::read_ca_file(path)?),
            None if config.url.is_https() => Roots::Native,
            None => Roots::Nothing,
        };
        let connector =
            outbound::connector(roots, Some(CONNECT_TIMEOUT)).map_err(|e| WebhookError::Tls {
                reason: mayfly_sdk::error_chain(&e),
            })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Webhook {
            url: config.url.clone(),
            client,
            secret,
        })
    }

    /// The receiver's URL.
    pub fn url(&self) -> &HttpUrl {
        &self.url
    }

    /// One try: POSTs `body`, signed at `timestamp`.
    ///
    /// # Errors
    /// [`TryError`] saying why it was not delivered.
    pub async fn post(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Result<(), TryError> {
        let request = Request::post(self.url.uri().clone())
            .header(USER_AGENT, concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .header(CONTENT_TYPE, "application/json")
            .header(HeaderName::from_static(EVENT_HEADER), event)
            .header(HeaderName::from_static(DELIVERY_HEADER), delivery)
            .header(
                HeaderName::from_static(SIGNATURE_HEADER),
                signature(&self.secret.0, timestamp, body),
            )
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| TryError::Request(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TryError::Request(mayfly_sdk::error_chain(&e)))?;
            let status = response.status();
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(TryError::Status(status.as_u16()))
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| TryError::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_and_every_change_is_refused() {
        let body = br#"{"kind":"owner-digest"}"#;
        let header = signature(SECRET, 1_800_000_000, body);
        let day = Duration::from_secs(300);
        // Positive control.
        verify_signature(SECRET, &header, body, 1_800_000_100, day).unwrap();
        assert_eq!(
            verify_signature(SECRET, &header, b"{\"kind\":\"other\"}", 1_800_000_000, day),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                b"another secret of thirty-two by",
                &header,
                body,
                1_800_000_000,
                day
            ),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace("t=1800000000", "t=1800000001");
        assert_eq!(
            verify_signature(SECRET, &moved, body, 1_800_000_000, day),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_signature(SECRET, &header, body, 1_800_000_301, day),
            Err(SignatureError::Stale { .. })
        ));
        for bad in [
            "",
            "t=1,v2=00",
            "v1=00,t=1",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,v1=00",
        ] {
            assert_eq!(
                verify_signature(SECRET, bad, body, 1, day),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_no_answer_timeouts_408_429_and_5xx_are_tried_again() {
        for status in [408, 429, 500, 502, 503, 599] {
            assert!(TryError::Status(status).is_transient(), "{status}");
        }
        for status in [301, 400, 401, 403, 404, 410, 422] {
            assert!(!TryError::Status(status).is_transient(), "{status}");
        }
        assert!(TryError::Timeout.is_transient());
        assert!(TryError::Request("refused".into()).is_transient());
    }

    #[test]
    fn the_secret_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let url = HttpUrl::parse("http://127.0.0.1:9/alerts").unwrap();
        let config = WebhookConfig {
            url,
            secret_file: path.clone(),
            ca_file: None,
        };
        std::fs::write(&path, format!("{}\n", "s".repeat(MIN_SECRET_LEN))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let webhook = Webhook::new(&config).unwrap();
        assert!(!format!("{webhook:?}").contains("sss"), "{webhook:?}");
        std::fs::write(&path, "short\n").unwrap();
        let error = Webhook::new(&config).unwrap_err();
        assert!(
            matches!(error, WebhookError::SecretLength { .. }),
            "{error}"
        );
        std::fs::write(&path, "s".repeat(MIN_SECRET_LEN)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Webhook::new(&config).unwrap_err();
        assert!(matches!(error, WebhookError::SecretFile { .. }), "{error}");
    }
}

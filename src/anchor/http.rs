//! The HTTP anchor: a witness server that keeps this replica's latest signed checkpoint
//! (`[audit] anchor_url`).
//!
//! The protocol (docs/operations.md, "An HTTP witness"):
//! - `POST <url>` with the JSON of an [`AuditAnchorRecord`] (the signed checkpoint and the
//!   audit key's hand-overs from the root key on), `Content-Type: application/json`: the
//!   witness keeps it and answers 2xx. Anything else is a failed try.
//! - `GET <url>` at start: 200 with the last record kept, or 404 while there is none.
//!
//! With `anchor_url_token_file`, both carry `Authorization: Bearer <token>`; the token is
//! read once, at start, and never logged. Every request has a [`CONNECT_TIMEOUT`] and a
//! [`REQUEST_TIMEOUT`]; redirects are not followed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT,
};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use zeroize::Zeroizing;

use super::{AnchorError, SinkError};
use crate::outbound::{self, CaFileError, ConnectorError, HttpUrl, Roots};
use crate::store::AuditAnchorRecord;

/// Time limit for the TCP connection to the witness.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time limit for one whole request: connection, TLS handshake, request, answer and body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read at start. A record grows with the audit key's chain (about 330
/// bytes a hand-over: one an hour and one a start, so a few MiB a year); this holds as many
/// years of it as a proof bundle ([`crate::audit::MAX_BUNDLE_LEN`]).
pub const MAX_RECORD_BYTES: usize = 64 << 20;
/// The most of a POST's answer read (and thrown away, so the connection can be reused).
const MAX_POST_ANSWER_BYTES: usize = 64 * 1024;
/// The longest bearer token accepted.
const MAX_TOKEN_LEN: usize = 4096;

/// `anchor_url`: an absolute `http` or `https` URL, without credentials (use
/// `anchor_url_token_file`) or fragment.
pub type AnchorUrl = HttpUrl;

/// The settings of the HTTP anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnchorConfig {
    /// `anchor_url`.
    pub url: AnchorUrl,
    /// `anchor_url_ca`: a PEM file of the CA(s) that vouch for the witness's certificate,
    /// trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `anchor_url_token_file`: a file (0600) holding a bearer token for the witness.
    pub token_file: Option<PathBuf>,
}

/// A bearer token; it never prints.
struct BearerToken(Zeroizing<String>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl BearerToken {
    /// Reads the token file: private to its owner, one line of visible ASCII (a final
    /// newline is dropped).
    fn read(path: &Path) -> Result<Self, AnchorError> {
        let token = outbound::read_secret_line(path).map_err(|source| AnchorError::TokenFile {
            path: path.to_owned(),
            source,
        })?;
        let bad = || AnchorError::TokenFormat {
            path: path.to_owned(),
            max: MAX_TOKEN_LEN,
        };
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(bad());
        }
        let text = std::str::from_utf8(&token).map_err(|_| bad())?;
        Ok(BearerToken(Zeroizing::new(format!("Bearer {text}"))))
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&self.0).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// The client of one HTTP witness.
pub struct HttpAnchor {
    url: AnchorUrl,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: Option<BearerToken>,
}

impl fmt::Debug for HttpAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAnchor")
            .field("url", &self.url)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl HttpAnchor {
    /// A client for the witness of `config`: reads the CA and token files now.
    ///
    /// # Errors
    /// [`AnchorError::CaFile`] / [`AnchorError::CaCertificates`] if the CA file cannot be
    /// read or holds no usable certificate; [`AnchorError::TokenFile`] /
    /// [`AnchorError::TokenFormat`] for the token file; [`AnchorError::TokenInClear`] for a
    /// token with plain `http` to anything but a loopback address; [`AnchorError::Tls`] if
    /// the HTTPS client cannot be set up.
    pub fn new(config: &HttpAnchorConfig) -> Result<Self, AnchorError> {
        let token = config
            .token_file
            .as_deref()
            .map(BearerToken::read)
            .transpose()?;
        if token.is_some() && !config.url.is_https() && !config.url.is_loopback() {
            return Err(AnchorError::TokenInClear {
                url: config.url.to_string(),
            });
        }
        let roots = match &config.ca_file {
            Some(path) => Roots::Only(outbound::read_ca_file(path).map_err(|e| match e {
                CaFileError::Read { path, source } => AnchorError::CaFile { path, source },
                CaFileError::Certificates { path, reason } => {
                    AnchorError::CaCertificates { path, reason }
                }
            })?),
            None => Roots::Native,
        };
        let connector = outbound::connector(roots, Some(CONNECT_TIMEOUT)).map_err(|e| {
            match (&e, &config.ca_file) {
                // A certificate of the CA file that rustls cannot use as a root.
                (ConnectorError::Tls(_), Some(path)) => AnchorError::CaCertificates {
                    path: path.clone(),
                    reason: mayfly_sdk::error_chain(&e),
                },
                _ => AnchorError::Tls {
                    reason: mayfly_sdk::error_chain(&e),
                },
            }
        })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(HttpAnchor {
            url: config.url.clone(),
            client,
            token,
        })
    }

    /// The witness's URL.
    pub fn url(&self) -> &AnchorUrl {
        &self.url
    }

    /// POSTs `record`.
    ///
    /// # Errors
    /// [`SinkError::Status`] for an answer other than 2xx, [`SinkError::Request`] when
    /// there is none, [`SinkError::Timeout`] after [`REQUEST_TIMEOUT`].
    pub async fn publish(&self, record: &AuditAnchorRecord) -> Result<(), SinkError> {
        let body = serde_json::to_vec(record).map_err(|e| SinkError::Encode(e.to_string()))?;
        let request = self.request(
            Method::POST,
            (CONTENT_TYPE, "application/json"),
            Full::new(Bytes::from(body)),
        )?;
        let exchange = async {
            let response = self.send(request).await?;
            let status = response.status();
            // Read (and drop) a short answer, so the connection can carry the next one.
            let _ = Limited::new(response.into_body(), MAX_POST_ANSWER_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(SinkError::Status(status.as_u16()))
            }
        };
        timed(exchange).await
    }

    /// GETs the record the witness keeps: `None` on 404 (none yet).
    ///
    /// # Errors
    /// [`SinkError::Status`] for an answer other than 200 or 404, [`SinkError::Request`]
    /// when there is none, [`SinkError::Timeout`] after [`REQUEST_TIMEOUT`],
    /// [`SinkError::TooLarge`] above [`MAX_RECORD_BYTES`], [`SinkError::NotARecord`] if the
    /// body is not exactly an [`AuditAnchorRecord`].
    pub async fn read(&self) -> Result<Option<AuditAnchorRecord>, SinkError> {
        let request = self.request(Method::GET, (ACCEPT, "application/json"), Full::default())?;
        let exchange = async {
            let response = self.send(request).await?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(None),
                status => return Err(SinkError::Status(status.as_u16())),
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|length| length > MAX_RECORD_BYTES as u64) {
                return Err(SinkError::TooLarge(MAX_RECORD_BYTES));
            }
            let body = Limited::new(response.into_body(), MAX_RECORD_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        SinkError::TooLarge(MAX_RECORD_BYTES)
                    } else {
                        SinkError::Request(mayfly_sdk::error_chain(e.as_ref()))
                    }
                })?
                .to_bytes();
            parse_record(&body).map(Some)
        };
        timed(exchange).await
    }

    /// A request to the witness's URL with the common headers, `header` and `body`.
    fn request(
        &self,
        method: Method,
        header: (HeaderName, &'static str),
        body: Full<Bytes>,
    ) -> Result<Request<Full<Bytes>>, SinkError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.url.uri().clone())
            .header(USER_AGENT, concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .header(header.0, header.1);
        if let Some(value) = self.token.as_ref().and_then(BearerToken::header) {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder
            .body(body)
            .map_err(|e| SinkError::Request(e.to_string()))
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, SinkError> {
        self.client
            .request(request)
            .await
            .map_err(|e| SinkError::Request(mayfly_sdk::error_chain(&e)))
    }
}

/// Runs one exchange with the witness within [`REQUEST_TIMEOUT`].
async fn timed<T>(exchange: impl Future<Output = Result<T, SinkError>>) -> Result<T, SinkError> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| SinkError::Timeout(REQUEST_TIMEOUT))?
}

/// Reads a witness's answer strictly: exactly an [`AuditAnchorRecord`], every field known,
/// nothing after it.
///
/// # Errors
/// [`SinkError::NotARecord`] with the parser's message.
pub fn parse_record(body: &[u8]) -> Result<AuditAnchorRecord, SinkError> {
    serde_json::from_slice(body).map_err(|e| SinkError::NotARecord(e.to_string()))
}

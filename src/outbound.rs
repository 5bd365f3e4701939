//! The broker's one HTTP client stack for requests it makes itself: hyper-util's client over
//! rustls on aws-lc-rs (no ring, no openssl). OIDC discovery and JWKS fetches
//! ([`crate::attest::jwks`]), the audit log's HTTP anchor ([`crate::anchor`]) and the alert
//! webhook ([`crate::alert`]) build their connectors here, so all trust certificates the
//! same way, and read their URLs ([`HttpUrl`]) and private CA files ([`read_ca_file`]) alike.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use mayfly_sdk::files::FileError;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Why a URL the config names cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not usable: {reason}")]
pub struct UrlError {
    /// The URL as given, with any credentials in it redacted.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// An absolute `http` or `https` URL the broker sends requests to, without credentials
/// (secrets come from files) or fragment. Printing it shows nothing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(Uri);

impl HttpUrl {
    /// Reads a URL.
    ///
    /// # Errors
    /// [`UrlError`] for anything but an absolute `http(s)://host[:port]/path` URL without
    /// user information or fragment; the error never repeats a password.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let invalid = |reason| UrlError {
            url: without_credentials(text).chars().take(200).collect(),
            reason,
        };
        let uri: Uri = text.parse().map_err(|_| invalid("not a URL"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(invalid("not an absolute URL"));
        };
        if !matches!(scheme, "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if authority.as_str().contains('@') {
            return Err(invalid(
                "credentials in the URL are refused (give them in a file)",
            ));
        }
        if text.contains('#') {
            return Err(invalid("a fragment is never sent"));
        }
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        Ok(HttpUrl(uri))
    }

    /// The URL for a request.
    pub fn uri(&self) -> &Uri {
        &self.0
    }

    /// Whether it is `https`.
    pub fn is_https(&self) -> bool {
        self.0.scheme_str() == Some("https")
    }

    /// Whether its host is a literal loopback address.
    pub fn is_loopback(&self) -> bool {
        self.0
            .host()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|host| host.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback())
    }
}

/// `text` with whatever stands before an `@` in its authority replaced, so that a refused
/// URL is never printed with its password.
fn without_credentials(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]{}", &rest[at..]),
        None => text.to_owned(),
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({})", self.0)
    }
}

/// A secret file for a request (a bearer token, a signing secret): private to its owner
/// ([`mayfly_sdk::files::read_secret_file`]), with one final newline (LF or CRLF) dropped.
///
/// # Errors
/// The [`FileError`] of reading it.
pub fn read_secret_line(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, FileError> {
    let mut bytes = mayfly_sdk::files::read_secret_file(path)?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// Why a private CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// It cannot be read.
    #[error("cannot read the CA file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: FileError,
    },
    /// It holds no PEM certificate, or one that cannot be read.
    #[error("{}: {reason}", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The certificates of a PEM file naming a private CA, trusted instead of the system's roots.
///
/// # Errors
/// [`CaFileError`] if the file cannot be read or holds no usable certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let pem = mayfly_sdk::files::read_public_file(path).map_err(|source| CaFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaFileError::Certificates {
            path: path.to_owned(),
            reason: format!("not PEM certificates: {e}"),
        })?;
    if certificates.is_empty() {
        return Err(CaFileError::Certificates {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certificates)
}

/// Which certificates an `https` server may present.
#[derive(Debug)]
pub(crate) enum Roots {
    /// The operating system's root store.
    Native,
    /// These CAs only (a private CA), not the system's.
    Only(Vec<CertificateDer<'static>>),
    /// None: for a client that only ever speaks plain `http` (every URL it is given was
    /// checked to be `http` before), so no certificate can ever be trusted.
    Nothing,
}

/// Why a connector cannot be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectorError {
    /// The operating system's root certificates cannot be loaded.
    #[error("cannot load the system's root certificates: {0}")]
    NativeRoots(#[source] std::io::Error),
    /// rustls refused the configuration or a CA certificate.
    #[error("cannot configure TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// A connector for `http` and `https` URLs, HTTP/1.1, trusting `roots`, giving up on a TCP
/// connection after `connect_timeout` (if any; the caller bounds the whole request).
///
/// # Errors
/// [`ConnectorError::NativeRoots`] if `roots` is [`Roots::Native`] and none can be loaded;
/// [`ConnectorError::Tls`] if a certificate of [`Roots::Only`] is refused.
pub(crate) fn connector(
    roots: Roots,
    connect_timeout: Option<Duration>,
) -> Result<HttpsConnector<HttpConnector>, ConnectorError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(ConnectorError::Tls)?;
    let builder = match roots {
        Roots::Native => HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(ConnectorError::NativeRoots)?,
        Roots::Only(certificates) => {
            let mut store = rustls::RootCertStore::empty();
            for certificate in certificates {
                store.add(certificate).map_err(ConnectorError::Tls)?;
            }
            HttpsConnectorBuilder::new()
                .with_tls_config(tls.with_root_certificates(store).with_no_client_auth())
        }
        Roots::Nothing => HttpsConnectorBuilder::new().with_tls_config(
            tls.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    };
    let mut http = HttpConnector::new();
    // The TLS layer above hands https URLs to this connector as TCP connections.
    http.enforce_http(false);
    http.set_connect_timeout(connect_timeout);
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

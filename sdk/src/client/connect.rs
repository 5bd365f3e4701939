//! Connections to the two APIs: the broker over TLS (optionally mTLS), the admin API over
//! the Unix socket in the broker's data directory.
//!
//! Both connect eagerly, so an unreachable server is reported as such
//! ([`ClientError::BrokerUnreachable`], [`ClientError::AdminUnreachable`]) before any
//! request is built.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error_chain;
use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::broker_client::BrokerClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use super::error::ClientError;

/// How long to wait for a connection (TCP and TLS, or the Unix socket).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS channel to the broker at `server` (an `https://` URL), trusting only the root CAs
/// in `bundle_pem`; with `identity` = (certificate chain PEM, private key PEM) the client
/// authenticates with that X509-SVID (mTLS).
///
/// The server's name is checked against its certificate: use `https://localhost:…` or
/// `https://127.0.0.1:…` for a local server, whose certificate names both.
///
/// # Errors
/// - [`ClientError::InvalidAddress`] if `server` is not an `https://` URL;
/// - [`ClientError::TlsMaterial`] if `bundle_pem` holds no certificate or the identity cannot
///   be used;
/// - [`ClientError::BrokerUnreachable`] if the connection or the TLS handshake fails.
pub async fn connect_broker(
    server: &str,
    bundle_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<BrokerClient<Channel>, ClientError> {
    let endpoint = broker_endpoint(server)?;
    let roots = root_certificates(bundle_pem)?;
    let mut tls = ClientTlsConfig::new().ca_certificates(roots);
    if let Some((chain, key)) = identity {
        tls = tls.identity(Identity::from_pem(chain, key));
    }
    let endpoint = endpoint
        .tls_config(tls)
        .map_err(|e| ClientError::TlsMaterial {
            what: "TLS configuration".to_string(),
            reason: error_chain(&e),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ClientError::BrokerUnreachable {
            server: server.to_string(),
            reason: error_chain(&e),
        })?;
    Ok(BrokerClient::new(channel))
}

/// The admin API over the Unix socket at `socket` (normally `<data-dir>/admin.sock`).
///
/// # Errors
/// [`ClientError::AdminUnreachable`] if the socket does not exist, nobody listens on it, we
/// may not open it, or it does not answer in time.
pub async fn connect_admin(socket: &Path) -> Result<AdminClient<Channel>, ClientError> {
    let unreachable = |problem: String| ClientError::AdminUnreachable {
        socket: socket.to_owned(),
        problem,
    };
    match tokio::fs::symlink_metadata(socket).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(unreachable("not found".to_string()));
        }
        Err(e) => return Err(unreachable(describe_socket_error(&e))),
    }
    let path: PathBuf = socket.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { UnixStream::connect(path).await.map(TokioIo::new) }
    });
    // The URI is required by the HTTP/2 client but never resolved: the connector above
    // ignores it and dials the socket.
    let endpoint = Endpoint::from_static("http://admin.sock").timeout(REQUEST_TIMEOUT);
    let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| unreachable("did not answer in time".to_string()))?
        .map_err(|e| {
            unreachable(match find_io_error(&e) {
                Some(io_error) => describe_socket_error(io_error),
                None => error_chain(&e),
            })
        })?;
    Ok(AdminClient::new(channel))
}

/// Parses `server` and insists on `https`: the broker only speaks TLS, and a plain-text
/// attempt would send join tokens in the clear.
fn broker_endpoint(server: &str) -> Result<Endpoint, ClientError> {
    let bad = |why: &str| ClientError::InvalidAddress {
        server: server.to_owned(),
        reason: why.to_owned(),
    };
    let uri: Uri = server
        .parse()
        .map_err(|_| bad("not a URL; expected e.g. https://127.0.0.1:7443"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("must be an https:// URL (the broker only speaks TLS)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Endpoint::from_shared(server.to_string()).map_err(|e| bad(&error_chain(&e)))
}

/// The certificates of a PEM bundle, checked to be X.509 certificates, so that an empty or
/// wrong file fails here with a clear message instead of as an "unknown issuer" later.
///
/// # Errors
/// [`ClientError::TlsMaterial`] when a block does not parse or there is none.
pub fn root_certificates(bundle_pem: &[u8]) -> Result<Vec<Certificate>, ClientError> {
    let bad = |reason: String| ClientError::TlsMaterial {
        what: "trust bundle".to_string(),
        reason,
    };
    let mut roots = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(bundle_pem) {
        let block = block.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        x509_parser::parse_x509_certificate(&block.contents)
            .map_err(|e| bad(format!("a CERTIFICATE block does not parse: {e}")))?;
        roots.push(Certificate::from_pem(crate::pem::certificates([block
            .contents
            .as_slice()])));
    }
    if roots.is_empty() {
        return Err(bad("holds no CERTIFICATE".to_string()));
    }
    Ok(roots)
}

/// The first `io::Error` among an error's causes.
fn find_io_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io_error) = e.downcast_ref::<io::Error>() {
            return Some(io_error);
        }
        current = e.source();
    }
    None
}

fn describe_socket_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "not found".to_string(),
        io::ErrorKind::ConnectionRefused => {
            "refuses connections (a stale socket of a server that stopped?)".to_string()
        }
        io::ErrorKind::PermissionDenied => {
            "is not accessible: permission denied (it is owner-only; run as the user that \
             runs `mayfly server`)"
                .to_string()
        }
        _ => format!("cannot be opened: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_must_be_https() {
        assert!(broker_endpoint("https://127.0.0.1:7443").is_ok());
        assert!(broker_endpoint("https://localhost:7443").is_ok());
        for bad in [
            "http://127.0.0.1:7443",
            "127.0.0.1:7443",
            "",
            "https://",
            "not a url",
        ] {
            let err = broker_endpoint(bad).err();
            assert!(
                matches!(err, Some(ClientError::InvalidAddress { .. })),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn bundle_without_certificates_is_refused() {
        assert!(root_certificates(b"").is_err());
        assert!(root_certificates(b"hello").is_err());
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(root_certificates(key_only).is_err());
    }

    #[test]
    fn bundle_with_a_certificate_is_accepted() -> Result<(), Box<dyn std::error::Error>> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
        let pem = crate::pem::certificates([cert.der().as_ref(), cert.der().as_ref()]);
        assert_eq!(
            root_certificates(pem.as_bytes()).map(|r| r.len()).ok(),
            Some(2)
        );
        // Our encoder agrees with rcgen's, line for line.
        assert_eq!(
            crate::pem::certificates([cert.der().as_ref()]),
            cert.pem().replace("\r\n", "\n")
        );
        Ok(())
    }

    #[tokio::test]
    async fn missing_admin_socket_is_unavailable() {
        let err = connect_admin(Path::new("/nonexistent/mayfly/admin.sock"))
            .await
            .err();
        assert!(
            err.as_ref().is_some_and(ClientError::is_unreachable),
            "{err:?}"
        );
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "cannot reach the admin API: admin socket /nonexistent/mayfly/admin.sock not found"
            )
        );
    }

    #[tokio::test]
    async fn nobody_listening_on_the_broker_is_unavailable()
    -> Result<(), Box<dyn std::error::Error>> {
        // Bind and drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
        let server = format!("https://127.0.0.1:{port}");
        let err = connect_broker(&server, cert.pem().as_bytes(), None)
            .await
            .err();
        assert!(
            matches!(err, Some(ClientError::BrokerUnreachable { .. })),
            "{err:?}"
        );
        Ok(())
    }
}

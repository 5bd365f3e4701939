#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::anchor::http::parse_record;
use crate::audit::AuditOptions;

/// One POST the witness double saw: its body and its `Authorization` and `Content-Type`
/// headers.
type Post = (Vec<u8>, Option<String>, Option<String>);

/// What the witness double saw, and how it answers.
#[derive(Default)]
struct Witness {
    posts: Mutex<Vec<Post>>,
    /// The status of POST answers (200 when unset).
    post_status: Mutex<Option<u16>>,
    /// The GET answer: status and body (404 when unset).
    get_answer: Mutex<Option<(u16, Vec<u8>)>>,
}

type Shared = Arc<Witness>;

async fn store(State(witness): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    witness.posts.lock().unwrap().push((
        body.to_vec(),
        header("authorization"),
        header("content-type"),
    ));
    let status = witness.post_status.lock().unwrap().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

async fn answer(State(witness): State<Shared>) -> (StatusCode, Vec<u8>) {
    let (status, body) = witness
        .get_answer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or((404, Vec::new()));
    (StatusCode::from_u16(status).unwrap(), body)
}

/// A witness double on a loopback port: its URL and what it saw.
async fn serve_witness() -> (String, Shared) {
    let witness = Shared::default();
    let app = axum::Router::new()
        .route("/mayfly/a", post(store).get(answer))
        .with_state(witness.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/mayfly/a"), witness)
}

fn config(url: &str) -> HttpAnchorConfig {
    HttpAnchorConfig {
        url: AnchorUrl::parse(url).unwrap(),
        ca_file: None,
        token_file: None,
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A record of a real log's first checkpoint.
async fn record_of_a_log(dir: &Path) -> (AuditLog, AuditAnchorRecord) {
    let mut options = AuditOptions::new(dir.join("key"));
    options.replica = "0123456789abcdef".into();
    let log = AuditLog::open_with(&dir.join("audit"), &options).unwrap();
    let checkpoint = log.checkpoints().borrow().clone().unwrap();
    let record = AnchorRecords::new("0123456789abcdef".into())
        .record(&log, checkpoint, 1_700_000_000)
        .await
        .unwrap();
    (log, record)
}

#[test]
fn anchor_urls_are_http_or_https_without_credentials() {
    for good in [
        "https://witness.example/mayfly/replica-a",
        "http://127.0.0.1:8080/w",
        "https://[::1]:8443/w?replica=a",
    ] {
        let url = AnchorUrl::parse(good).unwrap();
        assert_eq!(url.to_string(), good);
    }
    for (bad, needle) in [
        ("ftp://witness.example/a", "http or https"),
        ("witness.example/a", "not"),
        ("/mayfly/a", "absolute"),
        ("https://user:secret@witness.example/a", "credentials"),
        ("https://witness.example/a#b", "fragment"),
        ("https://wit ness/a", "not a URL"),
        ("https://user:se cret@witness.example/a", "not a URL"),
    ] {
        let error = AnchorUrl::parse(bad).unwrap_err().to_string();
        assert!(error.contains(needle), "{bad}: {error}");
        // A refused URL is named, never with its password.
        assert!(
            !error.contains("secret") && !error.contains("se cret"),
            "{error}"
        );
        if bad.contains('@') {
            assert!(error.contains("[redacted]@witness.example/a"), "{error}");
        }
    }
}

#[test]
fn the_token_file_is_private_one_line_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let mut config = config("https://witness.example/a");
    config.token_file = Some(token.clone());

    // Positive control: 0600, one line.
    write_mode(&token, "s3cret-token-value\n", 0o600);
    let anchor = HttpAnchor::new(&config).unwrap();
    let debug = format!("{anchor:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");

    write_mode(&token, "s3cret-token-value\n", 0o644);
    let error = HttpAnchor::new(&config).unwrap_err();
    assert!(matches!(error, AnchorError::TokenFile { .. }), "{error:?}");
    assert!(!error.to_string().contains("s3cret"), "{error}");

    for bad in ["", "\n", "two\nlines\n", "with space"] {
        write_mode(&token, bad, 0o600);
        let error = HttpAnchor::new(&config).unwrap_err();
        assert!(
            matches!(error, AnchorError::TokenFormat { .. }),
            "{bad:?}: {error:?}"
        );
    }

    // A token goes over https, or plain http to a loopback address only.
    write_mode(&token, "s3cret", 0o600);
    for (url, ok) in [
        ("http://witness.example/a", false),
        ("http://10.0.0.1:8080/a", false),
        ("http://127.0.0.1:8080/a", true),
        ("http://[::1]:8080/a", true),
    ] {
        let mut settings = self::config(url);
        settings.token_file = Some(token.clone());
        let built = HttpAnchor::new(&settings);
        assert_eq!(built.is_ok(), ok, "{url}: {built:?}");
        if let Err(error) = built {
            assert!(
                matches!(error, AnchorError::TokenInClear { .. }),
                "{error:?}"
            );
        }
    }
}

#[test]
fn a_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut config = config("https://witness.example/a");
    config.ca_file = Some(ca.clone());
    let error = HttpAnchor::new(&config).unwrap_err();
    assert!(matches!(error, AnchorError::CaFile { .. }), "{error:?}");
    assert!(error.to_string().contains("ca.pem"), "{error}");

    std::fs::write(&ca, "not a certificate\n").unwrap();
    let error = HttpAnchor::new(&config).unwrap_err();
    assert!(
        matches!(error, AnchorError::CaCertificates { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("no CERTIFICATE"), "{error}");

    // The control: a CA certificate.
    let (ca_pem, _) = test_ca();
    std::fs::write(&ca, ca_pem).unwrap();
    HttpAnchor::new(&config).unwrap();
}

/// A record is POSTed as JSON with the token; 2xx is taken, anything else is the status;
/// a port nobody listens on is a request error. GET reads 404 as none, 200 as the record,
/// and refuses anything that is not exactly a record.
#[tokio::test]
async fn publish_and_read_against_a_witness() {
    let dir = tempfile::tempdir().unwrap();
    let (log, record) = record_of_a_log(dir.path()).await;
    let (url, witness) = serve_witness().await;
    let token = dir.path().join("token");
    write_mode(&token, "s3cret\n", 0o600);
    let mut settings = config(&url);
    settings.token_file = Some(token);
    let anchor = HttpAnchor::new(&settings).unwrap();

    anchor.publish(&record).await.unwrap();
    {
        let posts = witness.posts.lock().unwrap();
        let (body, authorization, content_type) = &posts[0];
        assert_eq!(parse_record(body).unwrap(), record);
        assert_eq!(authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(content_type.as_deref(), Some("application/json"));
    }
    *witness.post_status.lock().unwrap() = Some(500);
    let failed = anchor.publish(&record).await.unwrap_err();
    assert_eq!(failed.to_string(), "status 500");
    *witness.post_status.lock().unwrap() = Some(204);
    anchor.publish(&record).await.unwrap();

    assert_eq!(anchor.read().await.unwrap(), None, "404: none yet");
    let json = serde_json::to_vec(&record).unwrap();
    *witness.get_answer.lock().unwrap() = Some((200, json.clone()));
    assert_eq!(anchor.read().await.unwrap(), Some(record.clone()));
    let mut extended = serde_json::to_value(&record).unwrap();
    extended["extra"] = serde_json::json!(1);
    let mut trailing = json.clone();
    trailing.extend_from_slice(b" {}");
    for (status, body, needle) in [
        (200, b"{}".to_vec(), "not an audit anchor record"),
        (200, extended.to_string().into_bytes(), "unknown field"),
        (200, trailing, "trailing"),
        (503, json.clone(), "status 503"),
    ] {
        *witness.get_answer.lock().unwrap() = Some((status, body));
        let error = anchor.read().await.unwrap_err().to_string();
        assert!(error.contains(needle), "{error}");
    }

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let away = HttpAnchor::new(&config(&format!("http://{closed}/w"))).unwrap();
    let error = away.publish(&record).await.unwrap_err();
    assert!(matches!(error, SinkError::Request(_)), "{error:?}");
    assert!(error.to_string().contains("refused"), "{error}");
    log.close().await.unwrap();
}

/// A CA certificate and a server certificate for 127.0.0.1 it signed, as a rustls server
/// config; returns the CA's PEM.
fn test_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(
        params,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
    )
    .unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    (ca.pem(), Arc::new(server))
}

/// An HTTPS witness that answers every request 204, on a loopback port.
async fn serve_tls(server: Arc<rustls::ServerConfig>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            // Read the request head and its body, then answer.
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&seen);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            let _ = tls
                .write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = tls.shutdown().await;
        }
    });
    address
}

/// HTTPS to a witness whose certificate a private CA signed: taken with `anchor_url_ca`
/// naming that CA, refused with the system's roots or another CA.
#[tokio::test]
async fn https_trusts_the_private_ca_it_is_given_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (log, record) = record_of_a_log(dir.path()).await;
    let (ca_pem, server) = test_ca();
    let (other_ca_pem, _) = test_ca();
    let address = serve_tls(server).await;
    let url = format!("https://{address}/mayfly/a");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, &other_ca_pem).unwrap();

    let mut settings = config(&url);
    settings.ca_file = Some(ca);
    HttpAnchor::new(&settings)
        .unwrap()
        .publish(&record)
        .await
        .unwrap();

    let system_roots = HttpAnchor::new(&config(&url)).unwrap();
    let mut settings = config(&url);
    settings.ca_file = Some(other);
    let wrong_ca = HttpAnchor::new(&settings).unwrap();
    for anchor in [system_roots, wrong_ca] {
        let error = anchor.publish(&record).await.unwrap_err().to_string();
        assert!(error.contains("certificate"), "{error}");
    }
    log.close().await.unwrap();
}

/// The sink task: a witness that fails is tried again (counted failed, status failing
/// with the first error); when it takes a checkpoint again, one recovery record names the
/// sink, and the task stops with its token.
#[tokio::test]
async fn the_task_retries_a_failing_witness_and_records_its_recovery_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = record_of_a_log(dir.path()).await;
    let (url, witness) = serve_witness().await;
    *witness.post_status.lock().unwrap() = Some(500);
    let sinks = Sinks::open(Some(&config(&url)), None).unwrap().attach(&log);
    assert_eq!(sinks.len(), 1);
    let health = Arc::clone(sinks[0].health());
    let telemetry = crate::telemetry::Telemetry::new();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        sinks.into_iter().next().unwrap(),
        "0123456789abcdef".into(),
        log.clone(),
        telemetry.metrics().clone(),
        cancel.clone(),
    ));
    // Failing: status shows it.
    for _ in 0..500 {
        if health.failing().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(health.failing().is_some(), "the witness answers 500");
    let status = log.status().anchors;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].sink, "http");
    assert_eq!(status[0].first_error, "status 500");
    let recovered = || {
        std::fs::read_to_string(dir.path().join("audit/audit.log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(crate::audit::ANCHOR_RECOVERED_ACTION))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(recovered().is_empty());

    // Back: the next try (within the retry interval) works, and is recorded once.
    *witness.post_status.lock().unwrap() = None;
    for _ in 0..500 {
        if !recovered().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = recovered();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["detail"]["sink"], "http");
    assert_eq!(records[0]["reason"], "status 500");
    assert!(records[0]["detail"]["failed_writes"].as_u64().unwrap() >= 1);
    assert_eq!(health.failing(), None);
    let metrics = telemetry.render().unwrap();
    for outcome in ["ok", "failed"] {
        assert!(
            metrics.contains(&format!(
                "mayfly_audit_anchor_writes_total{{outcome=\"{outcome}\",sink=\"http\"}}"
            )) || metrics.contains(&format!(
                "mayfly_audit_anchor_writes_total{{sink=\"http\",outcome=\"{outcome}\"}}"
            )),
            "{metrics}"
        );
    }

    cancel.cancel();
    task.await.unwrap();
    log.close().await.unwrap();
}

//! Shared helpers for the end-to-end tests: a real broker on 127.0.0.1:0
//! with a temporary data directory and a controllable clock, clients for
//! both APIs, and the independent verifiers (openssl, rustls-webpki,
//! x509-parser, jwt-simple).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mayfly::clock::ManualClock;
use mayfly::config::Config;
use mayfly::server::RunningServer;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;
use tempfile::TempDir;
use tonic::transport::Channel;

pub const TRUST_DOMAIN: &str = "example.org";

/// A change to the test config.
pub type ConfigHook = Arc<dyn Fn(&mut Config) + Send + Sync>;

pub struct TestBroker {
    pub server: Option<RunningServer>,
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub attestors: mayfly::attest::AttestorsConfig,
    /// Changes to the test config (short lifetimes for rotation tests).
    pub configure: Option<ConfigHook>,
    /// Run on the system clock instead of `clock` (time that passes).
    pub real_clock: bool,
}

#[derive(Debug)]
pub struct Svid {
    pub chain_der: Vec<Vec<u8>>,
    pub chain_pem: String,
    pub key_pem: String,
    pub spiffe_id: String,
    pub serial: String,
    pub bundle: pb::Bundle,
}

/// The lines a child process writes to `stdout`, sent one by one on a channel by a thread of
/// their own, so that a test can wait for a banner line with a timeout; the channel closes
/// when the child closes its stdout.
pub fn line_channel(
    stdout: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if sender.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// A `mayfly server`'s banner, read from its `stdout` up to the "Stop with" line (at most
/// 60 s), and the broker's gRPC URL in it.
pub fn server_banner(stdout: impl std::io::Read + Send + 'static) -> (String, String) {
    let receiver = line_channel(stdout);
    let mut banner = String::new();
    loop {
        let line = receiver
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no server banner ({e}): {banner}"));
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    let url = banner
        .lines()
        .find(|l| l.contains("broker (gRPC)"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("https://")))
        .unwrap_or_else(|| panic!("no broker URL in the banner: {banner}"))
        .to_owned();
    (banner, url)
}

pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A config for a test broker in `data_dir`, on ephemeral loopback ports.
pub fn test_config(data_dir: std::path::PathBuf) -> Config {
    Config {
        trust_domain: mayfly_sdk::TrustDomain::new(TRUST_DOMAIN).unwrap(),
        data_dir,
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with_attestors("").await
    }

    /// A broker whose `[attestors]` section is `attestors_toml` (TOML, with
    /// `[[k8s_psat]]`-style tables relative to `[attestors]`).
    pub async fn start_with_attestors(attestors_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let attestors = toml::from_str(attestors_toml).expect("attestors config");
        let mut broker = TestBroker {
            server: None,
            dir,
            clock,
            attestors,
            configure: None,
            real_clock: false,
        };
        broker.boot().await;
        broker
    }

    /// A broker on the system clock with `configure` applied to its config.
    pub async fn start_configured(configure: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        let mut broker = TestBroker {
            server: None,
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(SystemTime::now())),
            attestors: Default::default(),
            configure: Some(Arc::new(configure)),
            real_clock: true,
        };
        broker.boot().await;
        broker
    }

    /// A broker on the test's manual clock with `configure` applied to its
    /// config (governance tests: time the test controls, settings it sets).
    pub async fn start_on_manual_clock(
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Self {
        let mut broker = TestBroker {
            server: None,
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(SystemTime::now())),
            attestors: Default::default(),
            configure: Some(Arc::new(configure)),
            real_clock: false,
        };
        broker.boot().await;
        broker
    }

    /// The clock the broker runs on.
    pub fn clock_dyn(&self) -> Arc<dyn mayfly::clock::Clock> {
        if self.real_clock {
            Arc::new(mayfly::clock::SystemClock)
        } else {
            self.clock.clone()
        }
    }

    async fn boot(&mut self) {
        let mut config = test_config(self.dir.path().join("data"));
        config.attestors = self.attestors.clone();
        if let Some(configure) = &self.configure {
            configure(&mut config);
        }
        let server = mayfly::server::start_with_clock(config, self.clock_dyn())
            .await
            .unwrap();
        self.server = Some(server);
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await;
        self.boot().await;
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Starts the server again after [`stop`](Self::stop), on the same data
    /// directory (a test may change its files in between).
    pub async fn restart_after_stop(&mut self) {
        self.boot().await;
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server().grpc_addr().port())
    }

    pub fn bundle_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir().join("bundle.pem")).unwrap()
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        mayfly_sdk::client::connect_admin(self.server().admin_socket())
            .await
            .unwrap()
    }

    pub async fn broker(&self) -> BrokerClient<Channel> {
        mayfly_sdk::client::connect_broker(&self.url(), &self.bundle_pem(), None)
            .await
            .unwrap()
    }

    pub async fn broker_as(&self, svid: &Svid) -> BrokerClient<Channel> {
        mayfly_sdk::client::connect_broker(
            &self.url(),
            &self.bundle_pem(),
            Some((svid.chain_pem.as_bytes(), svid.key_pem.as_bytes())),
        )
        .await
        .unwrap()
    }

    pub async fn create_entry(&self, path: &str, audiences: &[&str]) -> pb::Entry {
        self.create_entry_with_selectors(path, audiences, &[])
            .await
            .unwrap()
    }

    pub async fn create_entry_with_selectors(
        &self,
        path: &str,
        audiences: &[&str],
        selectors: &[&str],
    ) -> Result<pb::Entry, tonic::Status> {
        let spec = pb::EntrySpec {
            spiffe_id: Some(format!("spiffe://{TRUST_DOMAIN}{path}")),
            selectors: Some(pb::StringList {
                values: selectors.iter().map(|s| s.to_string()).collect(),
            }),
            audiences: Some(pb::StringList {
                values: audiences.iter().map(|a| a.to_string()).collect(),
            }),
            dns_names: Some(pb::StringList {
                values: vec!["api.example.org".into()],
            }),
            owner: Some("team@example.org".into()),
            purpose: Some("end-to-end test".into()),
            environment: Some("test".into()),
            data_class: Some("phi".into()),
            ..pb::EntrySpec::default()
        };
        self.admin()
            .await
            .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
            .await
            .map(|r| r.into_inner())
    }

    /// Registers a node agent at `path` (X.509 only) and returns a join
    /// token for it.
    pub async fn agent_join_token(&self, path: &str) -> String {
        let mut spec = Self::entry_spec(path, &[], &[]);
        spec.kinds = Some(pb::StringList {
            values: vec!["x509".into()],
        });
        let entry = self.create_entry_from(spec).await.unwrap();
        self.join_token(&entry.id, 0).await
    }

    pub async fn join_token(&self, entry_id: &str, ttl_seconds: u32) -> String {
        self.admin()
            .await
            .create_join_token(pb::CreateJoinTokenRequest {
                entry_id: entry_id.into(),
                ttl_seconds,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    pub async fn attest(&self, token: &str) -> Result<Svid, tonic::Status> {
        attest_via(self.broker().await, token).await
    }

    pub async fn renew(&self, svid: &Svid) -> Result<Svid, tonic::Status> {
        let (key, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
        let response = self
            .broker_as(svid)
            .await
            .renew_x509_svid(pb::RenewX509SvidRequest { csr })
            .await?
            .into_inner();
        Ok(svid_from(response, &key))
    }

    pub async fn mint(
        &self,
        svid: &Svid,
        audience: &str,
        ttl_seconds: u32,
    ) -> Result<pb::MintJwtSvidResponse, tonic::Status> {
        mint_via(self.broker_as(svid).await, audience, ttl_seconds).await
    }

    pub async fn validate(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<pb::ValidateJwtSvidResponse, tonic::Status> {
        validate_via(self.broker().await, token, audience).await
    }

    /// A fresh entry, a token, and the SVID it yields.
    pub async fn enrolled(&self, path: &str, audiences: &[&str]) -> (pb::Entry, Svid) {
        let entry = self.create_entry(path, audiences).await;
        let token = self.join_token(&entry.id, 0).await;
        let svid = self.attest(&token).await.unwrap();
        (entry, svid)
    }

    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.server().http_addr(), path).await
    }
}

/// The last record of the audit log, parsed.
pub fn last_audit_record(data_dir: &Path) -> serde_json::Value {
    let log = read_audit(data_dir);
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

pub fn svid_from(response: pb::X509SvidResponse, key: &rcgen::KeyPair) -> Svid {
    let svid = response.svid.unwrap();
    let chain_pem = svid
        .cert_chain
        .iter()
        .map(|der| pem("CERTIFICATE", der))
        .collect();
    Svid {
        chain_der: svid.cert_chain,
        chain_pem,
        key_pem: key.serialize_pem(),
        spiffe_id: svid.spiffe_id,
        serial: svid.serial,
        bundle: response.bundle.unwrap(),
    }
}

/// A minimal HTTP/1.1 GET, so the tests need no HTTP client dependency.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `openssl verify` of a leaf against the root, with the intermediates as
/// untrusted, for one purpose. Returns (passed, output).
pub fn openssl_verify(root_der: &[u8], chain_der: &[Vec<u8>], purpose: &str) -> (bool, String) {
    openssl_verify_with(root_der, chain_der, &["-purpose", purpose], None)
}

/// `openssl verify -crl_check` of a leaf with a CRL (DER). Returns (passed, output).
pub fn openssl_verify_with_crl(
    root_der: &[u8],
    chain_der: &[Vec<u8>],
    crl_der: &[u8],
) -> (bool, String) {
    openssl_verify_with(root_der, chain_der, &["-crl_check"], Some(crl_der))
}

fn openssl_verify_with(
    root_der: &[u8],
    chain_der: &[Vec<u8>],
    options: &[&str],
    crl_der: Option<&[u8]>,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    let untrusted = dir.path().join("untrusted.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&root, pem("CERTIFICATE", root_der)).unwrap();
    std::fs::write(&leaf, pem("CERTIFICATE", &chain_der[0])).unwrap();
    let intermediates: String = chain_der[1..]
        .iter()
        .map(|der| pem("CERTIFICATE", der))
        .collect();
    std::fs::write(&untrusted, intermediates).unwrap();
    let mut command = Command::new("openssl");
    command.arg("verify").args(options);
    if let Some(crl_der) = crl_der {
        let crl = dir.path().join("crl.pem");
        std::fs::write(&crl, pem("X509 CRL", crl_der)).unwrap();
        command.arg("-CRLfile").arg(crl);
    }
    let output = command
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&untrusted)
        .arg(&leaf)
        .output()
        .expect("the openssl command is needed for these tests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && text.contains(": OK"), text)
}

/// rustls-webpki path validation for client auth at `now`.
pub fn webpki_verify(
    root_der: &[u8],
    chain_der: &[Vec<u8>],
    now: SystemTime,
) -> Result<(), String> {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let root = CertificateDer::from(root_der.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| e.to_string())?;
    let leaf = CertificateDer::from(chain_der[0].clone());
    let leaf = webpki::EndEntityCert::try_from(&leaf).map_err(|e| e.to_string())?;
    let intermediates: Vec<CertificateDer<'static>> = chain_der[1..]
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let time = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap());
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &intermediates,
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Checks a leaf against X509-SVID.md §4 with x509-parser.
pub fn assert_x509_svid_profile(leaf_der: &[u8], spiffe_id: &str) {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf_der).unwrap();
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("SAN present");
    let uris: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| {
            if let GeneralName::URI(u) = n {
                Some(*u)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(uris, vec![spiffe_id], "exactly one URI SAN, the SPIFFE ID");
    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(!bc.value.ca, "leaf must not be a CA");
    let ku = cert.key_usage().unwrap().expect("keyUsage present");
    assert!(ku.critical, "keyUsage must be critical");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = cert.extended_key_usage().unwrap().expect("EKU present");
    assert!(eku.value.server_auth && eku.value.client_auth);
}

/// Verifies a JWT with jwt-simple (an independent JOSE implementation)
/// against the JWKS the broker serves over HTTP; returns the subject.
pub fn jwt_simple_verify(jwks_json: &str, token: &str, audience: &str) -> Result<String, String> {
    jwt_simple_verify_with_issuer(jwks_json, token, audience, None)
}

/// [`jwt_simple_verify`], and when `issuer` is given, jwt-simple's own
/// issuer check: `iss` must be present and equal to it.
pub fn jwt_simple_verify_with_issuer(
    jwks_json: &str,
    token: &str,
    audience: &str,
    issuer: Option<&str>,
) -> Result<String, String> {
    let claims = jwt_simple_claims(jwks_json, token, audience, issuer)?;
    claims["sub"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no sub".to_owned())
}

/// Every claim of a JWT that jwt-simple verified as
/// [`jwt_simple_verify_with_issuer`] does, as JSON (the registered claims
/// and any others, e.g. the governance claims).
pub fn jwt_simple_claims(
    jwks_json: &str,
    token: &str,
    audience: &str,
    issuer: Option<&str>,
) -> Result<serde_json::Value, String> {
    use base64::Engine;
    use jwt_simple::prelude::*;
    let metadata = Token::decode_metadata(token).map_err(|e| e.to_string())?;
    let kid = metadata.key_id().ok_or("no kid")?.to_owned();
    let jwks: serde_json::Value = serde_json::from_str(jwks_json).map_err(|e| e.to_string())?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or("kid not in JWKS")?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut point = vec![4u8];
    point.extend(
        b64.decode(jwk["x"].as_str().ok_or("no x")?)
            .map_err(|e| e.to_string())?,
    );
    point.extend(
        b64.decode(jwk["y"].as_str().ok_or("no y")?)
            .map_err(|e| e.to_string())?,
    );
    let key = ES256PublicKey::from_bytes(&point)
        .map_err(|e| e.to_string())?
        .with_key_id(&kid);
    let options = VerificationOptions {
        allowed_audiences: Some(HashSet::from_strings(&[audience])),
        allowed_issuers: issuer.map(|issuer| HashSet::from_strings(&[issuer])),
        ..VerificationOptions::default()
    };
    let claims = key
        .verify_token::<serde_json::Map<String, serde_json::Value>>(token, Some(options))
        .map_err(|e| e.to_string())?;
    serde_json::to_value(&claims).map_err(|e| e.to_string())
}

/// The audit records of `action` in the log under `data_dir`, in order.
pub fn audit_records(data_dir: &Path, action: &str) -> Vec<serde_json::Value> {
    read_audit(data_dir)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["action"] == action)
        .collect()
}

/// Waits until `done` holds, looking every 50 ms; fails the test after 30 s.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited too long for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestBroker {
    /// The audit records of `action` this broker wrote, in order.
    pub fn audit_records(&self, action: &str) -> Vec<serde_json::Value> {
        audit_records(&self.data_dir(), action)
    }

    /// The entry `id` as the admin API shows it now.
    pub async fn entry(&self, id: &str) -> pb::Entry {
        self.admin()
            .await
            .get_entry(pb::GetEntryRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }
}

pub fn read_audit(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("audit").join("audit.log")).unwrap()
}

// ---------------------------------------------------------------------------
// Helpers for the agent tests (tests/agent.rs).

impl TestBroker {
    /// The spec `create_entry_with_selectors` sends, to adjust (parent,
    /// TTLs, kinds) before [`create_entry_from`](Self::create_entry_from).
    pub fn entry_spec(path: &str, audiences: &[&str], selectors: &[&str]) -> pb::EntrySpec {
        pb::EntrySpec {
            spiffe_id: Some(format!("spiffe://{TRUST_DOMAIN}{path}")),
            selectors: Some(pb::StringList {
                values: selectors.iter().map(|s| s.to_string()).collect(),
            }),
            audiences: Some(pb::StringList {
                values: audiences.iter().map(|a| a.to_string()).collect(),
            }),
            owner: Some("team@example.org".into()),
            purpose: Some("agent test".into()),
            environment: Some("test".into()),
            data_class: Some("phi".into()),
            ..pb::EntrySpec::default()
        }
    }

    /// Creates an entry from a full spec.
    pub async fn create_entry_from(&self, spec: pb::EntrySpec) -> Result<pb::Entry, tonic::Status> {
        self.admin()
            .await
            .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
            .await
            .map(|r| r.into_inner())
    }

    /// Updates an entry; unset fields of `spec` keep their value.
    pub async fn update_entry(
        &self,
        id: &str,
        spec: pb::EntrySpec,
    ) -> Result<pb::Entry, tonic::Status> {
        self.admin()
            .await
            .update_entry(pb::UpdateEntryRequest {
                id: id.into(),
                spec: Some(spec),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Stops the server and starts a new one on the same data directory and
    /// the same broker address, as a restarted production broker would be.
    pub async fn restart_on_same_address(&mut self) {
        let address = self.server().grpc_addr();
        self.stop().await;
        self.start_again_at(address).await;
    }

    /// Starts a stopped broker again on its data directory, with the broker
    /// (gRPC) API at `address` (the address it had before).
    pub async fn start_again_at(&mut self, address: std::net::SocketAddr) {
        assert!(self.server.is_none(), "the broker is still running");
        let mut attempts = 0;
        loop {
            let mut config = test_config(self.data_dir());
            config.attestors = self.attestors.clone();
            config.grpc_listen = address;
            match mayfly::server::start_with_clock(config, self.clock.clone()).await {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                // The port may linger for a moment after the old listener closed.
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    eprintln!("restarting on {address}: {error}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot restart the broker on {address}: {error}"),
            }
        }
    }
}

/// The uid this test process runs as: the owner of a file it creates.
pub fn my_uid(dir: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    let probe = dir.join("uid-probe");
    std::fs::write(&probe, b"").unwrap();
    std::fs::metadata(&probe).unwrap().uid()
}

impl TestBroker {
    /// An agent config against this broker: its URL and bundle, its clock,
    /// a sync every 200 ms, the agent's data in `data_dir`.
    pub fn agent_config(
        &self,
        socket: std::path::PathBuf,
        data_dir: std::path::PathBuf,
        token: Option<&str>,
    ) -> mayfly_agent::AgentConfig {
        let mut config = mayfly_agent::AgentConfig::new(self.url(), self.bundle_pem(), socket);
        config.join_token = token.map(|t| t.to_owned().into());
        config.data_dir = data_dir;
        config.sync_interval = Duration::from_millis(200);
        config.clock = self.clock_dyn();
        config
    }

    /// The broker's root CA, DER.
    pub fn root_der(&self) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        CertificateDer::pem_slice_iter(&self.bundle_pem())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }
}

pub mod interop;
pub mod mtls;
pub mod prometheus;
pub mod redis;
pub mod webhook;

/// Attests with a join token through `broker` (any replica).
pub async fn attest_via(
    mut broker: BrokerClient<Channel>,
    token: &str,
) -> Result<Svid, tonic::Status> {
    let (key, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let response = broker
        .attest_and_issue(pb::AttestAndIssueRequest {
            evidence: Some(pb::attest_and_issue_request::Evidence::JoinToken(
                pb::JoinTokenEvidence {
                    token: token.into(),
                },
            )),
            csr,
            spiffe_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(svid_from(response, &key))
}

/// Mints a JWT-SVID through `broker`, connected with the workload's SVID.
pub async fn mint_via(
    mut broker: BrokerClient<Channel>,
    audience: &str,
    ttl_seconds: u32,
) -> Result<pb::MintJwtSvidResponse, tonic::Status> {
    broker
        .mint_jwt_svid(pb::MintJwtSvidRequest {
            audience: audience.into(),
            ttl_seconds,
        })
        .await
        .map(|r| r.into_inner())
}

/// Validates a JWT-SVID through `broker`.
pub async fn validate_via(
    mut broker: BrokerClient<Channel>,
    token: &str,
    audience: &str,
) -> Result<pb::ValidateJwtSvidResponse, tonic::Status> {
    broker
        .validate_jwt_svid(pb::ValidateJwtSvidRequest {
            token: token.into(),
            audience: audience.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Revokes through the admin API.
pub async fn revoke_via(
    mut admin: AdminClient<Channel>,
    kind: &str,
    value: &str,
    reason: &str,
) -> Result<pb::Revocation, tonic::Status> {
    admin
        .revoke(pb::RevokeRequest {
            kind: kind.into(),
            value: value.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// The file of the active authority of `kind` (`root`, `intermediate`,
/// `jwt-key`) in a data directory's CA journal; `field` is `key` or
/// `certificate`.
pub fn active_ca_file(data_dir: &Path, kind: &str, field: &str) -> std::path::PathBuf {
    let ca = data_dir.join("ca");
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ca.join(mayfly_ca::authority::JOURNAL_FILE)).unwrap(),
    )
    .unwrap();
    let active = journal["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind && a["state"] == "active")
        .unwrap_or_else(|| panic!("no active {kind} in {journal}"));
    ca.join(active[field].as_str().unwrap())
}

/// Signs a JWT-SVID for `subject` and `audience`, valid from `issued_at` to
/// `expires_at`, with the active JWT key in a broker's data directory: a
/// token the broker would not mint, signed as if it had.
pub fn sign_with_broker_key(
    data_dir: &Path,
    subject: &str,
    audience: &str,
    issued_at: i64,
    expires_at: i64,
    issuer: Option<&str>,
) -> String {
    let pem = std::fs::read(active_ca_file(data_dir, "jwt-key", "key")).unwrap();
    let key = mayfly_ca::keys::SigningKey::from_pkcs8_pem(&pem).unwrap();
    mayfly_ca::JwtSigner::new(&key)
        .unwrap()
        .sign_with_issuer(
            issuer,
            &subject.parse().unwrap(),
            &mayfly_sdk::jwt::Audience::new(audience).unwrap(),
            issued_at,
            expires_at,
        )
        .unwrap()
        .token
}

/// A raw gRPC client on the agent's socket: it sends exactly the metadata
/// the test gives, unlike a SPIFFE library.
pub async fn raw_workload_client(
    socket: &Path,
) -> mayfly_sdk::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<Channel> {
    let path = socket.to_owned();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://agent.sock")
        .connect_with_connector(connector)
        .await
        .unwrap();
    mayfly_sdk::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel)
}

/// A broker replica named `name` under `dir`, on the shared Redis at `url`
/// with `prefix`, on `clock`, its config adjusted by `configure`. With
/// `root_from` (another replica's data directory) it shares that replica's
/// root CA, as an operator copies it.
pub async fn replica_on_clock(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    prefix: &str,
    clock: std::sync::Arc<mayfly::clock::ManualClock>,
    root_from: Option<&std::path::Path>,
    configure: impl FnOnce(&mut mayfly::config::Config),
) -> mayfly::server::RunningServer {
    let data = dir.join(name);
    if let Some(first) = root_from {
        mayfly_sdk::files::ensure_private_dir(&data).unwrap();
        mayfly_ca::export_active_root(&first.join("ca"), &data.join("ca")).unwrap();
    }
    let mut config = mayfly::config::Config {
        store: mayfly::config::StoreLocation::Redis {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        },
        ..test_config(data)
    };
    configure(&mut config);
    mayfly::server::start_with_clock(config, clock)
        .await
        .unwrap()
}

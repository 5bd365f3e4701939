//! The agent's Workload API against clients from other ecosystems, run
//! unmodified as separate processes: py-spiffe (PyPI `spiffe`, on grpcio's C
//! core) and Node's @grpc/grpc-js with a client @grpc/proto-loader builds
//! from proto/spiffe/workloadapi.proto. The scripts are in tests/interop;
//! tests/common/interop.rs installs and runs them.
//!
//! A real broker and a real agent run in-process, the agent on a temporary
//! Unix socket. Each client is a workload attested for real: its entry's
//! selectors are this test's uid and the interpreter's executable
//! (`unix:path`), so the Python client matches one entry and the Node client
//! another, and a client whose interpreter no entry names is refused.
//!
//! Each script checks the answers with its own ecosystem's tools and prints
//! what it got as JSON; this test then checks that again with tools neither
//! wrote: `openssl verify`, the broker's own validation and jwt-simple.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::interop::{ClientRun, InteropClients};
use common::{TRUST_DOMAIN, TestBroker};
use mayfly_agent::RunningAgent;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tempfile::TempDir;

const AGENT_PATH: &str = "/agent/interop";
const AUDIENCE: &str = "interop-db";

/// A client ecosystem, and the workload identity its entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Python,
    Node,
}

impl Client {
    /// The path of its SPIFFE ID.
    fn path(self) -> &'static str {
        match self {
            Client::Python => "/interop/python",
            Client::Node => "/interop/node",
        }
    }

    fn spiffe_id(self) -> String {
        format!("spiffe://{TRUST_DOMAIN}{}", self.path())
    }

    /// The file the agent sees this client's process execute.
    fn executable(self, clients: &InteropClients) -> &Path {
        match self {
            Client::Python => &clients.python_executable,
            Client::Node => &clients.node,
        }
    }
}

/// A broker, an agent registered with it, and workload entries under the
/// agent for some of the clients.
struct Setup {
    broker: TestBroker,
    dir: TempDir,
    agent: Option<RunningAgent>,
    clients: &'static InteropClients,
}

impl Setup {
    /// Registers the agent and, under it, an entry for each of `registered`
    /// (selectors: this process's uid and the client's interpreter), then
    /// starts the agent.
    async fn start(clients: &'static InteropClients, registered: &[Client]) -> Setup {
        let broker = TestBroker::start().await;
        let dir = tempfile::tempdir().unwrap();
        let uid = common::my_uid(dir.path());

        let token = broker.agent_join_token(AGENT_PATH).await;

        for &client in registered {
            let selectors = [
                format!("unix:uid:{uid}"),
                format!("unix:path:{}", client.executable(clients).display()),
            ];
            let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
            let mut spec = TestBroker::entry_spec(client.path(), &[AUDIENCE], &selectors);
            spec.parent_id = Some(format!("spiffe://{TRUST_DOMAIN}{AGENT_PATH}"));
            broker.create_entry_from(spec).await.unwrap();
        }

        let socket = dir.path().join("run").join("agent.sock");
        let config = broker.agent_config(socket, dir.path().join("agent"), Some(&token));
        let agent = mayfly_agent::start(config).await.unwrap();
        Setup {
            broker,
            dir,
            agent: Some(agent),
            clients,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run").join("agent.sock")
    }

    /// Runs `client`'s script: `entitled` (all five calls, checked) or
    /// `denied`.
    async fn run(&self, client: Client, args: &[&str]) -> ClientRun {
        let proto = common::interop::workload_proto();
        match client {
            Client::Python => {
                self.clients
                    .run_python("workload_client.py", args, &self.socket())
                    .await
            }
            Client::Node => {
                let mut with_proto = args.to_vec();
                with_proto.extend(["--proto", proto.to_str().unwrap()]);
                self.clients
                    .run_node("workload_client.js", &with_proto, &self.socket())
                    .await
            }
        }
    }

    /// Runs `client` as an entitled workload; asserts it succeeded.
    async fn run_entitled(&self, client: Client) -> Value {
        let id = client.spiffe_id();
        let run = self
            .run(
                client,
                &["entitled", "--spiffe-id", &id, "--audience", AUDIENCE],
            )
            .await;
        assert!(run.success, "{}", run.transcript);
        assert_eq!(run.json["ok"], true, "{}", run.transcript);
        run.json
    }

    /// Runs `client` as a workload no entry names, with a valid `token` to
    /// validate; returns each call's status.
    async fn run_denied(&self, client: Client, token: &str) -> ClientRun {
        self.run(
            client,
            &["denied", "--token", token, "--audience", AUDIENCE],
        )
        .await
    }

    async fn shutdown(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        self.broker.stop().await;
    }
}

fn ders_from_pems(pems: &Value) -> Vec<Vec<u8>> {
    pems.as_array()
        .expect("an array of PEM strings")
        .iter()
        .map(|pem| {
            CertificateDer::from_pem_slice(pem.as_str().unwrap().as_bytes())
                .unwrap()
                .to_vec()
        })
        .collect()
}

/// What both clients report of the five calls, checked here again:
/// the identity, the chain with `openssl verify` against the broker's root
/// (which must be the bundle the client got), the JWT-SVID with the broker,
/// and the agent's refusal of the token for another audience.
async fn assert_five_calls(setup: &Setup, client: Client, result: &Value) {
    let id = client.spiffe_id();
    let context = || format!("{client:?} client said {result:#}");

    // FetchX509SVID and FetchX509Bundles.
    assert_eq!(
        result["x509_svid"]["spiffe_id"],
        id.as_str(),
        "{}",
        context()
    );
    let chain = ders_from_pems(&result["x509_svid"]["chain_pem"]);
    common::assert_x509_svid_profile(&chain[0], &id);
    let authorities = ders_from_pems(&result["x509_bundle"]["authorities_pem"]);
    let root = setup.broker.root_der();
    assert_eq!(authorities, std::slice::from_ref(&root), "{}", context());
    assert_eq!(
        result["x509_bundle"]["trust_domain"],
        format!("spiffe://{TRUST_DOMAIN}"),
        "{}",
        context()
    );
    let (verified, output) = common::openssl_verify(&root, &chain, "sslclient");
    assert!(verified, "openssl verify: {output}");

    // FetchJWTSVID: a token the broker itself accepts for the audience, and
    // not for another.
    let token = result["jwt_svid"]["token"].as_str().unwrap();
    assert_eq!(
        result["jwt_svid"]["spiffe_id"],
        id.as_str(),
        "{}",
        context()
    );
    assert_eq!(
        result["jwt_svid"]["audience"],
        serde_json::json!([AUDIENCE])
    );
    let checked = setup.broker.validate(token, AUDIENCE).await.unwrap();
    assert_eq!(checked.spiffe_id, id);
    assert!(
        setup
            .broker
            .validate(token, "another-audience")
            .await
            .is_err(),
        "the broker accepted the token for another audience"
    );

    // ValidateJWTSVID, as the client saw it.
    assert_eq!(result["validate"]["accepted"], id.as_str(), "{}", context());
    assert_eq!(
        result["validate"]["wrong_audience"],
        "INVALID_ARGUMENT",
        "{}",
        context()
    );
}

/// Each of the five calls of a `denied` run failed with PermissionDenied.
fn assert_all_denied(run: &ClientRun) {
    let expected: serde_json::Map<String, Value> = [
        "FetchX509SVID",
        "FetchX509Bundles",
        "FetchJWTSVID",
        "FetchJWTBundles",
        "ValidateJWTSVID",
    ]
    .into_iter()
    .map(|call| (call.to_owned(), Value::from("PERMISSION_DENIED")))
    .collect();
    assert_eq!(
        run.json["calls"],
        Value::Object(expected),
        "{}",
        run.transcript
    );
    assert!(run.success, "{}", run.transcript);
}

#[tokio::test]
async fn py_spiffe_gets_and_checks_x509_and_jwt_svids_bundles_and_validation() {
    let Some(clients) = common::interop::clients_or_skip() else {
        return;
    };
    let setup = Setup::start(clients, &[Client::Python, Client::Node]).await;
    let result = setup.run_entitled(Client::Python).await;
    assert_eq!(result["client"], "py-spiffe");
    assert_five_calls(&setup, Client::Python, &result).await;
    // py-spiffe's own checks, reported: cryptography's path validation named
    // the SPIFFE ID, and the token's kid is in the JWT bundle it fetched.
    assert_eq!(
        result["x509_bundle"]["verified_uris"],
        serde_json::json!([Client::Python.spiffe_id()])
    );
    let kids = result["jwt_bundle"]["kids"].as_array().unwrap();
    assert!(
        kids.contains(&result["jwt_bundle"]["token_kid"]),
        "{result:#}"
    );
    setup.shutdown().await;
}

#[tokio::test]
async fn grpc_js_gets_and_checks_all_five_calls_and_needs_the_security_header() {
    let Some(clients) = common::interop::clients_or_skip() else {
        return;
    };
    let setup = Setup::start(clients, &[Client::Python, Client::Node]).await;
    let result = setup.run_entitled(Client::Node).await;
    assert_eq!(result["client"], "@grpc/grpc-js");
    assert_five_calls(&setup, Client::Node, &result).await;

    // The JWKS it fetched verifies the token with jwt-simple, too.
    let jwks = result["jwt_bundle"]["jwks"].to_string();
    let token = result["jwt_svid"]["token"].as_str().unwrap();
    assert_eq!(
        common::jwt_simple_verify(&jwks, token, AUDIENCE).unwrap(),
        Client::Node.spiffe_id()
    );

    // Without `workload.spiffe.io: true` the same calls are refused.
    for call in ["FetchX509SVID", "FetchJWTSVID"] {
        let seen = &result["security_header"][call];
        assert_eq!(seen["with"], "OK", "{call}: {result:#}");
        assert_eq!(seen["without"], "INVALID_ARGUMENT", "{call}: {result:#}");
    }
    setup.shutdown().await;
}

#[tokio::test]
async fn a_client_whose_interpreter_no_entry_names_is_denied_every_call() {
    let Some(clients) = common::interop::clients_or_skip() else {
        return;
    };
    // Only Node is registered: Node is served (the positive control, and a
    // valid token), Python, same uid, is refused.
    let setup = Setup::start(clients, &[Client::Node]).await;
    let node = setup.run_entitled(Client::Node).await;
    let token = node["jwt_svid"]["token"].as_str().unwrap().to_owned();
    assert_all_denied(&setup.run_denied(Client::Python, &token).await);
    setup.shutdown().await;

    // And the other way round.
    let setup = Setup::start(clients, &[Client::Python]).await;
    let python = setup.run_entitled(Client::Python).await;
    let token = python["jwt_svid"]["token"].as_str().unwrap().to_owned();
    assert_all_denied(&setup.run_denied(Client::Node, &token).await);
    setup.shutdown().await;
}

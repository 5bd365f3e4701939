//! Everything a run needs before the first measured request, made through the admin API
//! and the broker as an operator and a workload would: entries, join tokens, X509-SVIDs
//! for mTLS, JWT-SVIDs to validate, CSRs to renew with, and connections.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;
use mayfly_sdk::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::transport::{Channel, Endpoint, Uri};
use zeroize::Zeroizing;

use super::error::BenchError;
use super::paths::{Caller, PathKind};
use super::process::ChildProcess;

/// The audience every bench entry allows and every JWT-SVID is minted for.
pub(crate) const AUDIENCE: &str = "mayfly-bench";
/// Lifetime of the bench's SVIDs and JWT-SVIDs (the broker's cap): long enough that
/// nothing expires during a run.
const TTL_SECONDS: u32 = 3600;
/// How long the agent may take to serve its first JWT-SVID.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// An X509-SVID and its private key, PEM, to authenticate with over mTLS.
pub(crate) struct Identity {
    chain_pem: String,
    key_pem: Zeroizing<String>,
}

impl Identity {
    /// The chain and the key, PEM, for a load worker's plan.
    pub(crate) fn to_pem(&self) -> (String, String) {
        (self.chain_pem.clone(), self.key_pem.as_str().to_owned())
    }

    /// Back from [`Identity::to_pem`].
    pub(crate) fn from_pem((chain_pem, key_pem): (String, String)) -> Self {
        Identity {
            chain_pem,
            key_pem: Zeroizing::new(key_pem),
        }
    }
}

/// What setup made.
pub(crate) struct Fixture {
    /// The workload identity for mint, x509 and validate (its entry requires a unique jti).
    pub(crate) client: Option<Identity>,
    /// The workload identity for mint-cached (its entry allows reuse).
    pub(crate) cached_client: Option<Identity>,
    /// The agent identity for batch.
    pub(crate) agent: Option<Identity>,
    /// One item per entry registered under that agent.
    pub(crate) batch_params: Vec<pb::JwtSvidParams>,
    /// The join token of the `mayfly agent` that serves the workload path.
    pub(crate) node_token: Option<Zeroizing<String>>,
    /// Every entry made, children after their parent.
    pub(crate) entry_ids: Vec<String>,
    /// `spiffe://<trust domain>/bench/<run>`.
    pub(crate) prefix: String,
}

impl Fixture {
    /// What a load worker is handed: the identities and batch items, nothing to clean up.
    pub(crate) fn for_worker(
        client: Option<Identity>,
        cached_client: Option<Identity>,
        agent: Option<Identity>,
        batch_params: Vec<pb::JwtSvidParams>,
    ) -> Self {
        Fixture {
            client,
            cached_client,
            agent,
            batch_params,
            node_token: None,
            entry_ids: Vec::new(),
            prefix: String::new(),
        }
    }
}

/// How to reach the broker under test.
#[derive(Clone, Copy)]
pub(crate) struct BrokerAddress<'a> {
    /// Its `https://` URL.
    pub(crate) url: &'a str,
    /// The root CA(s) it chains to, PEM.
    pub(crate) bundle_pem: &'a [u8],
}

/// Registers the entries `paths` need under a fresh `bench/<run>` prefix and obtains
/// their SVIDs. `uid` is this process's, the selector of the agent's workload entry.
///
/// # Errors
/// [`BenchError::Setup`] when the broker refuses a step; [`BenchError::Unreachable`].
pub(crate) async fn prepare(
    admin: &mut AdminClient<Channel>,
    broker: BrokerAddress<'_>,
    paths: &[PathKind],
    batch_size: usize,
    uid: u32,
) -> Result<Fixture, BenchError> {
    let status = admin
        .server_status(pb::ServerStatusRequest {})
        .await
        .map_err(|s| BenchError::setup("ask the server's status", &s))?
        .into_inner();
    let mut fixture = Fixture {
        client: None,
        cached_client: None,
        agent: None,
        batch_params: Vec::new(),
        node_token: None,
        entry_ids: Vec::new(),
        prefix: format!("spiffe://{}/bench/{}", status.trust_domain, random_id(6)),
    };
    let needs = |path| paths.contains(&path);
    if needs(PathKind::Floor)
        || needs(PathKind::Mint)
        || needs(PathKind::X509)
        || needs(PathKind::Validate)
    {
        let token = fixture.entry_with_token(admin, "client", &[], None).await?;
        fixture.client = Some(attest(broker, &token).await?);
    }
    if needs(PathKind::MintCached) {
        let mut spec = fixture.spec("client-cached", &[], None, 0);
        spec.unique_jti = Some(false);
        let token = fixture.entry_token(admin, spec).await?;
        fixture.cached_client = Some(attest(broker, &token).await?);
    }
    if needs(PathKind::Batch) {
        let token = fixture
            .entry_with_token(admin, "agent", &["x509"], None)
            .await?;
        fixture.agent = Some(attest(broker, &token).await?);
        let parent = format!("{}/agent", fixture.prefix);
        for i in 0..batch_size {
            let spec = fixture.spec(&format!("batch-{i}"), &[], Some(&parent), uid);
            let entry = fixture.create(admin, spec).await?;
            fixture.batch_params.push(pb::JwtSvidParams {
                entry_id: entry.id,
                audience: AUDIENCE.to_owned(),
                ttl_seconds: 0,
            });
        }
    }
    if needs(PathKind::Workload) {
        let token = fixture
            .entry_with_token(admin, "node", &["x509"], None)
            .await?;
        fixture.node_token = Some(token);
        let parent = format!("{}/node", fixture.prefix);
        // The agent reuses tokens for it: the path measures the agent's cache.
        let mut spec = fixture.spec("workload", &[], Some(&parent), uid);
        spec.unique_jti = Some(false);
        fixture.create(admin, spec).await?;
    }
    Ok(fixture)
}

impl Fixture {
    /// An entry spec under the bench prefix; `parent` registers it under that agent, for
    /// processes of `uid`. It requires a unique `jti`: every JWT-SVID is signed, none is
    /// served from a cache.
    fn spec(&self, name: &str, kinds: &[&str], parent: Option<&str>, uid: u32) -> pb::EntrySpec {
        let list = |values: Vec<String>| Some(pb::StringList { values });
        let x509_only = kinds == ["x509"];
        pb::EntrySpec {
            spiffe_id: Some(format!("{}/{name}", self.prefix)),
            selectors: parent
                .map(|_| vec![format!("unix:uid:{uid}")])
                .and_then(list),
            audiences: (!x509_only)
                .then(|| vec![AUDIENCE.to_owned()])
                .and_then(list),
            kinds: (!kinds.is_empty())
                .then(|| kinds.iter().map(|k| (*k).to_owned()).collect())
                .and_then(list),
            jwt_ttl_seconds: Some(TTL_SECONDS),
            x509_ttl_seconds: Some(TTL_SECONDS),
            owner: Some("mayfly-bench".to_owned()),
            purpose: Some("load test (mayfly bench); deleted when it ends".to_owned()),
            environment: Some("test".to_owned()),
            data_class: Some("none".to_owned()),
            parent_id: parent.map(str::to_owned),
            unique_jti: Some(true),
            ..pb::EntrySpec::default()
        }
    }

    async fn create(
        &mut self,
        admin: &mut AdminClient<Channel>,
        spec: pb::EntrySpec,
    ) -> Result<pb::Entry, BenchError> {
        let name = spec.spiffe_id.clone().unwrap_or_default();
        let entry = admin
            .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
            .await
            .map_err(|s| BenchError::setup(format!("create the entry {name}"), &s))?
            .into_inner();
        self.entry_ids.push(entry.id.clone());
        Ok(entry)
    }

    /// Creates an entry and a join token for it.
    async fn entry_with_token(
        &mut self,
        admin: &mut AdminClient<Channel>,
        name: &str,
        kinds: &[&str],
        parent: Option<&str>,
    ) -> Result<Zeroizing<String>, BenchError> {
        let spec = self.spec(name, kinds, parent, 0);
        self.entry_token(admin, spec).await
    }

    /// Creates the entry of `spec` and a join token for it.
    async fn entry_token(
        &mut self,
        admin: &mut AdminClient<Channel>,
        spec: pb::EntrySpec,
    ) -> Result<Zeroizing<String>, BenchError> {
        let name = spec.spiffe_id.clone().unwrap_or_default();
        let entry = self.create(admin, spec).await?;
        let token = admin
            .create_join_token(pb::CreateJoinTokenRequest {
                entry_id: entry.id,
                ttl_seconds: 0,
            })
            .await
            .map_err(|s| BenchError::setup(format!("create a join token for {name}"), &s))?
            .into_inner();
        Ok(Zeroizing::new(token.token))
    }

    /// Deletes every entry setup made (when the broker outlives the run).
    pub(crate) async fn delete_entries(&self, admin: &mut AdminClient<Channel>) {
        for id in self.entry_ids.iter().rev() {
            let request = pb::DeleteEntryRequest { id: id.clone() };
            if let Err(status) = admin.delete_entry(request).await {
                tracing::warn!(entry = %id, error = %status.message(), "cannot delete a bench entry");
            }
        }
    }
}

/// Attests with a join token: a key made here, a CSR, an X509-SVID back.
async fn attest(broker: BrokerAddress<'_>, token: &str) -> Result<Identity, BenchError> {
    let (key, csr) = mayfly_sdk::client::new_key_and_csr()?;
    let mut client =
        mayfly_sdk::client::connect_broker(broker.url, broker.bundle_pem, None).await?;
    let request = pb::AttestAndIssueRequest {
        evidence: Some(pb::attest_and_issue_request::Evidence::JoinToken(
            pb::JoinTokenEvidence {
                token: token.to_owned(),
            },
        )),
        csr,
        spiffe_id: String::new(),
    };
    let issued = client
        .attest_and_issue(request)
        .await
        .map_err(|s| BenchError::setup("attest with a join token", &s))?
        .into_inner();
    let chain = issued.svid.map(|svid| svid.cert_chain).unwrap_or_default();
    if chain.is_empty() {
        return Err(BenchError::Setup {
            step: "attest with a join token".into(),
            reason: "the answer holds no certificate".into(),
        });
    }
    Ok(Identity {
        chain_pem: mayfly_sdk::pem::certificates(chain.iter().map(Vec::as_slice)),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// `count` broker connections (one HTTP/2 connection each), authenticated with
/// `identity` when given.
pub(crate) async fn broker_clients(
    broker: BrokerAddress<'_>,
    identity: Option<&Identity>,
    count: usize,
) -> Result<Vec<BrokerClient<Channel>>, BenchError> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let identity = identity.map(|i| (i.chain_pem.as_bytes(), i.key_pem.as_bytes()));
        clients.push(
            mayfly_sdk::client::connect_broker(broker.url, broker.bundle_pem, identity).await?,
        );
    }
    Ok(clients)
}

/// The callers of `path`, one per connection.
pub(crate) async fn callers(
    path: PathKind,
    broker: BrokerAddress<'_>,
    fixture: &Fixture,
    connections: usize,
    agent_socket: Option<&Path>,
) -> Result<Vec<Caller>, BenchError> {
    let missing = |what: &str| BenchError::Local(format!("{path}: no {what} was set up"));
    let audience = AUDIENCE.to_owned();
    Ok(match path {
        PathKind::Floor => {
            let identity = fixture
                .client
                .as_ref()
                .ok_or_else(|| missing("client identity"))?;
            broker_clients(broker, Some(identity), connections)
                .await?
                .into_iter()
                .map(|client| Caller::Floor { client })
                .collect()
        }
        PathKind::Mint | PathKind::MintCached => {
            let identity = match path {
                PathKind::Mint => fixture.client.as_ref(),
                _ => fixture.cached_client.as_ref(),
            };
            let identity = identity.ok_or_else(|| missing("client identity"))?;
            broker_clients(broker, Some(identity), connections)
                .await?
                .into_iter()
                .map(|client| Caller::Mint {
                    client,
                    audience: audience.clone(),
                })
                .collect()
        }
        PathKind::Batch => {
            let request = pb::BatchMintJwtSvidsRequest {
                params: fixture.batch_params.clone(),
            };
            let agent = fixture
                .agent
                .as_ref()
                .ok_or_else(|| missing("agent identity"))?;
            broker_clients(broker, Some(agent), connections)
                .await?
                .into_iter()
                .map(|client| Caller::Batch {
                    client,
                    request: request.clone(),
                })
                .collect()
        }
        PathKind::X509 => {
            let identity = fixture
                .client
                .as_ref()
                .ok_or_else(|| missing("client identity"))?;
            let csrs: Vec<Vec<u8>> = (0..16)
                .map(|_| mayfly_sdk::client::new_key_and_csr().map(|(_, csr)| csr))
                .collect::<Result<_, _>>()?;
            let csrs: std::sync::Arc<[Vec<u8>]> = csrs.into();
            broker_clients(broker, Some(identity), connections)
                .await?
                .into_iter()
                .map(|client| Caller::X509 {
                    client,
                    csrs: csrs.clone(),
                })
                .collect()
        }
        PathKind::Validate => {
            let identity = fixture
                .client
                .as_ref()
                .ok_or_else(|| missing("client identity"))?;
            let tokens: std::sync::Arc<[String]> = mint_tokens(broker, identity, 64).await?.into();
            broker_clients(broker, None, connections)
                .await?
                .into_iter()
                .map(|client| Caller::Validate {
                    client,
                    tokens: tokens.clone(),
                    audience: audience.clone(),
                })
                .collect()
        }
        PathKind::Workload => {
            let socket = agent_socket.ok_or_else(|| missing("agent"))?;
            let mut callers = Vec::with_capacity(connections);
            for _ in 0..connections {
                callers.push(Caller::Workload {
                    client: workload_client(socket).await?,
                    audience: audience.clone(),
                });
            }
            callers
        }
    })
}

/// `count` JWT-SVIDs for the bench audience, to validate.
async fn mint_tokens(
    broker: BrokerAddress<'_>,
    identity: &Identity,
    count: usize,
) -> Result<Vec<String>, BenchError> {
    let mut client = broker_clients(broker, Some(identity), 1)
        .await?
        .pop()
        .ok_or_else(|| BenchError::Local("no broker connection".into()))?;
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let request = pb::MintJwtSvidRequest {
            audience: AUDIENCE.to_owned(),
            ttl_seconds: 0,
        };
        let minted = client
            .mint_jwt_svid(request)
            .await
            .map_err(|s| BenchError::setup("mint JWT-SVIDs to validate", &s))?;
        tokens.push(minted.into_inner().token);
    }
    Ok(tokens)
}

/// A Workload API client on the agent's Unix socket (one connection).
async fn workload_client(socket: &Path) -> Result<SpiffeWorkloadApiClient<Channel>, BenchError> {
    let path = socket.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    });
    // The URI is required by the HTTP/2 client but never resolved: the connector dials
    // the socket.
    let channel = Endpoint::from_static("http://agent.sock")
        .timeout(mayfly_sdk::client::REQUEST_TIMEOUT)
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            BenchError::Unreachable(format!(
                "the agent's socket {}: {}",
                socket.display(),
                mayfly_sdk::error_chain(&e)
            ))
        })?;
    Ok(SpiffeWorkloadApiClient::new(channel))
}

/// Waits until the agent serves a JWT-SVID for the bench audience on `socket`: it has
/// attested, synced its entries and minted through the broker.
///
/// # Errors
/// [`BenchError::Process`] if the agent exits or is not ready within a minute.
pub(crate) async fn wait_for_agent(
    agent: &mut ChildProcess,
    socket: &Path,
) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + AGENT_READY_TIMEOUT;
    let mut last_error = String::from("its socket never appeared");
    loop {
        if agent.has_exited() {
            return Err(agent.failure("stopped before it served the Workload API"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(agent.failure(&format!("not ready within a minute: {last_error}")));
        }
        if socket.exists() {
            match workload_client(socket).await {
                Ok(client) => {
                    let mut caller = Caller::Workload {
                        client,
                        audience: AUDIENCE.to_owned(),
                    };
                    match caller.call(0).await {
                        Ok(_) => return Ok(()),
                        Err(error) => last_error = error,
                    }
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `bytes` random bytes as unpadded base64url: 16 bytes make a 22-character `jti`.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The system RNG only fails if the kernel cannot supply randomness at all; the ids are
    // names, not secrets, so a zeroed buffer would only make them collide.
    let _ = aws_lc_rs::rand::fill(&mut buffer);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

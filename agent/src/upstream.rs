//! The agent's side of the broker API: its own identity, the mTLS
//! connection made with it, and the calls the agent makes.
//!
//! The connection is built lazily and kept; it is rebuilt when the agent's
//! SVID is renewed (the TLS client identity changes) and after a transport
//! failure, so a restarted broker is picked up on the next call.

use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;

use crate::telemetry::traced;
use tonic::transport::Channel;

use super::error::AgentError;
use super::identity::{AgentSvid, IdentityFiles};
use mayfly_sdk::clock::Clock;

/// The broker, as the agent sees it.
pub(crate) struct Upstream {
    server: String,
    /// The roots the operator gave (`--bundle`), always trusted for TLS.
    configured_roots_pem: Vec<u8>,
    /// The latest roots the broker published, trusted too (root rotation).
    bundle_roots: ArcSwap<Vec<Vec<u8>>>,
    /// Ticks whenever `bundle_roots` changes (a root rotation), so that
    /// long-lived streams reconnect trusting the new roots.
    roots_changed: tokio::sync::watch::Sender<u64>,
    identity: ArcSwap<AgentSvid>,
    client: ArcSwapOption<BrokerClient<Channel>>,
    files: IdentityFiles,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("server", &self.server)
            .field("identity", &self.identity.load())
            .field("connected", &self.client.load().is_some())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The agent's identity: the saved SVID while it is valid, else a new
    /// one from the join token.
    ///
    /// # Errors
    /// [`AgentError::NoIdentity`] with neither; the broker's refusal of the
    /// token; [`AgentError::BrokerUnreachable`]; [`AgentError::DataDir`].
    pub(crate) async fn bootstrap(
        server: String,
        configured_roots_pem: Vec<u8>,
        attestation: Option<NodeAttestation<'_>>,
        files: IdentityFiles,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AgentError> {
        let now = clock.unix_now();
        let saved = match files.load() {
            Ok(saved) => saved.filter(|svid| !svid.is_expired(now)),
            Err(error) if attestation.is_some() => {
                tracing::warn!(%error, "ignoring the saved agent SVID; attesting again");
                None
            }
            Err(error) => return Err(error),
        };
        let identity = match (saved, attestation) {
            (Some(svid), _) => {
                tracing::info!(
                    spiffe_id = %svid.spiffe_id,
                    serial = %svid.serial,
                    "re-using the saved agent SVID"
                );
                svid
            }
            (None, Some(attestation)) => {
                attest(&server, &configured_roots_pem, attestation, &files, now).await?
            }
            (None, None) => {
                return Err(AgentError::NoIdentity {
                    data_dir: files.dir().to_owned(),
                });
            }
        };
        // Roots saved by an earlier run stay trusted: the broker may have
        // rotated its root since the operator's --bundle file was written.
        let mut configured_roots_pem = configured_roots_pem;
        if let Some(saved) = files.saved_bundle() {
            configured_roots_pem.push(b'\n');
            configured_roots_pem.extend_from_slice(&saved);
        }
        Ok(Upstream {
            server,
            configured_roots_pem,
            bundle_roots: ArcSwap::from_pointee(Vec::new()),
            roots_changed: tokio::sync::watch::Sender::new(0),
            identity: ArcSwap::from_pointee(identity),
            client: ArcSwapOption::empty(),
            files,
            clock,
        })
    }

    /// The agent's current SVID.
    pub(crate) fn identity(&self) -> Arc<AgentSvid> {
        self.identity.load_full()
    }

    /// Renews the agent's SVID if it is past its renewal time.
    ///
    /// # Errors
    /// [`AgentError::IdentityExpired`] if it expired first; the broker's
    /// refusal or unreachability otherwise (the current SVID is kept).
    pub(crate) async fn renew_if_due(&self) -> Result<(), AgentError> {
        let now = self.clock.unix_now();
        let current = self.identity();
        if current.is_expired(now) {
            return Err(AgentError::IdentityExpired {
                expired_at: mayfly_sdk::clock::rfc3339(current.expires_at),
            });
        }
        if now < current.refresh_at {
            return Ok(());
        }
        let (key, csr) = mayfly_sdk::client::new_key_and_csr()?;
        let mut client = self.client().await?;
        let response = client
            .renew_x509_svid(pb::RenewX509SvidRequest { csr })
            .await
            .map_err(|status| self.failed(status.into()))?
            .into_inner();
        let (svid, bundle) = issued_parts(&response)?;
        let renewed = AgentSvid::from_issued(svid, &key, self.clock.unix_now())?;
        self.files.save(&renewed, &bundle.x509_authorities)?;
        tracing::info!(
            spiffe_id = %renewed.spiffe_id,
            serial = %renewed.serial,
            expires_at = %mayfly_sdk::clock::rfc3339(renewed.expires_at),
            "renewed the agent SVID"
        );
        self.identity.store(Arc::new(renewed));
        // The connection authenticates with the old certificate; rebuild it.
        self.client.store(None);
        Ok(())
    }

    /// Records the roots of the broker's current bundle, for TLS to it and
    /// for the next start.
    pub(crate) fn note_bundle_roots(&self, roots: &[Vec<u8>]) {
        if roots.is_empty() || self.bundle_roots.load().as_slice() == roots {
            return;
        }
        self.bundle_roots.store(Arc::new(roots.to_vec()));
        if let Err(error) = self.files.save_bundle(roots) {
            tracing::warn!(%error, "cannot save the trust bundle");
        }
        self.roots_changed.send_modify(|version| *version += 1);
    }

    /// The entries registered under this agent, and the bundle.
    pub(crate) async fn list_entries(&self) -> Result<pb::ListAgentEntriesResponse, AgentError> {
        let mut client = self.client().await?;
        client
            .list_agent_entries(traced(pb::ListAgentEntriesRequest {}))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.failed(status.into()))
    }

    /// X509-SVIDs for entries under this agent.
    pub(crate) async fn mint_x509(
        &self,
        params: Vec<pb::X509SvidParams>,
    ) -> Result<pb::BatchMintX509SvidsResponse, AgentError> {
        let mut client = self.client().await?;
        client
            .batch_mint_x509_svids(traced(pb::BatchMintX509SvidsRequest { params }))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.failed(status.into()))
    }

    /// JWT-SVIDs for (entry, audience) pairs under this agent.
    pub(crate) async fn mint_jwt(
        &self,
        params: Vec<pb::JwtSvidParams>,
    ) -> Result<pb::BatchMintJwtSvidsResponse, AgentError> {
        let mut client = self.client().await?;
        client
            .batch_mint_jwt_svids(traced(pb::BatchMintJwtSvidsRequest { params }))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.failed(status.into()))
    }

    /// The kept connection, or a new one.
    async fn client(&self) -> Result<BrokerClient<Channel>, AgentError> {
        if let Some(client) = self.client.load_full() {
            return Ok((*client).clone());
        }
        let identity = self.identity();
        let (chain, key) = identity.tls_identity();
        let client = mayfly_sdk::client::connect_broker(
            &self.server,
            &self.trusted_roots_pem(),
            Some((chain, key)),
        )
        .await
        .map_err(AgentError::from)?;
        self.client.store(Some(Arc::new(client.clone())));
        Ok(client)
    }

    /// Drops the connection after a transport failure, so the next call
    /// dials again (a restarted broker, a new address behind the name).
    fn failed(&self, error: AgentError) -> AgentError {
        if error.is_transient() {
            self.client.store(None);
        }
        error
    }

    /// The broker's address.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Ticks when the trusted roots change.
    pub(crate) fn roots_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.roots_changed.subscribe()
    }

    /// The roots to trust for the broker's TLS certificate: the configured
    /// ones and every root the broker published.
    pub(crate) fn trusted_roots_pem(&self) -> Vec<u8> {
        let mut pem = self.configured_roots_pem.clone();
        pem.push(b'\n');
        let roots = self.bundle_roots.load();
        pem.extend_from_slice(
            mayfly_sdk::pem::certificates(roots.iter().map(Vec::as_slice)).as_bytes(),
        );
        pem
    }
}

/// Trades the join token for the agent's SVID and saves it.
/// How the agent proves its node when it has no valid SVID.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NodeAttestation<'a> {
    /// A one-time join token.
    JoinToken(&'a str),
    /// Platform evidence, read when needed.
    Platform(&'a super::NodeEvidence),
}

impl<'a> NodeAttestation<'a> {
    /// Platform evidence wins over a join token when both are configured:
    /// it can be presented again, a join token only once.
    pub(crate) fn from_config(config: &'a super::AgentConfig) -> Option<Self> {
        config
            .node_evidence
            .as_ref()
            .map(NodeAttestation::Platform)
            .or_else(|| {
                config
                    .join_token
                    .as_ref()
                    .map(|t| NodeAttestation::JoinToken(t.expose()))
            })
    }
}

/// Longest token file read for node attestation.
const MAX_EVIDENCE_FILE: u64 = 64 * 1024;

fn read_evidence_file(path: &std::path::Path) -> Result<String, AgentError> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_EVIDENCE_FILE + 1).read_to_string(&mut text))
        .map_err(|e| AgentError::Config {
            reason: format!("node evidence {}: {e}", path.display()),
        })?;
    if text.len() as u64 > MAX_EVIDENCE_FILE || text.trim().is_empty() {
        return Err(AgentError::Config {
            reason: format!(
                "node evidence {}: empty or larger than 64 KiB",
                path.display()
            ),
        });
    }
    Ok(text.trim().to_owned())
}

async fn node_evidence(
    client: &mut BrokerClient<Channel>,
    attestation: NodeAttestation<'_>,
) -> Result<pb::attest_and_issue_request::Evidence, AgentError> {
    use super::NodeEvidence;
    use pb::attest_and_issue_request::Evidence;
    Ok(match attestation {
        NodeAttestation::JoinToken(token) => Evidence::JoinToken(pb::JoinTokenEvidence {
            token: token.to_owned(),
        }),
        NodeAttestation::Platform(NodeEvidence::K8sPsatTokenFile(path)) => {
            Evidence::K8sPsat(pb::K8sPsatEvidence {
                token: read_evidence_file(path)?,
            })
        }
        NodeAttestation::Platform(NodeEvidence::OidcTokenFile(path)) => {
            Evidence::Oidc(pb::OidcEvidence {
                token: read_evidence_file(path)?,
            })
        }
        NodeAttestation::Platform(NodeEvidence::X509Pop { cert, key }) => {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            let config_error = |what: &std::path::Path, e: String| AgentError::Config {
                reason: format!("{}: {e}", what.display()),
            };
            let pem = std::fs::read(cert).map_err(|e| config_error(cert, e.to_string()))?;
            let cert_chain = CertificateDer::pem_slice_iter(&pem)
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config_error(cert, e.to_string()))?;
            let key_pem = zeroize::Zeroizing::new(
                std::fs::read(key).map_err(|e| config_error(key, e.to_string()))?,
            );
            let challenge = client
                .create_x509_pop_challenge(pb::CreateX509PopChallengeRequest {})
                .await?
                .into_inner();
            let signature = mayfly_sdk::client::x509pop::sign_challenge(&key_pem, &challenge.nonce)
                .map_err(|e| config_error(key, e.to_string()))?;
            Evidence::X509pop(pb::X509PopEvidence {
                challenge_id: challenge.challenge_id,
                cert_chain,
                signature,
            })
        }
    })
}

async fn attest(
    server: &str,
    roots_pem: &[u8],
    attestation: NodeAttestation<'_>,
    files: &IdentityFiles,
    now: i64,
) -> Result<AgentSvid, AgentError> {
    let (key, csr) = mayfly_sdk::client::new_key_and_csr()?;
    let mut client = mayfly_sdk::client::connect_broker(server, roots_pem, None).await?;
    let evidence = node_evidence(&mut client, attestation).await?;
    let request = pb::AttestAndIssueRequest {
        evidence: Some(evidence),
        csr,
        spiffe_id: String::new(),
    };
    let response = client.attest_and_issue(request).await?.into_inner();
    let (svid, bundle) = issued_parts(&response)?;
    let identity = AgentSvid::from_issued(svid, &key, now)?;
    files.save(&identity, &bundle.x509_authorities)?;
    tracing::info!(
        spiffe_id = %identity.spiffe_id,
        serial = %identity.serial,
        expires_at = %mayfly_sdk::clock::rfc3339(identity.expires_at),
        "attested the node"
    );
    Ok(identity)
}

/// The SVID and bundle of an issuance answer, both required.
fn issued_parts(
    response: &pb::X509SvidResponse,
) -> Result<(&pb::X509Svid, &pb::Bundle), AgentError> {
    let svid = response
        .svid
        .as_ref()
        .ok_or_else(|| AgentError::bad_response("no SVID in the answer"))?;
    let bundle = response
        .bundle
        .as_ref()
        .ok_or_else(|| AgentError::bad_response("no trust bundle in the answer"))?;
    Ok((svid, bundle))
}

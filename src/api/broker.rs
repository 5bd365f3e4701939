//! The broker gRPC service (`mayfly.v1.Broker`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::TrustDomain;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::broker_server::Broker;
use mayfly_sdk::x509::inspect_leaf;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use super::bundle::BundlePublisher;
use super::revocations::{RevocationFeed, RevocationStream};
use super::tls::PeerInfo;
use crate::attest::Evidence;
use crate::mint::{Caller, JwtIssued, MintError, Minter, X509Issued};
use crate::policy::CredentialKind;

/// Largest JWT accepted by `ValidateJwtSvid` before any decoding.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Implements `mayfly.v1.Broker` on top of the [`Minter`].
#[derive(Debug, Clone)]
pub struct BrokerService {
    minter: Arc<Minter>,
    bundle: Arc<BundlePublisher>,
    trust_domain: TrustDomain,
    revocations: RevocationFeed,
}

impl BrokerService {
    /// The service. `revocations` feeds `WatchRevocations`.
    pub fn new(
        minter: Arc<Minter>,
        bundle: Arc<BundlePublisher>,
        trust_domain: TrustDomain,
        revocations: RevocationFeed,
    ) -> Self {
        BrokerService {
            minter,
            bundle,
            trust_domain,
            revocations,
        }
    }

    fn x509_response(&self, issued: X509Issued) -> pb::X509SvidResponse {
        pb::X509SvidResponse {
            svid: Some(x509_svid(issued)),
            bundle: Some(self.bundle.current().proto.clone()),
        }
    }

    /// The caller's identity from the client certificate rustls verified,
    /// parsed once per connection.
    fn caller<T>(&self, request: &Request<T>) -> Result<Arc<Caller>, Status> {
        let peer = request
            .extensions()
            .get::<PeerInfo>()
            .ok_or_else(no_certificate)?;
        let outcome = peer.caller.get_or_init(|| {
            let leaf = peer
                .certificates
                .as_ref()
                .and_then(|chain| chain.first())
                .ok_or_else(no_certificate)
                .map_err(|s| (s.code(), s.message().to_owned()))?;
            caller_from_certificate(leaf.as_ref(), &self.trust_domain)
                .map(Arc::new)
                .map_err(|s| (s.code(), s.message().to_owned()))
        });
        outcome
            .clone()
            .map_err(|(code, message)| Status::new(code, message))
    }
}

fn no_certificate() -> Status {
    Status::unauthenticated("this call needs mTLS with an X509-SVID issued by this broker")
}

/// Extracts and checks the SPIFFE ID of a verified client certificate.
pub fn caller_from_certificate(der: &[u8], trust_domain: &TrustDomain) -> Result<Caller, Status> {
    let leaf = inspect_leaf(der).map_err(|error| {
        Status::unauthenticated(format!(
            "the client certificate is not an X509-SVID: {error}"
        ))
    })?;
    if !leaf.spiffe_id.is_member_of(trust_domain) {
        return Err(Status::permission_denied(format!(
            "{} is not in trust domain {trust_domain}",
            leaf.spiffe_id
        )));
    }
    Ok(Caller {
        spiffe_id: leaf.spiffe_id,
        serial: leaf.serial,
        not_before: leaf.not_before,
    })
}

/// An issued X509-SVID on the wire.
fn x509_svid(issued: X509Issued) -> pb::X509Svid {
    let svid = issued.svid;
    pb::X509Svid {
        spiffe_id: svid.spiffe_id.to_string(),
        cert_chain: svid.cert_chain_der,
        expires_at: crate::clock::unix_seconds(svid.not_after),
        serial: svid.serial_hex,
        entry_id: issued.entry.id.to_string(),
    }
}

/// A minted JWT-SVID on the wire.
fn jwt_response(minted: JwtIssued) -> pb::MintJwtSvidResponse {
    pb::MintJwtSvidResponse {
        token: minted.token,
        spiffe_id: minted.spiffe_id.to_string(),
        expires_at: minted.expires_at,
        jti: minted.jti,
    }
}

/// The wire's `ttl_seconds`: 0 means the entry's TTL.
fn requested_ttl(seconds: u32) -> Option<Duration> {
    (seconds != 0).then(|| Duration::from_secs(seconds.into()))
}

/// Most items one batch call may carry.
const MAX_BATCH: usize = 256;

fn check_batch_size(len: usize) -> Result<(), Status> {
    if len == 0 {
        return Err(Status::invalid_argument("params is empty"));
    }
    if len > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "{len} items is more than the limit of {MAX_BATCH} per call"
        )));
    }
    Ok(())
}

/// One failed batch item, with the status it would have had on its own.
fn batch_error(error: MintError) -> pb::BatchError {
    let status = Status::from(error);
    pb::BatchError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

const EVIDENCE_REQUIRED: &str = "evidence is required (join_token, k8s_psat, oidc or x509pop)";

fn x509pop_evidence(evidence: pb::X509PopEvidence) -> Evidence {
    Evidence::X509Pop {
        challenge_id: evidence.challenge_id,
        chain: evidence.cert_chain,
        signature: evidence.signature,
    }
}

type BundleStream = Pin<Box<dyn Stream<Item = Result<pb::Bundle, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Broker for BrokerService {
    type WatchRevocationsStream = RevocationStream;

    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Ok(Response::new(self.revocations.stream()))
    }

    async fn attest_and_issue(
        &self,
        request: Request<pb::AttestAndIssueRequest>,
    ) -> Result<Response<pb::X509SvidResponse>, Status> {
        let request = request.into_inner();
        if request.csr.is_empty() {
            return Err(Status::invalid_argument("csr is required (PKCS#10, DER)"));
        }
        use pb::attest_and_issue_request::Evidence as Wire;
        let requested = (!request.spiffe_id.is_empty()).then_some(request.spiffe_id.as_str());
        let evidence = match request.evidence {
            Some(Wire::JoinToken(evidence)) => {
                let issued = self
                    .minter
                    .attest_join_token(&evidence.token, &request.csr, requested)
                    .await?;
                return Ok(Response::new(self.x509_response(issued)));
            }
            Some(Wire::K8sPsat(evidence)) => Evidence::K8sPsat(evidence.token),
            Some(Wire::Oidc(evidence)) => Evidence::Oidc(evidence.token),
            Some(Wire::X509pop(evidence)) => x509pop_evidence(evidence),
            None => return Err(Status::invalid_argument(EVIDENCE_REQUIRED)),
        };
        let issued = self
            .minter
            .attest_and_issue(&evidence, &request.csr, requested)
            .await?;
        Ok(Response::new(self.x509_response(issued)))
    }

    async fn renew_x509_svid(
        &self,
        request: Request<pb::RenewX509SvidRequest>,
    ) -> Result<Response<pb::X509SvidResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        if request.csr.is_empty() {
            return Err(Status::invalid_argument("csr is required (PKCS#10, DER)"));
        }
        let issued = self.minter.renew_x509(&caller, &request.csr).await?;
        Ok(Response::new(self.x509_response(issued)))
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<pb::MintJwtSvidRequest>,
    ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience is required"));
        }
        let ttl = requested_ttl(request.ttl_seconds);
        let minted = self
            .minter
            .mint_jwt(&caller, &request.audience, ttl)
            .await?;
        Ok(Response::new(jwt_response(minted)))
    }

    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {}))
    }

    async fn get_bundle(
        &self,
        _request: Request<pb::GetBundleRequest>,
    ) -> Result<Response<pb::Bundle>, Status> {
        Ok(Response::new(self.bundle.current().proto.clone()))
    }

    type WatchBundleStream = BundleStream;

    async fn watch_bundle(
        &self,
        _request: Request<pb::WatchBundleRequest>,
    ) -> Result<Response<Self::WatchBundleStream>, Status> {
        // WatchStream yields the current value at once, then every change;
        // the stream ends at shutdown so that draining does not wait for it.
        let shutdown = self.revocations.shutdown.clone();
        let mut bundles = WatchStream::new(self.bundle.subscribe());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    next = bundles.next() => next,
                };
                let Some(bundle) = next else { return };
                if tx.send(Ok(bundle.proto.clone())).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn create_x509_pop_challenge(
        &self,
        _request: Request<pb::CreateX509PopChallengeRequest>,
    ) -> Result<Response<pb::X509PopChallenge>, Status> {
        let challenge = self.minter.new_x509pop_challenge().await?;
        Ok(Response::new(pb::X509PopChallenge {
            challenge_id: challenge.id,
            nonce: challenge.nonce,
            expires_at: challenge.expires_at,
        }))
    }

    async fn mint_jwt_svid_with_evidence(
        &self,
        request: Request<pb::MintJwtSvidWithEvidenceRequest>,
    ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
        use pb::mint_jwt_svid_with_evidence_request::Evidence as Wire;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience is required"));
        }
        let evidence = match request.evidence {
            Some(Wire::K8sPsat(evidence)) => Evidence::K8sPsat(evidence.token),
            Some(Wire::Oidc(evidence)) => Evidence::Oidc(evidence.token),
            Some(Wire::X509pop(evidence)) => x509pop_evidence(evidence),
            None => {
                return Err(Status::invalid_argument(
                    "evidence is required (k8s_psat, oidc or x509pop)",
                ));
            }
        };
        let requested = (!request.spiffe_id.is_empty()).then_some(request.spiffe_id.as_str());
        let ttl = requested_ttl(request.ttl_seconds);
        let minted = self
            .minter
            .mint_jwt_with_evidence(&evidence, &request.audience, ttl, requested)
            .await?;
        Ok(Response::new(jwt_response(minted)))
    }

    async fn list_agent_entries(
        &self,
        request: Request<pb::ListAgentEntriesRequest>,
    ) -> Result<Response<pb::ListAgentEntriesResponse>, Status> {
        let agent = self.caller(&request)?;
        let entries = self
            .minter
            .agent_entries(&agent)?
            .iter()
            .map(|entry| pb::AgentEntry {
                entry_id: entry.id.to_string(),
                spiffe_id: entry.spiffe_id.to_string(),
                selectors: entry.selectors.iter().map(ToString::to_string).collect(),
                audiences: entry
                    .audiences
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                x509: entry.allows_kind(CredentialKind::X509),
                jwt: entry.allows_kind(CredentialKind::Jwt),
                x509_ttl_seconds: entry.x509_ttl_seconds,
                jwt_ttl_seconds: entry.jwt_ttl_seconds,
                expires_at: entry.expires_at,
                revision: entry.revision,
                unique_jti: entry.unique_jti,
            })
            .collect();
        Ok(Response::new(pb::ListAgentEntriesResponse {
            entries,
            bundle: Some(self.bundle.current().proto.clone()),
        }))
    }

    async fn batch_mint_x509_svids(
        &self,
        request: Request<pb::BatchMintX509SvidsRequest>,
    ) -> Result<Response<pb::BatchMintX509SvidsResponse>, Status> {
        let agent = self.caller(&request)?;
        let params = request.into_inner().params;
        check_batch_size(params.len())?;
        let outcomes = self
            .minter
            .agent_mint_x509_batch(
                &agent,
                params
                    .iter()
                    .map(|item| (item.entry_id.as_str(), item.csr.as_slice())),
            )
            .await;
        let results = params
            .into_iter()
            .zip(outcomes)
            .map(|(item, outcome)| match outcome {
                Ok(issued) => pb::BatchX509Result {
                    entry_id: item.entry_id,
                    svid: Some(x509_svid(issued)),
                    error: None,
                },
                Err(error) => pb::BatchX509Result {
                    entry_id: item.entry_id,
                    svid: None,
                    error: Some(batch_error(error)),
                },
            })
            .collect();
        Ok(Response::new(pb::BatchMintX509SvidsResponse {
            results,
            bundle: Some(self.bundle.current().proto.clone()),
        }))
    }

    async fn batch_mint_jwt_svids(
        &self,
        request: Request<pb::BatchMintJwtSvidsRequest>,
    ) -> Result<Response<pb::BatchMintJwtSvidsResponse>, Status> {
        let agent = self.caller(&request)?;
        let params = request.into_inner().params;
        check_batch_size(params.len())?;
        let outcomes = self
            .minter
            .agent_mint_jwt_batch(
                &agent,
                params.iter().map(|item| {
                    (
                        item.entry_id.as_str(),
                        item.audience.as_str(),
                        requested_ttl(item.ttl_seconds),
                    )
                }),
            )
            .await;
        let results = params
            .into_iter()
            .zip(outcomes)
            .map(|(item, outcome)| match outcome {
                Ok(minted) => pb::BatchJwtResult {
                    entry_id: item.entry_id,
                    svid: Some(jwt_response(minted)),
                    error: None,
                },
                Err(error) => pb::BatchJwtResult {
                    entry_id: item.entry_id,
                    svid: None,
                    error: Some(batch_error(error)),
                },
            })
            .collect();
        Ok(Response::new(pb::BatchMintJwtSvidsResponse { results }))
    }

    async fn validate_jwt_svid(
        &self,
        request: Request<pb::ValidateJwtSvidRequest>,
    ) -> Result<Response<pb::ValidateJwtSvidResponse>, Status> {
        let request = request.into_inner();
        if request.token.is_empty() {
            return Err(Status::invalid_argument("token is required"));
        }
        if request.token.len() > MAX_TOKEN_BYTES {
            return Err(Status::invalid_argument(format!(
                "token of {} bytes is larger than the limit of {MAX_TOKEN_BYTES}",
                request.token.len()
            )));
        }
        let valid = self
            .minter
            .validate_jwt(&request.token, &request.audience)?;
        Ok(Response::new(pb::ValidateJwtSvidResponse {
            spiffe_id: valid.spiffe_id.to_string(),
            audience: request.audience,
            expires_at: valid.expires_at,
            issued_at: valid.issued_at.unwrap_or_default(),
            jti: valid.jti.clone().unwrap_or_default(),
            key_id: valid.key_id.clone(),
        }))
    }
}

//! The SPIFFE Workload API (SPIFFE_Workload_API.md), served to local
//! workloads on the agent's Unix socket.
//!
//! Every request must carry the metadata `workload.spiffe.io: true`
//! ([`require_security_header`]). The caller is then attested from the
//! socket's peer credentials, per request, and gets exactly the entries all
//! of whose selectors it proved. A caller no entry matches is refused with
//! PermissionDenied "no identity issued" on every RPC, bundles and
//! validation included: like SPIRE's default, the agent releases nothing
//! to processes it cannot name.
//!
//! Streams send the full current state at once, then a new message
//! whenever what that caller would receive changes (a rotation, a new
//! bundle, an entry added or removed), and end with PermissionDenied if
//! the caller loses its last identity.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use mayfly_sdk::SpiffeId;

use super::revocations::Revocations;
use mayfly_sdk::jwt::{Audience, insecure_decode_unverified};
use mayfly_sdk::proto::workload as wl;
use mayfly_sdk::proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use serde_json::Value as Json;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use super::claims;
use super::jwt_issue::JwtIssuer;
use super::snapshot::{RegisteredEntry, Snapshot};
use super::state::{AgentState, Generation};
use super::status::{NO_IDENTITY, WorkloadError};
use super::workload_attest::{PeerCredentials, WorkloadAttestor};
use mayfly_sdk::Selector;
use mayfly_sdk::clock::Clock;

/// The metadata key every request must carry, with the value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// A server stream of the Workload API.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Refuses requests without `workload.spiffe.io: true` (case-sensitive),
/// as SPIFFE_Workload_Endpoint.md §3 requires against SSRF.
///
/// # Errors
/// InvalidArgument when the header is missing or has another value.
pub fn require_security_header(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(value) if value.as_bytes() == b"true" => Ok(request),
        _ => Err(WorkloadError::MissingSecurityHeader.into()),
    }
}

/// The service.
#[derive(Clone)]
pub(crate) struct WorkloadApi {
    state: Arc<AgentState>,
    jwt: Arc<JwtIssuer>,
    attestor: Arc<WorkloadAttestor>,
    revocations: Arc<Revocations>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApi").finish_non_exhaustive()
    }
}

impl WorkloadApi {
    pub(crate) fn new(
        state: Arc<AgentState>,
        jwt: Arc<JwtIssuer>,
        attestor: WorkloadAttestor,
        revocations: Arc<Revocations>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        WorkloadApi {
            state,
            jwt,
            attestor: Arc::new(attestor),
            revocations,
            clock,
        }
    }

    /// Attests the caller from the socket's peer credentials: from memory when the same
    /// process was attested in full moments ago and still runs the same executable (one
    /// `stat` under its held `/proc/<pid>`, on this task), else in full on a blocking
    /// thread.
    async fn caller_selectors<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Arc<[Selector]>, WorkloadError> {
        let credentials = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map(|cred| PeerCredentials::from_ucred(&cred))
            .ok_or_else(|| {
                WorkloadError::AttestationFailed(
                    "the socket did not give the caller's credentials".to_owned(),
                )
            })?;
        if let Some(selectors) = self.attestor.attest_remembered(&credentials) {
            return Ok(selectors);
        }
        let attestor = self.attestor.clone();
        // Reading /proc and hashing the executable block; keep them off the
        // async workers.
        let attested = tokio::task::spawn_blocking(move || attestor.attest(&credentials))
            .await
            .map_err(|e| WorkloadError::AttestationFailed(e.to_string()))?;
        attested
            .map(Arc::from)
            .map_err(|e| WorkloadError::AttestationFailed(e.to_string()))
    }

    /// Attests the caller and checks it is entitled to something.
    async fn entitled_caller<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Arc<[Selector]>, WorkloadError> {
        let selectors = self.caller_selectors(request).await?;
        let snapshot = self.state.snapshot();
        if snapshot
            .matching(&selectors, self.clock.unix_now())
            .is_empty()
        {
            tracing::debug!(?selectors, "no entry matches the caller");
            return Err(WorkloadError::NoIdentity);
        }
        Ok(selectors)
    }

    /// The first answer at once, then a new one on every change of what
    /// `answer` gives this caller.
    fn stream<T>(
        &self,
        answer: impl Fn(&Snapshot, i64) -> Result<T, WorkloadError> + Send + 'static,
    ) -> Result<ResponseStream<T>, Status>
    where
        T: PartialEq + Clone + Send + 'static,
    {
        // Subscribe before reading, so no change falls in between.
        let changes: watch::Receiver<Generation> = self.state.subscribe();
        let state = self.state.clone();
        let clock = self.clock.clone();
        let compute = move || answer(&state.snapshot(), clock.unix_now());
        let first = compute()?;
        let mut last = first.clone();
        let mut ended = false;
        let updates = WatchStream::from_changes(changes)
            .map_while(move |generation: Generation| {
                if generation.closing || ended {
                    return None;
                }
                Some(match compute() {
                    Ok(next) if next == last => None,
                    Ok(next) => {
                        last = next.clone();
                        Some(Ok(next))
                    }
                    Err(error) => {
                        ended = true;
                        Some(Err(Status::from(error)))
                    }
                })
            })
            .filter_map(|update| update);
        Ok(Box::pin(tokio_stream::once(Ok(first)).chain(updates)))
    }
}

/// The caller's X509-SVIDs, each with the bundle. An SVID a revocation
/// covers is never served: its replacement follows as soon as the sync
/// loop has it, and for a revoked identity the caller is refused.
fn x509_answer(
    snapshot: &Snapshot,
    selectors: &[Selector],
    now: i64,
    revocations: &Revocations,
) -> Result<wl::X509svidResponse, WorkloadError> {
    let matched: Vec<Arc<RegisteredEntry>> = snapshot
        .matching(selectors, now)
        .into_iter()
        .filter(|entry| entry.x509)
        .collect();
    if matched.is_empty() {
        return Err(WorkloadError::NoIdentity);
    }
    let svids = snapshot.x509_svids(&matched, now, |svid| {
        revocations.known_x509_revocation(svid, now).is_none()
    });
    if svids.is_empty() {
        let blocked: Vec<_> = matched
            .iter()
            .filter_map(|entry| revocations.minting_blocked(&entry.spiffe_id))
            .collect();
        if blocked.len() == matched.len() {
            let revocation = &blocked[0];
            return Err(WorkloadError::Denied(format!(
                "{NO_IDENTITY}: {} is revoked ({} {})",
                matched[0].spiffe_id, revocation.kind, revocation.value
            )));
        }
        return Err(WorkloadError::NotReady(
            "this workload's X509-SVID is not minted yet; retry shortly".to_owned(),
        ));
    }
    Ok(wl::X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles: HashMap::new(),
    })
}

/// A bundle map for an entitled caller, or why not.
fn bundles_answer(
    snapshot: &Snapshot,
    selectors: &[Selector],
    now: i64,
    bundles: fn(&Snapshot) -> HashMap<String, Vec<u8>>,
) -> Result<HashMap<String, Vec<u8>>, WorkloadError> {
    if snapshot.matching(selectors, now).is_empty() {
        return Err(WorkloadError::NoIdentity);
    }
    let bundles = bundles(snapshot);
    if bundles.is_empty() {
        return Err(WorkloadError::NotReady(
            "no trust bundle yet; retry shortly".to_owned(),
        ));
    }
    Ok(bundles)
}

/// The one audience a request names.
fn single_audience(audiences: &[String]) -> Result<Audience, WorkloadError> {
    match audiences {
        [] => Err(WorkloadError::InvalidArgument(
            "audience must be specified".to_owned(),
        )),
        [audience] => Audience::new(audience)
            .map_err(|e| WorkloadError::InvalidArgument(format!("audience: {e}"))),
        _ => Err(WorkloadError::InvalidArgument(
            "a Mayfly JWT-SVID carries exactly one audience; ask for one at a time".to_owned(),
        )),
    }
}

/// The caller's entries that may have a JWT-SVID for `audience`,
/// optionally only the one named `wanted`.
fn jwt_entries(
    matched: Vec<Arc<RegisteredEntry>>,
    wanted: Option<&SpiffeId>,
    audience: &Audience,
) -> Result<Vec<Arc<RegisteredEntry>>, WorkloadError> {
    if matched.is_empty() {
        return Err(WorkloadError::NoIdentity);
    }
    let candidates: Vec<_> = matched
        .into_iter()
        .filter(|entry| entry.jwt)
        .filter(|entry| wanted.is_none_or(|id| &entry.spiffe_id == id))
        .collect();
    if candidates.is_empty() {
        return Err(WorkloadError::Denied(match wanted {
            Some(id) => format!("{NO_IDENTITY} for {id}"),
            None => format!("{NO_IDENTITY}: no JWT-SVID identity for this workload"),
        }));
    }
    let allowed: Vec<_> = candidates
        .iter()
        .filter(|entry| entry.allows_audience(audience.as_str()))
        .cloned()
        .collect();
    if allowed.is_empty() {
        let ids: Vec<&str> = candidates.iter().map(|e| e.spiffe_id.as_str()).collect();
        return Err(WorkloadError::Denied(format!(
            "audience {:?} is not allowed for {}",
            audience.as_str(),
            ids.join(", ")
        )));
    }
    Ok(allowed)
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<wl::X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<wl::X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<wl::JwtBundlesResponse>;
    type FetchWITSVIDStream = ResponseStream<wl::WitsvidResponse>;
    type FetchWITBundlesStream = ResponseStream<wl::WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<wl::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let selectors = self.caller_selectors(&request).await?;
        let revocations = self.revocations.clone();
        let stream = self.stream(move |snapshot, now| {
            x509_answer(snapshot, &selectors, now, &revocations).map(|mut answer| {
                answer.crl = revocations.crl();
                answer
            })
        })?;
        Ok(Response::new(stream))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<wl::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let selectors = self.caller_selectors(&request).await?;
        let revocations = self.revocations.clone();
        let stream = self.stream(move |snapshot, now| {
            bundles_answer(snapshot, &selectors, now, Snapshot::x509_bundles).map(|bundles| {
                wl::X509BundlesResponse {
                    crl: revocations.crl(),
                    bundles,
                }
            })
        })?;
        Ok(Response::new(stream))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<wl::JwtsvidRequest>,
    ) -> Result<Response<wl::JwtsvidResponse>, Status> {
        let selectors = self.caller_selectors(&request).await?;
        let wl::JwtsvidRequest {
            audience,
            spiffe_id,
        } = request.into_inner();
        let audience = single_audience(&audience)?;
        let wanted =
            match spiffe_id.as_str() {
                "" => None,
                id => Some(id.parse::<SpiffeId>().map_err(|e| {
                    WorkloadError::InvalidArgument(format!("spiffe_id {id:?}: {e}"))
                })?),
            };
        let matched = self
            .state
            .snapshot()
            .matching(&selectors, self.clock.unix_now());
        let entries = jwt_entries(matched, wanted.as_ref(), &audience)?;
        let svids = self.jwt.svids(&entries, &audience).await?;
        Ok(Response::new(wl::JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<wl::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let selectors = self.caller_selectors(&request).await?;
        let stream = self.stream(move |snapshot, now| {
            bundles_answer(snapshot, &selectors, now, Snapshot::jwt_bundles)
                .map(|bundles| wl::JwtBundlesResponse { bundles })
        })?;
        Ok(Response::new(stream))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<wl::ValidateJwtsvidRequest>,
    ) -> Result<Response<wl::ValidateJwtsvidResponse>, Status> {
        self.entitled_caller(&request).await?;
        let wl::ValidateJwtsvidRequest { audience, svid } = request.into_inner();
        let token = Zeroizing::new(svid);
        if audience.is_empty() {
            return Err(
                WorkloadError::InvalidArgument("audience must be specified".to_owned()).into(),
            );
        }
        if token.is_empty() {
            return Err(WorkloadError::InvalidArgument("svid must be specified".to_owned()).into());
        }
        let audience = Audience::new(&audience)
            .map_err(|e| WorkloadError::InvalidArgument(format!("audience: {e}")))?;
        let snapshot = self.state.snapshot();
        let validator = snapshot
            .bundle
            .as_ref()
            .and_then(|bundle| bundle.validator.as_ref())
            .ok_or_else(|| {
                WorkloadError::NotReady("no JWT authority known yet; retry shortly".to_owned())
            })?;
        let validated = validator
            .validate(&token, &audience, self.clock.unix_now())
            .map_err(|e| WorkloadError::InvalidArgument(format!("invalid JWT-SVID: {e}")))?;
        self.revocations
            .check_jwt(&validated, mayfly_sdk::clock::unix_millis(self.clock.now()))?;
        // The signature and claims were just checked; this only reads them.
        let claims = match insecure_decode_unverified(&token) {
            Ok((_, Json::Object(claims))) => claims,
            _ => {
                return Err(WorkloadError::InvalidArgument(
                    "the JWT-SVID's claims are not a JSON object".to_owned(),
                )
                .into());
            }
        };
        Ok(Response::new(wl::ValidateJwtsvidResponse {
            spiffe_id: validated.spiffe_id.to_string(),
            claims: Some(claims::to_struct(claims)),
        }))
    }

    async fn fetch_witsvid(
        &self,
        _request: Request<wl::WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported by this agent",
        ))
    }

    async fn fetch_wit_bundles(
        &self,
        _request: Request<wl::WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported by this agent",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn the_security_header_must_be_exactly_true() {
        let mut request = Request::new(());
        assert_eq!(
            require_security_header(request).err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
        for bad in ["True", "TRUE", "1", ""] {
            request = Request::new(());
            request.metadata_mut().insert(
                SECURITY_HEADER,
                bad.parse().unwrap_or_else(|_| unreachable!("ASCII")),
            );
            assert!(require_security_header(request).is_err(), "{bad:?}");
        }
        request = Request::new(());
        request.metadata_mut().insert(
            SECURITY_HEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
        assert!(require_security_header(request).is_ok());
    }

    #[test]
    fn exactly_one_audience() {
        assert!(single_audience(&[]).is_err());
        assert!(single_audience(&["a".into(), "b".into()]).is_err());
        assert_eq!(
            single_audience(&["db".into()]).map(|a| a.as_str().to_owned()),
            Ok("db".to_owned())
        );
    }
}

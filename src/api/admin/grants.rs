//! The break-glass RPCs of `mayfly.v1.Admin` (`RequestGrant`, `ApproveGrant`,
//! `RevokeGrant`, `ListGrants`, `ReviewGrant`): the operator is the admin socket peer's
//! uid as the kernel reports it ([`peer_operator`]), never anything the request says; the
//! work is [`crate::breakglass::Breakglass`]'s.

use std::time::Duration;

use mayfly_sdk::proto::v1 as pb;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use super::AdminService;
use crate::breakglass::{BreakglassError, GrantRecord, GrantRequest, GrantState, Operator};
use crate::policy::EntryId;

/// The most grants one `ListGrants` answer holds.
const MAX_LIST: usize = 1000;
/// A `ListGrants` without a limit.
const DEFAULT_LIST: usize = 100;

/// The operator behind `request`: the admin socket peer's uid (and user name).
///
/// # Errors
///
/// PERMISSION_DENIED when the peer cannot be identified.
pub(crate) fn peer_operator<T>(request: &Request<T>) -> Result<Operator, Status> {
    request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| Operator::from_uid(cred.uid()))
        .ok_or_else(|| Status::permission_denied("cannot identify the admin socket's peer"))
}

fn operator_to_proto(operator: &Operator) -> pb::GrantOperator {
    pb::GrantOperator {
        uid: operator.uid,
        name: operator.name.clone().unwrap_or_default(),
    }
}

/// A grant on the wire, as it stands at `now`.
pub fn grant_to_proto(grant: &GrantRecord, now: i64) -> pb::Grant {
    pb::Grant {
        id: grant.id.clone(),
        entry_id: grant.entry_id.to_string(),
        spiffe_id: grant.spiffe_id.to_string(),
        owner: grant.owner.clone(),
        audience: grant
            .audience
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        ttl_seconds: grant.ttl_seconds,
        reason: grant.reason.clone(),
        ticket: grant.ticket.clone(),
        requested_by: Some(operator_to_proto(&grant.requested_by)),
        requested_at: grant.requested_at,
        approve_by: grant.approve_by,
        approved_by: grant.approval.as_ref().map(|a| operator_to_proto(&a.by)),
        approved_at: grant.approval.as_ref().map_or(0, |a| a.at),
        expires_at: grant.approval.as_ref().map_or(0, |a| a.expires_at),
        state: grant.state(now).as_str().to_owned(),
        ended_at: grant.ended.as_ref().map_or(0, |e| e.at),
        ended_by: grant
            .ended
            .as_ref()
            .map(|e| e.by.clone())
            .unwrap_or_default(),
        end_reason: grant
            .ended
            .as_ref()
            .and_then(|e| e.reason.clone())
            .unwrap_or_default(),
        reviewed_by: grant.review.as_ref().map(|r| operator_to_proto(&r.by)),
        reviewed_at: grant.review.as_ref().map_or(0, |r| r.at),
        review_note: grant
            .review
            .as_ref()
            .map(|r| r.note.clone())
            .unwrap_or_default(),
        issued: u64::try_from(grant.issued.len()).unwrap_or(u64::MAX),
        revision: grant.revision,
    }
}

impl AdminService {
    fn breakglass(&self) -> Result<&crate::breakglass::Breakglass, Status> {
        self.inner
            .breakglass
            .as_deref()
            .ok_or_else(|| Status::unavailable("break-glass is not wired on this server"))
    }

    pub(super) async fn grant_request(
        &self,
        request: Request<pb::RequestGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let by = peer_operator(&request)?;
        let request = request.into_inner();
        let audience = match (request.audience.trim(), request.enable) {
            ("", true) => None,
            (audience, false) if !audience.is_empty() => Some(audience.to_owned()),
            ("", false) => {
                return Err(BreakglassError::Invalid(
                    "say what the grant is for: --audience AUD adds one audience, --enable lets \
                     the disabled entry mint"
                        .into(),
                )
                .into());
            }
            _ => {
                return Err(BreakglassError::Invalid(
                    "a grant adds one audience or re-enables the entry, not both".into(),
                )
                .into());
            }
        };
        let grant = self
            .breakglass()?
            .request(
                &by,
                GrantRequest {
                    entry_id: request.entry_id,
                    audience,
                    ttl: Duration::from_secs(request.ttl_seconds),
                    reason: request.reason,
                    ticket: request.ticket,
                },
            )
            .await?;
        Ok(Response::new(self.grant_now(&grant)))
    }

    pub(super) async fn grant_approve(
        &self,
        request: Request<pb::ApproveGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let by = peer_operator(&request)?;
        let grant = self
            .breakglass()?
            .approve(&by, &request.into_inner().id)
            .await?;
        Ok(Response::new(self.grant_now(&grant)))
    }

    pub(super) async fn grant_revoke(
        &self,
        request: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::RevokeGrantResponse>, Status> {
        let by = peer_operator(&request)?;
        let request = request.into_inner();
        let (grant, revoked) = self
            .breakglass()?
            .revoke(&by, &request.id, &request.reason)
            .await?;
        Ok(Response::new(pb::RevokeGrantResponse {
            grant: Some(self.grant_now(&grant)),
            credentials_revoked: u64::try_from(revoked).unwrap_or(u64::MAX),
        }))
    }

    pub(super) async fn grant_review(
        &self,
        request: Request<pb::ReviewGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let by = peer_operator(&request)?;
        let request = request.into_inner();
        let grant = self
            .breakglass()?
            .review(&by, &request.id, &request.note)
            .await?;
        Ok(Response::new(self.grant_now(&grant)))
    }

    pub(super) async fn grant_list(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let request = request.into_inner();
        let entry = match request.entry_id.trim() {
            "" => None,
            id => Some(EntryId::parse(id).map_err(BreakglassError::from)?),
        };
        let states = request
            .states
            .iter()
            .map(|name| {
                GrantState::ALL
                    .into_iter()
                    .find(|state| state.as_str() == name)
                    .ok_or_else(|| {
                        BreakglassError::Invalid(format!(
                            "{name:?} is not a grant state (pending, active, expired, lapsed, \
                             revoked)"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let limit = match usize::try_from(request.limit).unwrap_or(usize::MAX) {
            0 => DEFAULT_LIST,
            n => n.min(MAX_LIST),
        };
        let now = self.inner.clock.unix_now();
        let grants = self
            .breakglass()?
            .list()
            .await?
            .into_iter()
            .filter(|g| entry.as_ref().is_none_or(|id| &g.entry_id == id))
            .filter(|g| states.is_empty() || states.contains(&g.state(now)))
            .filter(|g| {
                !request.unreviewed
                    || (g.state(now).is_ended() && g.was_in_force() && g.review.is_none())
            })
            .take(limit)
            .map(|g| grant_to_proto(&g, now))
            .collect();
        Ok(Response::new(pb::ListGrantsResponse { grants }))
    }

    fn grant_now(&self, grant: &GrantRecord) -> pb::Grant {
        grant_to_proto(grant, self.inner.clock.unix_now())
    }
}

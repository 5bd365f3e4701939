//! The audience RPCs of `mayfly.v1.Admin` (`CreateAudience`,
//! `ListAudiences`, `GetAudience`, `UpdateAudience`, `DeleteAudience`):
//! strict parsing into [`AudienceSpec`], the store write (which tells the
//! other replicas), this replica's [`AudienceIndex`](crate::audience::AudienceIndex)
//! at once, and an audit record per change (`audience.create`,
//! `audience.update`, `audience.delete`, with the actor). Nothing changes
//! when a request is refused.

use mayfly_sdk::proto::v1 as pb;
use tonic::{Code, Request, Response, Status};

use super::AdminService;
use crate::audience::{AudienceError, AudienceRecord, AudienceSpec, parse_name};
use crate::audit::AuditEvent;
use crate::policy::Entry;
use crate::store::StoreError;

/// A record on the wire.
pub fn audience_to_proto(record: &AudienceRecord) -> pb::Audience {
    pb::Audience {
        name: record.name.as_str().to_owned(),
        owner: record.owner.clone(),
        environment: record.environment.clone(),
        data_class: record.data_class.clone(),
        description: record.description.clone(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        revision: record.revision,
    }
}

/// The status code of every audience error: an exhaustive match, so that a
/// new variant must be given its code here. All are the operator's to fix.
pub(crate) fn audience_code(error: &AudienceError) -> Code {
    match error {
        AudienceError::Missing { .. }
        | AudienceError::Invalid { .. }
        | AudienceError::UnknownDataClass { .. } => Code::InvalidArgument,
        AudienceError::NotFound { .. } => Code::NotFound,
        AudienceError::Exists { .. } => Code::AlreadyExists,
        AudienceError::Stale { .. } => Code::FailedPrecondition,
    }
}

impl From<AudienceError> for Status {
    fn from(error: AudienceError) -> Self {
        Status::new(audience_code(&error), error.to_string())
    }
}

fn given(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl AdminService {
    /// Refuses an entry that certainly conflicts with a registered audience
    /// (another environment, a data class above the entry's, a class
    /// outside the order): every JWT-SVID it asked for would be refused.
    pub(super) fn check_entry_audiences(&self, entry: &Entry) -> Result<(), Status> {
        let state = &self.inner;
        crate::audience::check_entry(
            entry,
            &state.audiences,
            &state.config.governance.data_classes,
        )
        .map_err(|refusal| {
            Status::failed_precondition(format!(
                "{refusal}; change the entry, or the audience with `mayfly audience update`"
            ))
        })
    }

    /// `CreateAudience`.
    pub(super) async fn audience_create(
        &self,
        request: Request<pb::CreateAudienceRequest>,
    ) -> Result<Response<pb::Audience>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let state = &self.inner;
        let record = AudienceSpec {
            owner: given(request.owner),
            environment: given(request.environment),
            data_class: given(request.data_class),
            description: Some(request.description),
        }
        .create(
            &request.name,
            &state.config.governance.data_classes,
            state.clock.unix_now(),
        )?;
        let name = record.name.as_str().to_owned();
        state
            .store
            .create_audience(&record)
            .await
            .map_err(|error| match error {
                StoreError::Conflict { .. } => AudienceError::Exists { name: name.clone() }.into(),
                other => Status::from(other),
            })?;
        state.audiences.upsert(record.clone());
        self.audit(AuditEvent {
            action: "audience.create".into(),
            actor,
            audience: Some(name),
            detail: serde_json::to_value(&record).ok(),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(audience_to_proto(&record)))
    }

    /// `ListAudiences`.
    pub(super) fn audience_list(&self) -> pb::ListAudiencesResponse {
        pb::ListAudiencesResponse {
            audiences: self
                .inner
                .audiences
                .all()
                .iter()
                .map(|r| audience_to_proto(r))
                .collect(),
        }
    }

    /// `GetAudience`.
    pub(super) fn audience_get(&self, name: &str) -> Result<pb::Audience, Status> {
        let name = parse_name(name)?;
        self.inner
            .audiences
            .get(name.as_str())
            .map(|r| audience_to_proto(&r))
            .ok_or_else(|| {
                AudienceError::NotFound {
                    name: name.as_str().to_owned(),
                }
                .into()
            })
    }

    /// `UpdateAudience`.
    pub(super) async fn audience_update(
        &self,
        request: Request<pb::UpdateAudienceRequest>,
    ) -> Result<Response<pb::Audience>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let state = &self.inner;
        let name = parse_name(&request.name)?.as_str().to_owned();
        let not_found = || AudienceError::NotFound { name: name.clone() };
        let current = state.audiences.get(&name).ok_or_else(not_found)?;
        if request.revision != 0 && request.revision != current.revision {
            return Err(AudienceError::Stale {
                name,
                expected: request.revision,
            }
            .into());
        }
        let next = AudienceSpec {
            owner: request.owner,
            environment: request.environment,
            data_class: request.data_class,
            description: request.description,
        }
        .update(
            &current,
            &state.config.governance.data_classes,
            state.clock.unix_now(),
        )?;
        state
            .store
            .update_audience(&next, current.revision)
            .await
            .map_err(|error| match error {
                StoreError::Conflict { .. } => AudienceError::Stale {
                    name: name.clone(),
                    expected: current.revision,
                }
                .into(),
                StoreError::NotFound { .. } => not_found().into(),
                other => Status::from(other),
            })?;
        state.audiences.upsert(next.clone());
        self.audit(AuditEvent {
            action: "audience.update".into(),
            actor,
            audience: Some(name.clone()),
            detail: Some(serde_json::json!({ "before": &*current, "after": &next })),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(audience_to_proto(&next)))
    }

    /// `DeleteAudience`.
    pub(super) async fn audience_delete(
        &self,
        request: Request<pb::DeleteAudienceRequest>,
    ) -> Result<Response<pb::DeleteAudienceResponse>, Status> {
        let actor = Self::actor(&request);
        let state = &self.inner;
        let name = parse_name(&request.into_inner().name)?.as_str().to_owned();
        let removed = state
            .store
            .delete_audience(&name)
            .await
            .map_err(|error| match error {
                StoreError::NotFound { .. } => {
                    AudienceError::NotFound { name: name.clone() }.into()
                }
                other => Status::from(other),
            })?;
        state.audiences.remove(&name);
        self.audit(AuditEvent {
            action: "audience.delete".into(),
            actor,
            audience: Some(name),
            detail: serde_json::to_value(&removed).ok(),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(pb::DeleteAudienceResponse {
            audience: Some(audience_to_proto(&removed)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct number per variant (an exhaustive match: a new variant
    /// fails to compile until it has one, and the test until it has an
    /// example).
    fn number(error: &AudienceError) -> usize {
        match error {
            AudienceError::Missing { .. } => 0,
            AudienceError::Invalid { .. } => 1,
            AudienceError::UnknownDataClass { .. } => 2,
            AudienceError::NotFound { .. } => 3,
            AudienceError::Exists { .. } => 4,
            AudienceError::Stale { .. } => 5,
        }
    }

    #[test]
    fn every_audience_error_has_its_code_and_none_is_internal() {
        let name = || "billing".to_owned();
        let examples = [
            (
                AudienceError::Missing { field: "owner" },
                Code::InvalidArgument,
            ),
            (
                AudienceError::Invalid {
                    field: "name",
                    reason: "empty".into(),
                },
                Code::InvalidArgument,
            ),
            (
                AudienceError::UnknownDataClass {
                    class: "secret".into(),
                    order: "none < phi".into(),
                },
                Code::InvalidArgument,
            ),
            (AudienceError::NotFound { name: name() }, Code::NotFound),
            (AudienceError::Exists { name: name() }, Code::AlreadyExists),
            (
                AudienceError::Stale {
                    name: name(),
                    expected: 3,
                },
                Code::FailedPrecondition,
            ),
        ];
        let mut seen = [false; 6];
        for (error, code) in examples {
            seen[number(&error)] = true;
            let status = Status::from(error.clone());
            assert_eq!(status.code(), code, "{error:?}");
            assert_eq!(status.message(), error.to_string());
        }
        assert!(
            seen.iter().all(|s| *s),
            "a variant has no example: {seen:?}"
        );
    }
}

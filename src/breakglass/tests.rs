use tonic::Code;

use super::*;
use crate::policy::{ActiveGrant, EntrySpec, TtlPolicy};
use crate::store::StoreError;

const NOW: i64 = 1_800_000_000;

fn grant() -> GrantRecord {
    GrantRecord {
        id: "0123456789abcdef".into(),
        entry_id: crate::policy::EntryId::parse("fedcba9876543210").unwrap(),
        spiffe_id: mayfly_sdk::SpiffeId::parse("spiffe://example.org/api").unwrap(),
        owner: "team-a".into(),
        audience: Some(mayfly_sdk::jwt::Audience::new("billing").unwrap()),
        ttl_seconds: 1800,
        reason: "r".into(),
        ticket: "INC-1".into(),
        requested_by: Operator {
            uid: 1001,
            name: None,
        },
        requested_at: NOW,
        approve_by: NOW + 3600,
        approval: None,
        ended: None,
        review: None,
        issued: Vec::new(),
        revision: 1,
    }
}

#[test]
fn a_grant_is_pending_then_in_force_then_over_by_the_clock_alone() {
    let mut g = grant();
    assert_eq!(g.state(NOW), GrantState::Pending);
    assert_eq!(g.state(NOW + 3600), GrantState::Lapsed, "never approved");
    g.approval = Some(Approval {
        by: Operator {
            uid: 1002,
            name: None,
        },
        at: NOW + 10,
        expires_at: NOW + 1810,
    });
    assert_eq!(g.state(NOW + 1809), GrantState::Active);
    assert_eq!(g.state(NOW + 1810), GrantState::Expired);
    g.ended = Some(Ended {
        at: NOW + 20,
        how: EndedHow::Revoked,
        by: "admin:uid=0".into(),
        reason: Some("done".into()),
    });
    assert_eq!(
        g.state(NOW + 21),
        GrantState::Revoked,
        "a recorded end wins"
    );
    assert!(GrantState::Revoked.is_ended() && !GrantState::Active.is_ended());
}

#[test]
fn grant_ids_are_sixteen_lowercase_hex_digits() {
    assert_eq!(
        parse_grant_id(" 0123456789abcdef ").unwrap(),
        "0123456789abcdef"
    );
    for bad in [
        "",
        "0123456789ABCDEF",
        "0123456789abcde",
        "0123456789abcdefg",
        "../../x",
    ] {
        let error = parse_grant_id(bad).unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}");
    }
}

#[test]
fn an_entry_carries_the_grant_in_force_and_the_ones_awaiting_review() {
    let trust_domain = mayfly_sdk::TrustDomain::new("example.org").unwrap();
    let entry = EntrySpec {
        spiffe_id: Some("spiffe://example.org/api".into()),
        audiences: Some(vec!["a".into()]),
        owner: Some("team-a".into()),
        purpose: Some("p".into()),
        ..EntrySpec::default()
    }
    .create(&trust_domain, &TtlPolicy::default(), NOW)
    .unwrap();
    assert!(entry.grant_in_force(NOW).is_none());
    let active = ActiveGrant {
        grant_id: "0123456789abcdef".into(),
        audience: None,
        expires_at: NOW + 60,
    };
    let widened = entry.with_grant(active.clone(), NOW);
    assert_eq!(widened.revision, entry.revision + 1);
    assert_eq!(widened.grant_in_force(NOW + 59), Some(&active));
    assert_eq!(widened.grant_in_force(NOW + 60), None, "the clock ends it");
    // Ending a grant that is not on the entry and needs no review changes nothing.
    assert!(
        widened
            .grant_ended("1111111111111111", false, NOW)
            .is_none()
    );
    let ended = widened.grant_ended("0123456789abcdef", true, NOW).unwrap();
    assert!(ended.grant_in_force(NOW).is_none());
    assert_eq!(ended.unreviewed_grants(), ["0123456789abcdef"]);
    assert!(
        ended.grant_ended("0123456789abcdef", true, NOW).is_none(),
        "listed once"
    );
    assert!(ended.grant_reviewed("1111111111111111", NOW).is_none());
    let reviewed = ended.grant_reviewed("0123456789abcdef", NOW).unwrap();
    assert!(reviewed.unreviewed_grants().is_empty());
    assert!(reviewed.breakglass.is_none(), "nothing left to carry");
}

#[test]
fn an_entry_keeps_a_bounded_list_of_unreviewed_grants() {
    let trust_domain = mayfly_sdk::TrustDomain::new("example.org").unwrap();
    let mut entry = EntrySpec {
        spiffe_id: Some("spiffe://example.org/api".into()),
        audiences: Some(vec!["a".into()]),
        owner: Some("team-a".into()),
        purpose: Some("p".into()),
        ..EntrySpec::default()
    }
    .create(&trust_domain, &TtlPolicy::default(), NOW)
    .unwrap();
    for n in 0..(crate::policy::MAX_UNREVIEWED_GRANTS + 5) {
        entry = entry.grant_ended(&format!("{n:016x}"), true, NOW).unwrap();
    }
    let listed = entry.unreviewed_grants();
    assert_eq!(listed.len(), crate::policy::MAX_UNREVIEWED_GRANTS);
    assert_eq!(
        listed.last().map(String::as_str),
        Some(format!("{:016x}", crate::policy::MAX_UNREVIEWED_GRANTS + 4).as_str()),
        "the newest are kept"
    );
}

/// One example of every error, with its code: a caller's mistake is never INTERNAL.
#[test]
fn every_breakglass_error_maps_to_its_code() {
    let operator = Operator {
        uid: 7,
        name: Some("alice".into()),
    };
    let audit = || crate::audit::AuditError::Closed;
    let cases: Vec<(BreakglassError, Code)> = vec![
        (BreakglassError::Invalid("x".into()), Code::InvalidArgument),
        (
            BreakglassError::Text(crate::policy::EntryError::Missing { field: "reason" }),
            Code::InvalidArgument,
        ),
        (BreakglassError::NoSuchGrant("g".into()), Code::NotFound),
        (BreakglassError::NoSuchEntry("e".into()), Code::NotFound),
        (
            BreakglassError::SelfApproval {
                grant: "g".into(),
                requester: operator.clone(),
            },
            Code::PermissionDenied,
        ),
        (
            BreakglassError::State {
                grant: "g".into(),
                state: GrantState::Expired,
                hint: "h",
            },
            Code::FailedPrecondition,
        ),
        (
            BreakglassError::Pointless("p".into()),
            Code::FailedPrecondition,
        ),
        (
            BreakglassError::EntryHasGrant {
                entry: "e".into(),
                grant: "g".into(),
            },
            Code::FailedPrecondition,
        ),
        (BreakglassError::TooManyOpen, Code::ResourceExhausted),
        (BreakglassError::NoAlerts, Code::FailedPrecondition),
        (BreakglassError::Conflict("grant g".into()), Code::Aborted),
        (
            BreakglassError::Store(StoreError::Unavailable { reason: "r".into() }),
            Code::Unavailable,
        ),
        (
            BreakglassError::Audit {
                what: "w".into(),
                source: audit(),
            },
            Code::Unavailable,
        ),
        (
            BreakglassError::Revoke {
                grant: "g".into(),
                failed: 1,
                source: Box::new(crate::revoke::RevokeError::ReasonMissing),
            },
            Code::Unavailable,
        ),
    ];
    for (error, code) in cases {
        let what = format!("{error:?}");
        let message = error.to_string();
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), code, "{what}");
        assert!(status.message().starts_with(&message), "{what}: {status:?}");
    }
    // A store conflict is the caller's race, not a store failure.
    assert!(matches!(
        BreakglassError::from(StoreError::Conflict { reason: "r".into() }),
        BreakglassError::Conflict(_)
    ));
    assert_eq!(
        BreakglassError::from(StoreError::Internal { reason: "r".into() }).code(),
        Code::Internal,
        "only our own bug is INTERNAL"
    );
}

//! The owners' digests on the wire (`OwnerDigests`): conversion, and pages that stay well
//! under gRPC's 4 MiB limit whatever the registry holds.

use prost::Message as _;
use tonic::Status;

use crate::governance::digest::{DigestItem, DigestList, OwnerDigest};
use mayfly_sdk::proto::v1 as pb;

/// A page holds digests up to about this many encoded bytes (at least one digest; one is
/// at most 4 lists of 200 items, well under gRPC's 4 MiB).
pub const PAGE_BYTES: usize = 2 << 20;

/// The page of `digests` (sorted by owner) after `page_token`.
///
/// # Errors
/// `INVALID_ARGUMENT` for a token this service did not make.
pub fn page(
    digests: Vec<OwnerDigest>,
    page_token: &str,
    generated_at: i64,
) -> Result<pb::OwnerDigestsResponse, Status> {
    let after = if page_token.is_empty() {
        None
    } else {
        let owner = hex::decode(page_token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                Status::invalid_argument("page_token is not one an OwnerDigests answer gave")
            })?;
        Some(owner)
    };
    let mut page = pb::OwnerDigestsResponse {
        generated_at,
        ..pb::OwnerDigestsResponse::default()
    };
    let mut size = 0;
    let mut rest = digests
        .into_iter()
        .filter(|d| {
            after
                .as_deref()
                .is_none_or(|after| d.owner.as_str() > after)
        })
        .peekable();
    while let Some(digest) = rest.next() {
        let digest = to_proto(digest);
        size += digest.encoded_len();
        let owner = digest.owner.clone();
        page.digests.push(digest);
        if size >= PAGE_BYTES && rest.peek().is_some() {
            page.next_page_token = hex::encode(owner);
            break;
        }
    }
    Ok(page)
}

fn to_proto(digest: OwnerDigest) -> pb::OwnerDigest {
    pb::OwnerDigest {
        owner: digest.owner,
        expiring: Some(list(digest.expiring)),
        review_overdue: Some(list(digest.review_overdue)),
        dormant: Some(list(digest.dormant)),
        disabled: Some(list(digest.disabled)),
    }
}

fn list(list: DigestList) -> pb::DigestList {
    pb::DigestList {
        items: list.items.into_iter().map(item).collect(),
        omitted: list.omitted,
    }
}

fn item(item: DigestItem) -> pb::DigestItem {
    pb::DigestItem {
        entry_id: item.entry_id,
        spiffe_id: item.spiffe_id,
        environment: item.environment,
        at: item.at,
        detail: item.detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(owner: &str, items: usize) -> OwnerDigest {
        let item = DigestItem {
            entry_id: "0123456789abcdef".into(),
            spiffe_id: "spiffe://example.org/x".into(),
            environment: "prod".into(),
            at: 1,
            detail: "d".repeat(1000),
        };
        OwnerDigest {
            owner: owner.into(),
            expiring: DigestList {
                items: vec![item; items],
                omitted: 0,
            },
            ..OwnerDigest::default()
        }
    }

    #[test]
    fn pages_follow_the_owners_and_stay_small() {
        // 30 owners of ~200 KB each: about 6 MB in all, more than one answer may carry.
        let all: Vec<_> = (0..30)
            .map(|i| digest(&format!("owner-{i:02}"), 200))
            .collect();
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let page = page(all.clone(), &token, 7).unwrap();
            assert!(page.encoded_len() < 4 << 20, "{}", page.encoded_len());
            assert!(!page.digests.is_empty());
            seen.extend(page.digests.iter().map(|d| d.owner.clone()));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let expected: Vec<_> = all.iter().map(|d| d.owner.clone()).collect();
        assert_eq!(seen, expected, "each owner once, in order");
        // A small registry is one page.
        let small = page(vec![digest("a", 1), digest("b", 1)], "", 7).unwrap();
        assert_eq!(small.digests.len(), 2);
        assert!(small.next_page_token.is_empty());
        let error = page(vec![], "zz-not-hex", 7).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
    }
}

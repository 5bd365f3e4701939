use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;

use super::*;

fn token_of(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn a_token_names_the_key_it_was_made_from_and_its_listing() {
    let entry = "0123456789abcdef";
    let token = encode_token(Listing::Entries, entry);
    assert_eq!(decode_token(Listing::Entries, &token).unwrap(), entry);
    // base64url without padding: safe in any transport, as is.
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    let key = "spiffe-id:spiffe://example.org/a/b?c";
    let token = encode_token(Listing::Revocations, key);
    assert_eq!(decode_token(Listing::Revocations, &token).unwrap(), key);
}

#[test]
fn every_malformed_token_is_named_for_what_is_wrong() {
    let entries = encode_token(Listing::Entries, "0123456789abcdef");
    let cases: [(&str, String, &str); 9] = [
        ("too long", "A".repeat(MAX_TOKEN_LEN + 1), "bytes long"),
        ("not base64", "not a token!".into(), "not a page token"),
        ("not JSON", token_of("after=x"), "not a page token"),
        (
            "an unknown field",
            token_of(r#"{"v":1,"list":"entries","after":"0123456789abcdef","x":1}"#),
            "not a page token",
        ),
        (
            "another version",
            token_of(r#"{"v":2,"list":"revocations","after":"jti:a"}"#),
            "version 2",
        ),
        (
            "the other listing",
            entries,
            "belongs to the entries listing",
        ),
        (
            "no kind",
            token_of(r#"{"v":1,"list":"revocations","after":"abc"}"#),
            "kind:value",
        ),
        (
            "an unknown kind",
            token_of(r#"{"v":1,"list":"revocations","after":"nope:abc"}"#),
            "unknown revocation kind",
        ),
        (
            "an empty value",
            token_of(r#"{"v":1,"list":"revocations","after":"jti:"}"#),
            "empty",
        ),
    ];
    for (what, token, needle) in cases {
        let error = decode_token(Listing::Revocations, &token).unwrap_err();
        assert!(error.to_string().contains(needle), "{what}: {error}");
    }
    let bad_id = token_of(r#"{"v":1,"list":"entries","after":"ZZ"}"#);
    assert!(matches!(
        decode_token(Listing::Entries, &bad_id),
        Err(PageTokenError::BadKey {
            listing: Listing::Entries,
            ..
        })
    ));
    // Positive control: the same shapes with good values decode.
    let good = token_of(r#"{"v":1,"list":"revocations","after":"jti:a"}"#);
    assert_eq!(decode_token(Listing::Revocations, &good).unwrap(), "jti:a");
}

#[test]
fn page_sizes_default_and_clamp_and_an_unset_size_is_unpaged() {
    let parse = |size, token: &str| PageRequest::parse(Listing::Entries, size, token).unwrap();
    assert_eq!(parse(None, ""), PageRequest::Unpaged);
    let paged = |size| PageRequest::Paged { size, after: None };
    assert_eq!(parse(Some(0), ""), paged(DEFAULT_PAGE_SIZE));
    assert_eq!(parse(Some(7), ""), paged(7));
    assert_eq!(parse(Some(5000), ""), paged(MAX_PAGE_SIZE));
    assert_eq!(parse(Some(5001), ""), paged(MAX_PAGE_SIZE));
    assert_eq!(parse(Some(u32::MAX), ""), paged(MAX_PAGE_SIZE));
    // A token without a size: the next page of the default size.
    let token = encode_token(Listing::Entries, "0123456789abcdef");
    assert_eq!(
        parse(None, &token),
        PageRequest::Paged {
            size: DEFAULT_PAGE_SIZE,
            after: Some("0123456789abcdef".into())
        }
    );
    assert!(PageRequest::parse(Listing::Revocations, Some(1), &token).is_err());
}

#[test]
fn filters_are_read_and_malformed_ones_refused() {
    let request = pb::ListEntriesRequest {
        owner: "team-a".into(),
        spiffe_id_prefix: "spiffe://example.org/billing/".into(),
        parent_id: "spiffe://example.org/agent/n1".into(),
        ..Default::default()
    };
    let filter = entry_filter(&request).unwrap();
    assert_eq!(filter.owner.as_deref(), Some("team-a"));
    assert_eq!(filter.environment, None, "\"\" is no filter");
    assert_eq!(
        filter.parent_id.map(|p| p.to_string()).as_deref(),
        Some("spiffe://example.org/agent/n1")
    );
    let refused = |request: pb::ListEntriesRequest| entry_filter(&request).unwrap_err();
    let prefix = refused(pb::ListEntriesRequest {
        spiffe_id_prefix: "billing/".into(),
        ..Default::default()
    });
    assert!(
        matches!(
            prefix,
            ListError::Filter {
                field: "spiffe_id_prefix",
                ..
            }
        ),
        "{prefix}"
    );
    let parent = refused(pb::ListEntriesRequest {
        parent_id: "node-7".into(),
        ..Default::default()
    });
    assert!(
        matches!(
            parent,
            ListError::Filter {
                field: "parent_id",
                ..
            }
        ),
        "{parent}"
    );

    let revocations = revocation_filter(&pb::ListRevocationsRequest {
        kind: "spiffe-id".into(),
        subject: "spiffe://example.org/a".into(),
        revoked_since: 10,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(revocations.kind, Some(RevocationKind::SpiffeId));
    assert_eq!(revocations.revoked_since, Some(10));
    assert_eq!(revocations.actor, None);
    let kind = revocation_filter(&pb::ListRevocationsRequest {
        kind: "token".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(kind, ListError::Filter { field: "kind", .. }),
        "{kind}"
    );
}

/// The count of an unpaged response is the encoder's: checked against
/// prost encoding the whole response.
#[test]
fn an_unpaged_response_counts_its_bytes_as_they_are_encoded() {
    let revocation = |n: usize| pb::Revocation {
        kind: "jti".into(),
        value: format!("{n:022}"),
        revoked_at: 1_800_000_000,
        expires_at: 1_800_003_629,
        // Long enough that some items need a two-byte length prefix.
        reason: "r".repeat(n),
        actor: "admin:uid=1000".into(),
        ..Default::default()
    };
    let mut unpaged = Unpaged::new(Listing::Revocations);
    for n in 0..200 {
        unpaged.push(revocation(n)).unwrap();
    }
    let counted = unpaged.bytes;
    let response = pb::ListRevocationsResponse {
        revocations: unpaged.into_items(),
        next_page_token: String::new(),
    };
    assert_eq!(counted, response.encoded_len());

    // Past the limit: refused, not cut.
    let mut unpaged = Unpaged::new(Listing::Revocations);
    let big = pb::Revocation {
        reason: "r".repeat(UNPAGED_LIMIT_BYTES / 4),
        ..revocation(0)
    };
    for _ in 0..3 {
        unpaged.push(big.clone()).unwrap();
    }
    assert!(matches!(
        unpaged.push(big),
        Err(ListError::TooLargeUnpaged {
            listing: Listing::Revocations,
            ..
        })
    ));
}

/// The fuzz seeds are tokens Python wrote from the format this module
/// documents (fuzz/seeds/make_seeds.py): this server reads them as it
/// reads its own.
#[test]
fn tokens_written_elsewhere_from_the_documented_format_are_read() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/page_token");
    let read = |name: &str| std::fs::read_to_string(seeds.join(name)).unwrap();
    assert_eq!(
        decode_token(Listing::Entries, &read("entries")).unwrap(),
        "0123456789abcdef"
    );
    let revocations = read("revocations");
    assert_eq!(
        decode_token(Listing::Revocations, &revocations).unwrap(),
        "spiffe-id:spiffe://example.org/billing"
    );
    assert_eq!(
        revocations,
        encode_token(
            Listing::Revocations,
            "spiffe-id:spiffe://example.org/billing"
        ),
        "byte for byte what this server makes"
    );
}

#[test]
fn states_are_read_and_an_unknown_one_names_the_valid_ones() {
    let request = pb::ListEntriesRequest {
        states: vec!["dormant".into(), "review-overdue".into()],
        ..Default::default()
    };
    assert_eq!(
        entry_states(&request).unwrap(),
        [EntryState::Dormant, EntryState::ReviewOverdue]
    );
    assert!(
        entry_states(&pb::ListEntriesRequest::default())
            .unwrap()
            .is_empty(),
        "none given: no state filter"
    );
    let error = entry_states(&pb::ListEntriesRequest {
        states: vec!["active".into(), "stale".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            error,
            ListError::Filter {
                field: "states",
                ..
            }
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("\"stale\"") && text.contains("review-overdue"),
        "{text}"
    );
}

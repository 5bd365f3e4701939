use super::*;

fn id(text: &str) -> SpiffeId {
    text.parse().unwrap()
}

fn identity(kind: RevocationKind, value: &str, subjects: &[&str], at: i64) -> Revocation {
    let mut revocation = Revocation::new(kind, value, at, None).unwrap();
    revocation.subjects = subjects.iter().map(|s| id(s)).collect();
    revocation.reason = "compromised".into();
    revocation
}

#[test]
fn jti_and_serial_revocations_cover_only_their_credential_until_expiry() {
    let set = RevocationSet::authoritative();
    let sub = id("spiffe://example.org/a");
    set.upsert(Revocation::new(RevocationKind::Jti, "t1", 100, Some(200)).unwrap());
    set.upsert(Revocation::new(RevocationKind::Serial, "0A:FF", 100, Some(200)).unwrap());
    // Kept compact: the error names the credential, without a reason.
    assert_eq!(
        set.check_jwt(&sub, Some("t1"), Some(50), 150)
            .unwrap_err()
            .to_string(),
        "revoked (jti t1) at 100"
    );
    assert!(set.check_jwt(&sub, Some("t2"), Some(50), 150).is_ok());
    assert_eq!(
        set.get(RevocationKind::Jti, "t1").unwrap().expires_at,
        Some(200)
    );
    assert!(set.check_x509(&sub, "aff", 50, 150).is_err());
    assert!(set.check_x509(&sub, "abf", 50, 150).is_ok());
    let values =
        |kind| -> Vec<String> { set.of_kind(kind).iter().map(|r| r.value.clone()).collect() };
    assert_eq!(values(RevocationKind::Serial), vec!["aff".to_owned()]);
    assert_eq!(values(RevocationKind::Jti), vec!["t1".to_owned()]);
    assert!(values(RevocationKind::Entry).is_empty());
    // Expired revocations cover nothing, and prune drops them.
    assert!(set.check_jwt(&sub, Some("t1"), Some(50), 200).is_ok());
    assert_eq!(set.len(), 2);
    let mut pruned = set.prune(200);
    pruned.sort();
    assert_eq!(pruned, vec!["jti:t1".to_owned(), "serial:aff".to_owned()]);
    assert!(set.is_empty());
}

#[test]
fn identity_revocations_cover_credentials_issued_before_and_block_minting() {
    let set = RevocationSet::authoritative();
    let sub = id("spiffe://example.org/a");
    let other = id("spiffe://example.org/b");
    set.upsert(identity(
        RevocationKind::Entry,
        "e1",
        &["spiffe://example.org/a"],
        100,
    ));
    let err = set.check_jwt(&sub, Some("t"), Some(100), 150).unwrap_err();
    assert_eq!(err.to_string(), "revoked (entry e1) at 100: compromised");
    assert!(matches!(
        err,
        RevocationError::Revoked {
            kind: RevocationKind::Entry,
            ..
        }
    ));
    // While in force it covers everything of the subject, even newer.
    assert!(set.check_jwt(&sub, Some("t"), Some(120), 150).is_err());
    assert!(set.check_jwt(&other, Some("t"), Some(90), 150).is_ok());
    assert!(set.minting_blocked(&sub).is_some());
    assert!(set.minting_blocked(&other).is_none());

    // Lifted: minting resumes, older credentials stay covered until expiry.
    let mut lifted = identity(
        RevocationKind::Entry,
        "e1",
        &["spiffe://example.org/a"],
        100,
    );
    lifted.expires_at = Some(500);
    set.upsert(lifted);
    assert!(set.minting_blocked(&sub).is_none());
    assert!(set.check_jwt(&sub, None, Some(100), 150).is_err());
    assert!(
        set.check_jwt(&sub, None, None, 150).is_err(),
        "no iat: covered"
    );
    assert!(set.check_jwt(&sub, None, Some(101), 150).is_ok());
    assert!(set.check_x509(&sub, "1", 99, 150).is_err());
    assert!(set.check_x509(&sub, "1", 101, 150).is_ok());
    assert!(set.check_jwt(&sub, None, Some(100), 500).is_ok());
    assert_eq!(set.prune(500), vec!["entry:e1".to_owned()]);
    assert!(set.is_empty());
}

#[test]
fn two_revocations_of_one_subject_are_both_kept() {
    let set = RevocationSet::authoritative();
    let sub = id("spiffe://example.org/w");
    set.upsert(identity(
        RevocationKind::Entry,
        "e1",
        &["spiffe://example.org/w"],
        100,
    ));
    set.upsert(identity(
        RevocationKind::Agent,
        "spiffe://example.org/node",
        &["spiffe://example.org/node", "spiffe://example.org/w"],
        100,
    ));
    assert!(set.remove(RevocationKind::Entry, "e1").is_some());
    assert!(
        set.minting_blocked(&sub).is_some(),
        "the agent's still covers it"
    );
    assert!(set.remove_key("agent:spiffe://example.org/node").is_some());
    assert!(set.minting_blocked(&sub).is_none());
    assert!(set.check_jwt(&sub, None, Some(1), 150).is_ok());
    assert!(set.remove(RevocationKind::Entry, "e1").is_none());
}

#[test]
fn a_following_set_fails_closed_when_its_source_is_silent() {
    let set = RevocationSet::following(Duration::from_secs(15));
    let sub = id("spiffe://example.org/a");
    assert!(matches!(
        set.check_jwt(&sub, None, Some(1), 100),
        Err(RevocationError::Stale { .. })
    ));
    set.mark_heard(100_000);
    assert!(set.check_jwt(&sub, None, Some(1), 110).is_ok());
    assert!(set.check_jwt(&sub, None, Some(1), 115).is_ok());
    let err = set.check_jwt(&sub, None, Some(1), 116).unwrap_err();
    assert_eq!(
        err,
        RevocationError::Stale {
            age_secs: 16,
            bound_secs: 15
        }
    );
    assert!(err.to_string().contains("failing closed"));
    // Heard again: fresh again. An older heartbeat does not move it back.
    set.mark_heard(116_000);
    set.mark_heard(1_000);
    assert!(set.check_jwt(&sub, None, Some(1), 120).is_ok());
    assert!(RevocationSet::authoritative().check_fresh(i64::MAX).is_ok());
}

#[test]
fn a_stale_set_still_says_what_it_knows_to_a_cache() {
    let set = RevocationSet::following(Duration::from_secs(15));
    let sub = id("spiffe://example.org/a");
    set.upsert(Revocation::new(RevocationKind::Jti, "t1", 100, Some(200)).unwrap());
    set.upsert(Revocation::new(RevocationKind::Serial, "aff", 100, Some(200)).unwrap());
    // Never heard from its source: the full checks fail closed...
    assert!(matches!(
        set.check_jwt(&sub, Some("t2"), Some(50), 150),
        Err(RevocationError::Stale { .. })
    ));
    // ...the known-only checks answer from what the set holds.
    assert!(set.check_jwt_known(&sub, Some("t2"), Some(50), 150).is_ok());
    assert!(matches!(
        set.check_jwt_known(&sub, Some("t1"), Some(50), 150),
        Err(RevocationError::Revoked { .. })
    ));
    assert!(set.check_x509_known(&sub, "abf", 50, 150).is_ok());
    assert!(set.check_x509_known(&sub, "aff", 50, 150).is_err());
    set.upsert(identity(
        RevocationKind::SpiffeId,
        sub.as_str(),
        &[sub.as_str()],
        120,
    ));
    assert!(set.check_x509_known(&sub, "abf", 50, 150).is_err());
    assert!(set.check_jwt_known(&sub, Some("t2"), None, 150).is_err());
}

#[test]
fn changes_delivers_what_happens_after_it_was_called() {
    let set = RevocationSet::authoritative();
    set.upsert(Revocation::new(RevocationKind::Jti, "before", 1, Some(10)).unwrap());
    let mut changes = set.changes();
    set.upsert(Revocation::new(RevocationKind::Jti, "after", 1, Some(10)).unwrap());
    match changes.try_recv().unwrap() {
        RevocationChange::Upserted(revocation) => assert_eq!(revocation.value, "after"),
        other => panic!("{other:?}"),
    }
    assert!(changes.try_recv().is_err());
}

#[test]
fn subscribers_see_the_set_then_every_change() {
    let set = Arc::new(RevocationSet::authoritative());
    set.upsert(Revocation::new(RevocationKind::Jti, "t1", 1, Some(10)).unwrap());
    let (pages, mut changes) = set.subscribe_pages(16);
    assert_eq!(pages.flatten().count(), 1);
    set.upsert(Revocation::new(RevocationKind::Jti, "t2", 1, Some(10)).unwrap());
    set.remove(RevocationKind::Jti, "t1");
    set.replace_all(Vec::new());
    assert!(
        matches!(changes.try_recv().unwrap(), RevocationChange::Upserted(r) if r.value == "t2")
    );
    assert!(matches!(changes.try_recv().unwrap(), RevocationChange::Removed(k) if k == "jti:t1"));
    assert!(matches!(
        changes.try_recv().unwrap(),
        RevocationChange::Full
    ));
    assert!(set.is_empty());
}

/// A packable `jti`: 16 bytes in unpadded base64url, made from `n`.
fn packed_jti(n: u128) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode((n * 0x9e37_79b9_7f4a_7c15).to_be_bytes())
}

#[test]
fn pages_hold_every_revocation_once_and_with_the_changes_end_at_the_set() {
    let set = Arc::new(RevocationSet::authoritative());
    for n in 0..3 {
        set.upsert(identity(
            RevocationKind::Entry,
            &format!("e{n}"),
            &["spiffe://example.org/a"],
            1,
        ));
    }
    for n in 0..300 {
        set.upsert(Revocation::new(RevocationKind::Jti, &packed_jti(n), 1, Some(10)).unwrap());
    }
    for n in 0..5 {
        // Not 22 characters of base64url: kept beside the packed table.
        set.upsert(Revocation::new(RevocationKind::Jti, &format!("t{n}"), 1, Some(10)).unwrap());
    }
    for n in 1..=40u32 {
        set.upsert(
            Revocation::new(RevocationKind::Serial, &format!("{n:x}"), 1, Some(10)).unwrap(),
        );
    }
    let keys = |revocations: &mut dyn Iterator<Item = Arc<Revocation>>| -> Vec<String> {
        let mut keys: Vec<String> = revocations.map(|r| r.key()).collect();
        keys.sort();
        keys
    };
    let whole = keys(&mut set.snapshot().into_iter());
    assert_eq!(whole.len(), 348);
    let pages: Vec<_> = set.pages(7).collect();
    assert!(pages.iter().all(|page| (1..=7).contains(&page.len())));
    // The identity revocations make the first page; after it, a page is filled from as
    // many parts as it takes (the 345 `jti`s and serials lie in dozens of parts), so
    // every page but the last is full.
    assert_eq!(pages[0].len(), 3);
    let rest = &pages[1..];
    assert_eq!(rest.len(), 345usize.div_ceil(7));
    assert!(rest[..rest.len() - 1].iter().all(|page| page.len() == 7));
    let mut dup = whole.clone();
    dup.dedup();
    assert_eq!(keys(&mut pages.into_iter().flatten()), whole, "each once");
    assert_eq!(dup, whole);

    // Changes while the pages are read: one to a revocation already sent (the identity
    // revocations come first), two to parts not yet read.
    let (mut pages, mut changes) = set.subscribe_pages(7);
    let mut held: std::collections::BTreeMap<String, Arc<Revocation>> =
        std::collections::BTreeMap::new();
    for revocation in pages.next().unwrap() {
        held.insert(revocation.key(), revocation);
    }
    assert!(held.keys().all(|key| key.starts_with("entry:")));
    set.remove(RevocationKind::Entry, "e0");
    set.remove(RevocationKind::Jti, &packed_jti(7));
    set.upsert(Revocation::new(RevocationKind::Jti, &packed_jti(1_000), 1, Some(10)).unwrap());
    for revocation in pages.flatten() {
        held.insert(revocation.key(), revocation);
    }
    let now = keys(&mut set.snapshot().into_iter());
    // The control: the pages alone still hold the identity revocation lifted meanwhile.
    assert_ne!(held.keys().cloned().collect::<Vec<_>>(), now);
    while let Ok(change) = changes.try_recv() {
        match change {
            RevocationChange::Upserted(revocation) => {
                held.insert(revocation.key(), revocation);
            }
            RevocationChange::Removed(key) => {
                held.remove(&key);
            }
            RevocationChange::Full => panic!("no resync here"),
        }
    }
    assert_eq!(held.keys().cloned().collect::<Vec<_>>(), now);

    // An empty set has no page.
    assert!(
        Arc::new(RevocationSet::authoritative())
            .pages(7)
            .next()
            .is_none()
    );
}

#[test]
fn a_staged_set_replaces_the_whole_set() {
    let set = Arc::new(RevocationSet::authoritative());
    let a = id("spiffe://example.org/a");
    let b = id("spiffe://example.org/b");
    set.upsert(Revocation::new(RevocationKind::Jti, "old", 100, Some(200)).unwrap());
    set.upsert(identity(
        RevocationKind::SpiffeId,
        a.as_str(),
        &[a.as_str()],
        100,
    ));
    let (_, mut changes) = set.subscribe_pages(1);

    let mut staged = Staged::new();
    staged.push(Revocation::new(RevocationKind::Jti, &packed_jti(1), 100, Some(200)).unwrap());
    staged.push(Revocation::new(RevocationKind::Jti, "not-packed", 100, Some(200)).unwrap());
    staged.push(Revocation::new(RevocationKind::Serial, "0A:FF", 100, Some(200)).unwrap());
    staged.push(identity(
        RevocationKind::SpiffeId,
        b.as_str(),
        &[b.as_str()],
        100,
    ));
    assert_eq!(
        (staged.len(), set.len()),
        (4, 2),
        "staged apart from the set"
    );
    set.replace_with(staged);

    assert_eq!(set.len(), 4);
    assert!(
        set.check_jwt(&a, Some(&packed_jti(1)), Some(50), 150)
            .is_err()
    );
    assert!(
        set.check_jwt(&a, Some("not-packed"), Some(50), 150)
            .is_err()
    );
    assert!(set.check_x509(&a, "aff", 50, 150).is_err());
    assert!(
        set.check_jwt(&b, None, Some(50), 150).is_err(),
        "the new identity covers b"
    );
    // What the staged set did not hold is gone; the control above shows the checks bite.
    assert!(set.check_jwt(&a, Some("old"), Some(50), 150).is_ok());
    assert!(set.get(RevocationKind::Jti, "old").is_none());
    assert!(matches!(changes.try_recv(), Ok(RevocationChange::Full)));

    // Identity revocations: the one only in the old set was lifted above (with its
    // subject: `a` passes); here one held in both stays and one only in the new is added,
    // and the `jti`s and serial the new set does not hold are gone.
    let c = id("spiffe://example.org/c");
    let mut staged = Staged::new();
    staged.push(identity(
        RevocationKind::SpiffeId,
        b.as_str(),
        &[b.as_str()],
        100,
    ));
    staged.push(identity(
        RevocationKind::SpiffeId,
        c.as_str(),
        &[c.as_str()],
        100,
    ));
    set.replace_with(staged);
    assert!(set.check_jwt(&a, None, Some(50), 150).is_ok());
    assert!(set.check_jwt(&b, None, Some(50), 150).is_err());
    assert!(set.check_jwt(&c, None, Some(50), 150).is_err());
    assert_eq!(set.len(), 2);
    assert!(
        set.snapshot()
            .iter()
            .all(|r| r.kind == RevocationKind::SpiffeId)
    );
}

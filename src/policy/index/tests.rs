use super::*;
use crate::policy::{EntrySpec, TtlPolicy};
use mayfly_sdk::TrustDomain;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

fn entry(path: &str, selectors: &[&str]) -> Entry {
    EntrySpec {
        spiffe_id: Some(format!("spiffe://example.org{path}")),
        selectors: Some(selectors.iter().map(|s| (*s).to_owned()).collect()),
        audiences: Some(vec!["a".into()]),
        owner: Some("o".into()),
        purpose: Some("p".into()),
        ..EntrySpec::default()
    }
    .create(
        &TrustDomain::new("example.org").unwrap(),
        &TtlPolicy::default(),
        0,
    )
    .unwrap()
}

fn selectors(texts: &[&str]) -> Vec<Selector> {
    texts.iter().map(|t| Selector::parse(t).unwrap()).collect()
}

fn spiffe_id(path: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://example.org{path}")).unwrap()
}

fn agent(n: usize) -> SpiffeId {
    spiffe_id(&format!("/agent/{n}"))
}

fn numbered_id(i: usize) -> EntryId {
    EntryId::parse(&format!("{i:016x}")).unwrap()
}

/// Entry `i`: `/w/{i}` with selector `k8s:ns:ns{i % 100}`, odd ones also
/// `k8s:sa:sa{i}`, registered under agent `i % 10`.
fn numbered(template: &Entry, i: usize) -> Entry {
    let mut e = template.clone();
    e.id = numbered_id(i);
    e.spiffe_id = spiffe_id(&format!("/w/{i}"));
    e.selectors = vec![Selector::parse(&format!("k8s:ns:ns{}", i % 100)).unwrap()];
    if i % 2 == 1 {
        e.selectors
            .push(Selector::parse(&format!("k8s:sa:sa{i}")).unwrap());
    }
    e.parent_id = Some(agent(i % 10));
    e
}

fn paths(entries: &[Arc<Entry>]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.spiffe_id.path().to_owned())
        .collect()
}

/// The paths of the live entries among `0..n` that `keep` selects, in
/// SPIFFE ID (that is, string) order.
fn expected_paths(live: &[bool], keep: impl Fn(usize) -> bool) -> Vec<String> {
    let mut expected: Vec<String> = (0..live.len())
        .filter(|&i| live[i] && keep(i))
        .map(|i| format!("/w/{i}"))
        .collect();
    expected.sort();
    expected
}

#[test]
fn an_entry_matches_only_when_all_its_selectors_are_proven() {
    let index = EntryIndex::new([
        entry("/billing", &["k8s:ns:billing", "k8s:sa:api"]),
        entry("/any-billing", &["k8s:ns:billing"]),
        entry("/join-only", &[]),
    ]);
    let both = index.matching(&selectors(&[
        "k8s:ns:billing",
        "k8s:sa:api",
        "k8s:cluster:c",
    ]));
    let paths: Vec<_> = both.iter().map(|e| e.spiffe_id.path().to_owned()).collect();
    assert_eq!(paths, ["/any-billing", "/billing"]);
    let ns_only = index.matching(&selectors(&["k8s:ns:billing"]));
    assert_eq!(ns_only.len(), 1, "the two-selector entry needs both");
    assert!(index.matching(&selectors(&["k8s:ns:other"])).is_empty());
    assert!(
        index.matching(&[]).is_empty(),
        "entries without selectors never match"
    );
}

#[test]
fn updates_and_removals_reindex_selectors() {
    let index = EntryIndex::new([entry("/a", &["unix:uid:1"])]);
    let proven = selectors(&["unix:uid:1"]);
    let id = index.matching(&proven)[0].id.clone();
    let mut changed = (*index.by_id(&id).unwrap()).clone();
    changed.selectors = selectors(&["unix:uid:2"]);
    index.upsert(changed);
    assert!(index.matching(&proven).is_empty());
    assert_eq!(index.matching(&selectors(&["unix:uid:2"])).len(), 1);
    index.remove(&id);
    assert!(index.matching(&selectors(&["unix:uid:2"])).is_empty());
}

#[test]
fn renaming_an_entry_moves_it_between_spiffe_ids_and_parents() {
    let mut first = entry("/old", &["unix:uid:1"]);
    first.parent_id = Some(agent(1));
    let other = entry("/other", &["unix:uid:1"]);
    let index = EntryIndex::new([first.clone(), other.clone()]);
    let mut renamed = first.clone();
    renamed.spiffe_id = spiffe_id("/new");
    renamed.parent_id = Some(agent(2));
    renamed.revision += 1;
    index.upsert(renamed);

    assert!(index.by_spiffe_id(&spiffe_id("/old")).is_none());
    let found = index.by_spiffe_id(&spiffe_id("/new")).unwrap();
    assert_eq!((&found.id, found.revision), (&first.id, first.revision + 1));
    assert!(index.children_of(&agent(1)).is_empty());
    assert_eq!(paths(&index.children_of(&agent(2))), ["/new"]);
    assert_eq!(
        paths(&index.matching(&selectors(&["unix:uid:1"]))),
        ["/new", "/other"]
    );
    assert_eq!(index.len(), 2);
    let ids: Vec<_> = index.all().iter().map(|e| e.id.clone()).collect();
    let mut sorted = vec![first.id.clone(), other.id.clone()];
    sorted.sort();
    assert_eq!(ids, sorted, "all() is in id order");
}

#[test]
fn removing_an_entry_keeps_a_spiffe_id_that_another_entry_took_over() {
    let first = entry("/shared", &[]);
    let second = entry("/shared", &[]);
    let index = EntryIndex::new([first.clone()]);
    index.upsert(second.clone());
    index.remove(&first.id);
    assert_eq!(
        index.by_spiffe_id(&spiffe_id("/shared")).unwrap().id,
        second.id
    );
    index.remove(&EntryId::parse("00000000000000ff").unwrap());
    assert_eq!(index.len(), 1, "removing an absent id does nothing");
}

#[test]
fn a_hundred_thousand_upserts_and_removals_stay_correct() {
    const N: usize = 100_000;
    let template = entry("/template", &[]);
    let index = EntryIndex::new([]);
    for i in 0..N {
        index.upsert(numbered(&template, i));
    }
    let mut live = vec![true; N];
    assert_eq!(index.len(), N);

    // Remove every third entry, and move every seventh to another agent.
    for i in (0..N).step_by(3) {
        index.remove(&numbered_id(i));
        live[i] = false;
    }
    for i in (0..N).step_by(7).filter(|&i| live[i]) {
        let mut moved = numbered(&template, i);
        moved.parent_id = Some(agent(10));
        moved.revision = template.revision + 1;
        index.upsert(moved);
    }
    let live_count = live.iter().filter(|l| **l).count();
    assert_eq!(index.len(), live_count);
    assert_eq!(index.all().len(), live_count);
    assert!(index.all().windows(2).all(|w| w[0].id < w[1].id));

    for i in [0, 1, 2, 3, 7, 14, 4_999, 50_001, N - 2, N - 1] {
        let wanted = numbered(&template, i);
        let by_id = index.by_id(&wanted.id);
        let by_spiffe_id = index.by_spiffe_id(&wanted.spiffe_id);
        if live[i] {
            let (by_id, by_spiffe_id) = (by_id.unwrap(), by_spiffe_id.unwrap());
            assert!(Arc::ptr_eq(&by_id, &by_spiffe_id), "entry {i}");
            assert_eq!(by_id.revision, template.revision + u64::from(i % 7 == 0));
        } else {
            assert!(by_id.is_none() && by_spiffe_id.is_none(), "entry {i}");
        }
    }

    let ns_7 = selectors(&["k8s:ns:ns7"]);
    assert_eq!(
        paths(&index.matching(&ns_7)),
        expected_paths(&live, |i| i % 100 == 7 && i % 2 == 0),
        "odd entries also need their service account"
    );
    let ns_7_and_sa_107 = selectors(&["k8s:sa:sa107", "k8s:ns:ns7", "k8s:sa:sa107"]);
    assert_eq!(
        paths(&index.matching(&ns_7_and_sa_107)),
        expected_paths(&live, |i| i % 100 == 7 && (i % 2 == 0 || i == 107)),
    );
    assert!(index.matching(&selectors(&["k8s:sa:sa105"])).is_empty());
    for parent in 0..10 {
        assert_eq!(
            paths(&index.children_of(&agent(parent))),
            expected_paths(&live, |i| i % 10 == parent && i % 7 != 0),
            "agent {parent}"
        );
    }
    assert_eq!(
        paths(&index.children_of(&agent(10))),
        expected_paths(&live, |i| i % 7 == 0)
    );
}

#[test]
fn a_scan_starts_after_its_key_in_id_order_and_stops_when_told() {
    let template = entry("/t", &["k8s:ns:a"]);
    // Inserted out of order; 4 is never there.
    let index = EntryIndex::new([7, 1, 9, 3, 5].map(|i| numbered(&template, i)));
    let scanned = |after: Option<usize>, take: usize| {
        let mut ids = Vec::new();
        index.scan_after(after.map(numbered_id).as_ref(), |entry| {
            ids.push(entry.id.clone());
            if ids.len() == take {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        ids
    };
    let ids = |numbers: &[usize]| numbers.iter().map(|&i| numbered_id(i)).collect::<Vec<_>>();
    assert_eq!(scanned(None, usize::MAX), ids(&[1, 3, 5, 7, 9]));
    assert_eq!(
        scanned(Some(3), usize::MAX),
        ids(&[5, 7, 9]),
        "after, not from"
    );
    assert_eq!(
        scanned(Some(4), usize::MAX),
        ids(&[5, 7, 9]),
        "an absent key"
    );
    assert_eq!(scanned(None, 2), ids(&[1, 3]), "Break stops the scan");
    assert!(scanned(Some(9), usize::MAX).is_empty());
}

#[test]
fn a_bucket_grows_from_one_entry_and_shrinks_back() {
    let index = EntryIndex::new([]);
    let shared = selectors(&["k8s:ns:prod"]);
    let a = entry("/a", &["k8s:ns:prod"]);
    let b = entry("/b", &["k8s:ns:prod"]);
    let c = entry("/c", &["k8s:ns:prod"]);
    index.upsert(a.clone());
    assert_eq!(paths(&index.matching(&shared)), ["/a"]);
    // Replacing the only member keeps one, the new one.
    let mut a2 = a.clone();
    a2.revision += 1;
    index.upsert(a2);
    let matched = index.matching(&shared);
    assert_eq!((matched.len(), matched[0].revision), (1, a.revision + 1));
    index.upsert(b.clone());
    index.upsert(c.clone());
    assert_eq!(paths(&index.matching(&shared)), ["/a", "/b", "/c"]);
    index.remove(&b.id);
    index.remove(&a.id);
    assert_eq!(paths(&index.matching(&shared)), ["/c"]);
    // Removing an entry that is not the last member leaves it.
    index.remove(&a.id);
    assert_eq!(paths(&index.matching(&shared)), ["/c"]);
    index.remove(&c.id);
    assert!(index.matching(&shared).is_empty());
    assert!(
        index.current.load().by_selector.is_empty(),
        "empty buckets are dropped"
    );
}

/// Every way of finding an entry in `snapshot` agrees about it.
fn check_consistent(snapshot: &Snapshot) {
    assert_eq!(snapshot.by_id.len(), snapshot.by_spiffe_id.len());
    for ById(entry) in &snapshot.by_id {
        let by_spiffe_id = snapshot.by_spiffe_id(&entry.spiffe_id).unwrap();
        assert_eq!(
            (&by_spiffe_id.id, by_spiffe_id.revision),
            (&entry.id, entry.revision)
        );
        let matches = snapshot.matching(&entry.selectors);
        assert!(matches.iter().any(|m| Arc::ptr_eq(m, entry)));
        let parent = entry.parent_id.as_ref().unwrap();
        let children = snapshot.children_of(parent);
        assert!(children.iter().any(|c| Arc::ptr_eq(c, entry)));
    }
    let members = snapshot
        .by_selector
        .values()
        .chain(snapshot.by_parent.values());
    for InSpiffeIdOrder(member) in members.flat_map(Bucket::iter) {
        let current = snapshot.by_id(&member.id).unwrap();
        assert!(Arc::ptr_eq(&current, member), "a stale bucket member");
    }
}

#[test]
fn the_consistency_check_catches_a_half_applied_change() {
    let template = entry("/template", &[]);
    let mut whole = Snapshot::default();
    whole.upsert(Arc::new(numbered(&template, 1)));
    check_consistent(&whole);
    let mut no_spiffe_id = whole.clone();
    no_spiffe_id.by_spiffe_id = OrdSet::new();
    let mut stale_buckets = whole.clone();
    stale_buckets.by_id = OrdSet::new();
    stale_buckets.by_spiffe_id = OrdSet::new();
    for broken in [no_spiffe_id, stale_buckets] {
        assert!(std::panic::catch_unwind(|| check_consistent(&broken)).is_err());
    }
}

#[test]
fn readers_never_see_a_half_applied_change() {
    const IDS: usize = 64;
    let template = entry("/template", &[]);
    let index = EntryIndex::new((0..IDS).map(|i| numbered(&template, i)));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut checked = 0_u32;
            loop {
                let finished = done.load(AtomicOrdering::Acquire);
                check_consistent(&index.current.load());
                checked += 1;
                if finished {
                    return checked;
                }
            }
        });
        for round in 1..=2_000_u64 {
            let i = usize::try_from(round).unwrap() % IDS;
            let mut next = numbered(&template, i);
            if round % 5 == 0 {
                index.remove(&next.id);
                continue;
            }
            next.revision = round;
            // Change every index at once: SPIFFE ID, selectors, parent.
            next.spiffe_id = spiffe_id(&format!("/w/{i}/{}", round % 3));
            next.selectors = selectors(&["k8s:ns:shared"]);
            next.selectors
                .push(Selector::parse(&format!("k8s:sa:sa{}", round % 4)).unwrap());
            next.parent_id = Some(agent(usize::try_from(round).unwrap() % 3));
            index.upsert(next);
        }
        done.store(true, AtomicOrdering::Release);
        assert!(reader.join().unwrap() > 0);
    });
    check_consistent(&index.current.load());
}

fn resident_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Prints the resident memory of an index of 100,000 entries next to that
/// of the entries alone. A measurement, not a check: run it on its own,
/// `cargo test --lib memory_of_a_hundred_thousand_entries -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement to print, not a check"]
fn memory_of_a_hundred_thousand_entries() {
    const N: usize = 100_000;
    let template = entry("/template", &[]);
    let Some(start) = resident_kib() else {
        println!("no /proc/self/status: nothing to measure");
        return;
    };
    let index = EntryIndex::new([]);
    for i in 0..N {
        index.upsert(numbered(&template, i));
    }
    let after_index = resident_kib().unwrap();
    let alone: Vec<Entry> = (0..N).map(|i| numbered(&template, i)).collect();
    let after_alone = resident_kib().unwrap();
    println!(
        "{N} entries: index with its entries {} KiB; the entries alone {} KiB \
             ({} entries indexed)",
        after_index - start,
        after_alone - after_index,
        index.len().min(alone.len()),
    );
}

use std::time::{Duration, SystemTime};

use mayfly_sdk::clock::ManualClock;

use super::*;
use crate::policy::{Entry, EntrySpec, TtlPolicy};

fn limits(config: &AnomalyConfig) -> Thresholds {
    Thresholds::new(config)
}

fn config() -> AnomalyConfig {
    AnomalyConfig {
        rate_window: Duration::from_secs(10),
        rate_factor: 4.0,
        rate_floor: 20,
        baseline_half_life: Duration::from_secs(10),
        refusal_count: 5,
        refusal_window: Duration::from_secs(60),
        source_stable_after: Duration::from_secs(600),
        cooldown: Duration::from_secs(300),
        ..AnomalyConfig::default()
    }
}

fn entry(path: &str) -> Entry {
    EntrySpec {
        spiffe_id: Some(format!("spiffe://example.org{path}")),
        audiences: Some(vec!["a".into()]),
        owner: Some("team".into()),
        purpose: Some("p".into()),
        ..EntrySpec::default()
    }
    .create(
        &mayfly_sdk::TrustDomain::new("example.org").unwrap(),
        &TtlPolicy::default(),
        0,
    )
    .unwrap()
}

/// A detector over `entries` on a manual clock, started `warm_up` seconds ago.
fn detector(
    config: &AnomalyConfig,
    entries: &[Entry],
) -> (Detector, mpsc::Receiver<Finding>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let index = Arc::new(EntryIndex::new(entries.iter().cloned()));
    let metrics = crate::telemetry::Telemetry::new().metrics().clone();
    let (detector, findings) = Detector::new(config, index, clock.clone(), metrics);
    // Past the first window after start: no warm-up.
    clock.advance(config.rate_window);
    (detector, findings, clock)
}

fn event(entry: &Entry, actor: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        action: "jwt.mint".into(),
        outcome,
        actor: actor.into(),
        entry_id: Some(entry.id.to_string()),
        spiffe_id: Some(entry.spiffe_id.to_string()),
        audience: Some("a".into()),
        reason: (outcome == Outcome::Refused).then(|| "audience \"b\" is not allowed".into()),
        ..AuditEvent::default()
    }
}

fn drain(findings: &mut mpsc::Receiver<Finding>) -> Vec<Finding> {
    let mut got = Vec::new();
    while let Ok(finding) = findings.try_recv() {
        got.push(finding);
    }
    got
}

#[test]
fn the_baseline_is_an_exponentially_weighted_average_of_windows() {
    let limits = limits(&config());
    // Half-life of one window: each old window weighs half.
    assert!((limits.decay - 0.5).abs() < 1e-12);
    let mut state = EntryState::new(0, false);
    state.mints = 8;
    state.roll(10, &limits);
    assert!((state.baseline - 4.0).abs() < 1e-9, "{}", state.baseline);
    assert_eq!(state.mints, 0);
    state.mints = 4;
    state.roll(20, &limits);
    assert!((state.baseline - 4.0).abs() < 1e-9, "{}", state.baseline);
    // Three windows later: the one with 12 mints, then two empty ones.
    state.mints = 12;
    state.roll(50, &limits);
    assert!(
        (state.baseline - 8.0 * 0.25).abs() < 1e-9,
        "{}",
        state.baseline
    );
    // Within the window nothing rolls.
    state.mints = 3;
    state.roll(59, &limits);
    assert_eq!(state.mints, 3);
    // Warm-up: the first window becomes the baseline as it is.
    let mut warming = EntryState::new(0, true);
    warming.mints = 100;
    warming.roll(10, &limits);
    assert!((warming.baseline - 100.0).abs() < 1e-9);
    assert!(!warming.warming);
    // A very long silence decays the baseline to nothing without overflowing.
    warming.roll(i64::MAX / 2, &limits);
    assert!(warming.baseline.abs() < 1e-9);
}

#[test]
fn a_spike_needs_k_times_the_baseline_and_the_floor_and_is_judged_once_as_it_crosses() {
    let limits = limits(&config());
    // Baseline 10: k * baseline = 40 is above the floor (20).
    let mut state = EntryState::new(0, false);
    state.baseline = 10.0;
    let spikes: Vec<u32> = (1..=60)
        .filter_map(|_| state.granted(5, 1, None, &limits).0)
        .map(|figures| match figures {
            Figures::RateSpike { mints, .. } => mints,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(spikes, [41], "only the mint that crosses 40 reports");
    // Baseline 1: k * baseline = 4, but the floor (20) decides.
    let mut quiet = EntryState::new(0, false);
    quiet.baseline = 1.0;
    let first = (1..=30).find(|_| quiet.granted(5, 1, None, &limits).0.is_some());
    assert_eq!(first, Some(21));
    // Below both: nothing.
    let mut calm = EntryState::new(0, false);
    calm.baseline = 10.0;
    assert!((1..=40).all(|_| calm.granted(5, 1, None, &limits).0.is_none()));
    // While warming up nothing is judged.
    let mut warming = EntryState::new(0, true);
    assert!((1..=1000).all(|_| warming.granted(5, 1, None, &limits).0.is_none()));
}

#[test]
fn refusals_are_a_burst_only_when_n_fall_within_the_window() {
    let limits = limits(&config());
    let mut state = EntryState::new(0, false);
    // Four refusals: fewer than five.
    for at in [0, 1, 2, 3] {
        assert_eq!(state.refused(at, &limits), None);
    }
    assert_eq!(state.refused(4, &limits), Some(5));
    // Spread out: one a minute never makes five within a minute.
    let mut slow = EntryState::new(0, false);
    assert!((0..100).all(|n| slow.refused(n * 60, &limits).is_none()));
    // The ring wraps around without losing count.
    let mut many = EntryState::new(0, false);
    let bursts = (0..200)
        .filter(|n| many.refused(1000 + n / 10, &limits).is_some())
        .count();
    assert_eq!(
        bursts, 196,
        "every refusal from the fifth on completes a burst"
    );
}

#[test]
fn a_new_source_counts_only_once_the_sources_were_stable() {
    let limits = limits(&config());
    let mut state = EntryState::new(0, false);
    // The first source ever is not new to anything; a second one before stability is
    // remembered but not reported.
    assert!(state.saw_source(0, 11, &limits).is_none());
    assert!(state.saw_source(100, 22, &limits).is_none());
    // Known sources, after stability: nothing.
    assert!(state.saw_source(5000, 11, &limits).is_none());
    assert!(state.saw_source(5000, 22, &limits).is_none());
    // A third one, 4900 s after the last change (600 s needed): reported.
    let seen = state.saw_source(5000, 33, &limits).unwrap();
    assert_eq!(seen.known, 2);
    assert_eq!(seen.stable_for_secs, 4900);
    // The next new one right after is not: the sources just changed.
    assert!(state.saw_source(5001, 44, &limits).is_none());
    // More sources than slots: the least recently seen make room; memory stays fixed.
    for source in 100..200_u64 {
        state.saw_source(6000 + i64::try_from(source).unwrap(), source, &limits);
    }
    assert_eq!(
        state.sources.iter().filter(|s| **s != 0).count(),
        SOURCE_SLOTS
    );
    assert!(state.sources.contains(&199) && !state.sources.contains(&11));
}

#[test]
fn the_quick_hash_tells_texts_apart_and_never_marks_an_empty_slot() {
    let (detector, _findings, _clock) = detector(&config(), &[]);
    let texts = [
        "",
        "a",
        "payments",
        "payments-db",
        "payments-dc",
        "12345678",
        "123456789",
    ];
    let hashes: std::collections::HashSet<u64> =
        texts.iter().map(|t| detector.quick_hash(t)).collect();
    assert_eq!(hashes.len(), texts.len());
    assert!(!hashes.contains(&0));
    assert_eq!(
        detector.quick_hash("payments"),
        detector.quick_hash("payments")
    );
}

#[test]
fn the_source_hash_is_the_streamed_siphash_whether_or_not_it_fits_the_stack() {
    let (detector, _findings, _clock) = detector(&config(), &[]);
    let streamed = |actor: &str, attestor: &str| {
        let mut hasher = detector.hasher.build_hasher();
        for part in [actor, attestor] {
            hasher.write(part.as_bytes());
            hasher.write_u8(0xff);
        }
        hasher.finish().max(1)
    };
    let long = format!("spiffe://example.org/{}", "a".repeat(300));
    for (actor, attestor) in [
        ("spiffe://example.org/billing", ""),
        ("spiffe://example.org/billing", "join_token"),
        ("", ""),
        (long.as_str(), "k8s_psat"),
        (&long[..250], "oidc"),
    ] {
        assert_eq!(
            detector.source_hash(actor, attestor),
            streamed(actor, attestor)
        );
    }
    // The separator keeps the parts apart: moving a byte across it changes the hash.
    assert_ne!(
        detector.source_hash("spiffe://example.org/ab", "c"),
        detector.source_hash("spiffe://example.org/a", "bc")
    );
}

#[test]
fn the_state_of_an_entry_has_a_fixed_small_size() {
    assert!(
        std::mem::size_of::<EntryState>() <= 512,
        "{}",
        std::mem::size_of::<EntryState>()
    );
}

#[test]
fn findings_go_out_once_per_cooldown_with_their_figures() {
    let config = config();
    let billing = entry("/billing");
    let (detector, mut findings, clock) = detector(&config, std::slice::from_ref(&billing));
    for _ in 0..100 {
        detector.observe(
            &event(&billing, "spiffe://example.org/billing", Outcome::Granted),
            Seen::Granted,
        );
    }
    let got = drain(&mut findings);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].detector(), DetectorKind::RateSpike);
    assert_eq!(got[0].entry_id, billing.id.to_string());
    let figures = got[0].figures_json();
    assert_eq!(figures["mints"], 21);
    assert_eq!(figures["threshold"], 20.0);
    assert!(
        got[0].describe().contains("21 mints within 10s"),
        "{}",
        got[0].describe()
    );
    // Ten windows later the baseline has decayed and the same burst spikes again, within
    // the cooldown: no second finding; after the cooldown: one.
    clock.advance(Duration::from_secs(100));
    for _ in 0..100 {
        detector.observe(
            &event(&billing, "spiffe://example.org/billing", Outcome::Granted),
            Seen::Granted,
        );
    }
    assert!(drain(&mut findings).is_empty());
    clock.advance(Duration::from_secs(300));
    for _ in 0..1000 {
        detector.observe(
            &event(&billing, "spiffe://example.org/billing", Outcome::Granted),
            Seen::Granted,
        );
    }
    assert_eq!(drain(&mut findings).len(), 1);
}

#[test]
fn refusals_the_broker_caused_and_unregistered_ids_count_for_nothing() {
    let config = config();
    let billing = entry("/billing");
    let stranger = entry("/not-registered");
    let (detector, mut findings, _clock) = detector(&config, std::slice::from_ref(&billing));
    let refused = |e: &Entry| event(e, "spiffe://example.org/agent", Outcome::Refused);
    for _ in 0..10 {
        detector.observe(&refused(&stranger), Seen::Refused);
        detector.observe(&refused(&billing), Seen::Failed);
    }
    assert!(drain(&mut findings).is_empty());
    assert_eq!(
        detector.tracked(),
        0,
        "no state for a made-up id or a broker failure"
    );
    // Positive control: the registered entry's refusals do.
    for _ in 0..5 {
        detector.observe(&refused(&billing), Seen::Refused);
    }
    let got = drain(&mut findings);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].detector(), DetectorKind::RefusalBurst);
    assert_eq!(got[0].figures_json()["refusals"], 5);
    assert_eq!(
        got[0].figures_json()["last_reason"],
        "audience \"b\" is not allowed"
    );
}

#[test]
fn the_map_is_capped_and_pruned_of_deleted_entries() {
    let config = config();
    let kept = entry("/kept");
    let deleted = entry("/deleted");
    let (detector, _findings, _clock) = detector(&config, &[kept.clone(), deleted.clone()]);
    for e in [&kept, &deleted] {
        detector.observe(&event(e, "a", Outcome::Granted), Seen::Granted);
    }
    assert_eq!(detector.tracked(), 2);
    detector.entries.remove(&deleted.id);
    assert_eq!(detector.prune(), 1);
    assert_eq!(detector.tracked(), 1);
    // Full: a new entry is not tracked; known ones still are.
    detector.tracked.store(MAX_TRACKED, Ordering::Relaxed);
    let late = entry("/late");
    detector.entries.upsert(late.clone());
    detector.observe(&event(&late, "a", Outcome::Granted), Seen::Granted);
    assert_eq!(detector.tracked(), MAX_TRACKED);
    assert_eq!(detector.mints_of(late.id.as_str()), None);
    detector.observe(&event(&kept, "a", Outcome::Granted), Seen::Granted);
    assert_eq!(detector.mints_of(kept.id.as_str()), Some(2));
}

#[test]
fn a_full_queue_drops_the_finding_and_the_mint_goes_on() {
    let config = AnomalyConfig {
        rate_floor: 1,
        cooldown: Duration::from_secs(1),
        ..config()
    };
    let entries: Vec<Entry> = (0..FINDING_QUEUE + 10)
        .map(|n| entry(&format!("/e{n}")))
        .collect();
    let (detector, mut findings, _clock) = detector(&config, &entries);
    for e in &entries {
        for _ in 0..2 {
            detector.observe(&event(e, "a", Outcome::Granted), Seen::Granted);
        }
    }
    assert_eq!(drain(&mut findings).len(), FINDING_QUEUE);
    drop(findings);
    // A closed queue (the task stopped) is no reason to fail a mint either.
    detector.observe(&event(&entries[0], "b", Outcome::Granted), Seen::Granted);
}

#[test]
fn a_new_source_names_the_caller_and_its_attestor() {
    let config = config();
    let billing = entry("/billing");
    let (detector, mut findings, clock) = detector(&config, std::slice::from_ref(&billing));
    detector.observe(
        &event(&billing, "spiffe://example.org/agent/1", Outcome::Granted),
        Seen::Granted,
    );
    clock.advance(Duration::from_secs(60));
    detector.observe(
        &event(&billing, "spiffe://example.org/agent/1", Outcome::Granted),
        Seen::Granted,
    );
    assert!(drain(&mut findings).is_empty());
    clock.advance(Duration::from_secs(600));
    let mut attested = event(&billing, "system:serviceaccount:ns:sa", Outcome::Granted);
    attested.detail = Some(serde_json::json!({ "attestor": "k8s_psat" }));
    detector.observe(&attested, Seen::Granted);
    let got = drain(&mut findings);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        got[0].figures_json()["source"],
        "system:serviceaccount:ns:sa (via k8s_psat)"
    );
    assert_eq!(got[0].figures_json()["stable_for_secs"], 660);
}

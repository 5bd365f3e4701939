//! Micro benchmarks of the revocation index (`mayfly_sdk::revocation::RevocationSet`): the
//! cost of one `check_jwt` / `check_x509` with 10k and 1M revocations loaded, and the memory
//! each revocation takes.
//!
//! `cargo bench --bench revocation`. The figures belong in BENCHMARKS.md next to
//! `openssl speed ecdsap256` from the same run: a lookup is paid on top of one ES256 verify.
//!
//! The loaded set is what a busy broker holds: mostly `jti` revocations (22-character
//! base64url jtis, as `JwtSigner` mints them), 1 % `serial` revocations, and a few hundred
//! identity revocations (entry, SPIFFE ID, agent) with their subjects, half of them lifted.
//! Every value carries the reason and actor strings the admin API records. Building the set
//! is not measured.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use mayfly_sdk::SpiffeId;
use mayfly_sdk::revocation::{Revocation, RevocationKind, RevocationSet};

/// The clock every check runs at (2026-11-30T00:00:00Z).
const NOW: i64 = 1_795_996_800;
/// How long a `jti` or `serial` revocation covers (a token's longest life).
const COVER: i64 = 3600;
/// Identity revocations loaded next to the credential revocations.
const IDENTITY_REVOCATIONS: usize = 300;
/// Workloads an agent revocation covers besides the agent itself.
const WORKLOADS_PER_AGENT: usize = 8;
/// An operator's reason as the admin API records it (41 bytes).
const REASON: &str = "token leaked in a CI build log (INC-2041)";
/// The actor the admin API records for a local operator.
const ACTOR: &str = "admin:uid=1000";

/// splitmix64: reproducible inputs without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        bytes
    }

    /// A jti as `JwtSigner` mints it: base64url of 16 random bytes, 22 characters.
    fn jti(&mut self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes16())
    }

    /// A serial as the CA writes it: 16 bytes, top bits `01`, lowercase hex.
    fn serial(&mut self) -> String {
        let mut bytes = self.bytes16();
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        hex::encode(bytes)
    }
}

/// A credential revocation as `Revoker::revoke` builds it.
fn credential_revocation(kind: RevocationKind, value: &str) -> Revocation {
    let mut revocation = Revocation::new(kind, value, NOW - 60, Some(NOW - 60 + COVER))
        .expect("a valid revocation value");
    revocation.reason = REASON.to_owned();
    revocation.actor = ACTOR.to_owned();
    revocation
}

fn spiffe_id(text: String) -> SpiffeId {
    text.parse().expect("a valid SPIFFE ID")
}

/// Identity revocation `i`: an entry, a SPIFFE ID or an agent, in force for even `i`, lifted
/// (still covering what was issued before it) for odd `i`.
fn identity_revocation(i: usize) -> Revocation {
    let workload = |n: usize| spiffe_id(format!("spiffe://example.org/ns/team-{n}/sa/svc-{n}"));
    let (kind, value, subjects) = match i % 3 {
        0 => (
            RevocationKind::Entry,
            format!("{i:016x}"),
            vec![workload(i)],
        ),
        1 => {
            let id = workload(i);
            (RevocationKind::SpiffeId, id.to_string(), vec![id])
        }
        _ => {
            let agent = spiffe_id(format!("spiffe://example.org/agent/node-{i}"));
            let mut subjects = vec![agent.clone()];
            subjects.extend((0..WORKLOADS_PER_AGENT).map(|w| workload(10_000 + i * 100 + w)));
            (RevocationKind::Agent, agent.to_string(), subjects)
        }
    };
    let expires_at = (i % 2 == 1).then_some(NOW + COVER);
    let mut revocation =
        Revocation::new(kind, &value, NOW - 600, expires_at).expect("a valid revocation value");
    revocation.subjects = subjects;
    revocation.reason = REASON.to_owned();
    revocation.actor = ACTOR.to_owned();
    revocation
}

/// Distinct keys each benchmark cycles through, so that at 1M the lookups pay the cache
/// misses a broker's would instead of finding one hot entry in cache every time.
const KEYS_PER_PATH: usize = 65_536;

/// A loaded index and the inputs that take each path through it.
struct Fixture {
    set: RevocationSet,
    /// Revoked jtis, spread over the whole set.
    revoked_jtis: Vec<String>,
    /// jtis that were never revoked.
    unrevoked_jtis: Vec<String>,
    /// Serials that were never revoked.
    unrevoked_serials: Vec<String>,
    /// No identity revocation names it.
    uncovered_subject: SpiffeId,
    /// Named by a lifted revocation; a token issued after it passes.
    indexed_subject: SpiffeId,
    /// Named by a revocation in force.
    revoked_subject: SpiffeId,
    /// `iat` / `notBefore` of the credentials checked: after every revocation.
    issued_at: i64,
}

fn fixture(jti_revocations: usize) -> Fixture {
    let mut rng = Rng(0x6d61_7966_6c79 ^ jti_revocations as u64);
    let set = RevocationSet::authoritative();
    let stride = jti_revocations.div_ceil(KEYS_PER_PATH);
    let mut revoked_jtis = Vec::with_capacity(KEYS_PER_PATH);
    for i in 0..jti_revocations {
        let jti = rng.jti();
        set.upsert(credential_revocation(RevocationKind::Jti, &jti));
        if i % stride == 0 {
            revoked_jtis.push(jti);
        }
    }
    for _ in 0..jti_revocations / 100 {
        set.upsert(credential_revocation(RevocationKind::Serial, &rng.serial()));
    }
    for i in 0..IDENTITY_REVOCATIONS {
        set.upsert(identity_revocation(i));
    }
    let fixture = Fixture {
        set,
        revoked_jtis,
        unrevoked_jtis: (0..KEYS_PER_PATH).map(|_| rng.jti()).collect(),
        unrevoked_serials: (0..KEYS_PER_PATH).map(|_| rng.serial()).collect(),
        uncovered_subject: spiffe_id("spiffe://example.org/ns/billing/sa/api".to_owned()),
        // Identity revocation 1 is a lifted SPIFFE ID revocation, 2 an agent in force.
        indexed_subject: identity_revocation(1).subjects[0].clone(),
        revoked_subject: identity_revocation(2).subjects[3].clone(),
        issued_at: NOW - 30,
    };
    fixture.assert_paths(jti_revocations);
    fixture
}

impl Fixture {
    /// Setup check, not a timed assertion: each benchmark takes the path it is named for,
    /// for every key it cycles through.
    fn assert_paths(&self, jti_revocations: usize) {
        let set = &self.set;
        let at = Some(self.issued_at);
        let expected_len = jti_revocations + jti_revocations / 100 + IDENTITY_REVOCATIONS;
        assert_eq!(set.len(), expected_len);
        assert!(self.revoked_jtis.len() > KEYS_PER_PATH / 8);
        for jti in &self.revoked_jtis {
            assert!(
                set.check_jwt(&self.uncovered_subject, Some(jti), at, NOW)
                    .is_err()
            );
        }
        assert!(set.minting_blocked(&self.indexed_subject).is_none());
        let older = Some(NOW - 601);
        for jti in &self.unrevoked_jtis {
            let jti = Some(jti.as_str());
            assert!(set.check_jwt(&self.uncovered_subject, jti, at, NOW).is_ok());
            assert!(set.check_jwt(&self.indexed_subject, jti, at, NOW).is_ok());
            // The lifted revocation still covers what was issued before it.
            assert!(
                set.check_jwt(&self.indexed_subject, jti, older, NOW)
                    .is_err()
            );
            assert!(set.check_jwt(&self.revoked_subject, jti, at, NOW).is_err());
        }
        for serial in &self.unrevoked_serials {
            let subject = &self.uncovered_subject;
            assert!(set.check_x509(subject, serial, self.issued_at, NOW).is_ok());
        }
    }
}

/// Benchmarks `check` on each key of `keys` in turn.
fn cycle<'k, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    keys: &'k [String],
    check: impl Fn(&'k str) -> R,
) {
    group.bench_function(id, |b| {
        let mut next = keys.iter().cycle();
        b.iter(|| {
            let key = next.next().expect("a non-empty cycle");
            check(black_box(key.as_str()))
        })
    });
}

fn lookups(c: &mut Criterion) {
    for (label, jti_revocations) in [("10k", 10_000), ("1M", 1_000_000)] {
        let fixture = fixture(jti_revocations);
        let set = &fixture.set;
        let at = Some(fixture.issued_at);
        let uncovered = &fixture.uncovered_subject;
        let indexed = &fixture.indexed_subject;
        let revoked = &fixture.revoked_subject;
        let mut group = c.benchmark_group("revocation");
        cycle(
            &mut group,
            BenchmarkId::new("check_jwt_jti_hit", label),
            &fixture.revoked_jtis,
            |jti| set.check_jwt(uncovered, Some(jti), at, NOW),
        );
        cycle(
            &mut group,
            BenchmarkId::new("check_jwt_miss", label),
            &fixture.unrevoked_jtis,
            |jti| set.check_jwt(uncovered, Some(jti), at, NOW),
        );
        cycle(
            &mut group,
            BenchmarkId::new("check_jwt_subject_indexed_miss", label),
            &fixture.unrevoked_jtis,
            |jti| set.check_jwt(indexed, Some(jti), at, NOW),
        );
        cycle(
            &mut group,
            BenchmarkId::new("check_jwt_subject_hit", label),
            &fixture.unrevoked_jtis,
            |jti| set.check_jwt(revoked, Some(jti), at, NOW),
        );
        cycle(
            &mut group,
            BenchmarkId::new("check_x509_miss", label),
            &fixture.unrevoked_serials,
            |serial| set.check_x509(uncovered, serial, fixture.issued_at, NOW),
        );
        group.finish();
    }
}

/// Resident set size, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("a VmRSS line in kB");
    kib * 1024
}

/// Loads `count` jti revocations into an empty set and returns it with the RSS it added.
/// Each jti is generated inside the loop and dropped after `Revocation::new` copies it, as
/// when the broker reads revocations from its store.
fn load_jti_revocations(count: usize, seed: u64) -> (RevocationSet, u64) {
    let mut rng = Rng(seed);
    let before = rss_bytes();
    let set = RevocationSet::authoritative();
    for _ in 0..count {
        set.upsert(credential_revocation(RevocationKind::Jti, &rng.jti()));
    }
    let after = rss_bytes();
    assert_eq!(set.len(), count);
    (set, after.saturating_sub(before))
}

/// Prints the RSS each jti revocation costs. Runs first, before any fixture, and keeps each
/// set alive until both are measured so no freed memory is reused by the next.
fn memory(_: &mut Criterion) {
    let (small, small_delta) = load_jti_revocations(10_000, 1);
    let (large, large_delta) = load_jti_revocations(1_000_000, 2);
    for (count, label, delta) in [
        (10_000u64, "10k", small_delta),
        (1_000_000, "1M", large_delta),
    ] {
        println!(
            "memory: {} bytes per revocation ({label} jti revocations, RSS delta {:.1} MiB)",
            delta / count,
            delta as f64 / (1024.0 * 1024.0),
        );
    }
    drop((small, large));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = memory, lookups
}
criterion_main!(benches);

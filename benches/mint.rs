//! Micro benchmarks of the whole mint path in-process, through `mayfly::mint::Minter` as
//! the broker's handlers call it: the entry lookup, the revocation check, the policy
//! checks, the signature, and the audit record (group-committed: each call waits until its
//! record is fdatasync'd), without gRPC or TLS.
//!
//! `cargo bench --bench mint`. The figures belong in BENCHMARKS.md next to
//! `openssl speed ecdsap256` from the same run (`mayfly bench` measures the same paths
//! over gRPC).
//!
//! - `mint_jwt/sequential`: one `MintJwtSvid` at a time, so every call pays a whole audit
//!   fdatasync: the latency of a lone request.
//! - `mint_jwt/concurrent_64`: 64 calls in flight, as a busy broker has them, so one
//!   fdatasync covers many records; criterion reports the time per call.
//! - `renew_x509/{sequential,concurrent_64}`: `RenewX509Svid`: CSR parse and signature
//!   check, leaf signature, audit record.
//! - `validate_jwt/revocations_{0,10k}`: `ValidateJwtSvid`: signature, claims and the
//!   revocation index (no audit record), with an empty index and with 10,000 `jti`
//!   revocations loaded.
//! - `spiffe_id_parse`: `SpiffeId::parse`, which every request pays.
//! - `mint_jwt_anomaly/{off,on}/{signed,cached}_concurrent_64`: the anomaly detectors'
//!   cost on the mint path (issue 17): the same calls without and with
//!   `Minter::with_anomaly`, 64 in flight, signed every time or answered from the JWT
//!   cache (the cheapest mint, where the detectors weigh most). One entry takes all the
//!   load, as the load generator's does: the rate detector fires once, then its cooldown
//!   holds.
//! - `anomaly_observe`: `Detector::observe` alone, for one granted mint.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mayfly::anomaly::{Detector, Seen};
use mayfly::attest::Attestors;
use mayfly::audit::AuditLog;
use mayfly::audit::{AuditEvent, Outcome};
use mayfly::clock::{Clock, SystemClock};
use mayfly::config::AnomalyConfig;
use mayfly::mint::{Caller, Minter, MinterParts, UsageTracker};
use mayfly::policy::{EntryIndex, EntrySpec, TtlPolicy};
use mayfly::store::EmbeddedStore;
use mayfly_ca::{CaConfig, CertificateAuthority};
use mayfly_sdk::revocation::{Revocation, RevocationKind, RevocationSet};
use mayfly_sdk::{SpiffeId, TrustDomain};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const TRUST_DOMAIN: &str = "example.org";
const WORKLOAD: &str = "spiffe://example.org/billing/api";
const AUDIENCE: &str = "payments";
/// Requests in flight in the concurrent benchmarks.
const IN_FLIGHT: usize = 64;
/// The JWT validation leeway the server uses by default.
const LEEWAY: Duration = Duration::from_secs(30);

/// A minter wired as `server::start` wires it, over files in a temporary directory.
struct Fixture {
    _dir: tempfile::TempDir,
    minter: Arc<Minter>,
    caller: Caller,
    /// The anomaly findings' queue, kept open (nothing reads it: a full queue drops).
    _findings: Option<tokio::sync::mpsc::Receiver<mayfly::anomaly::Finding>>,
}

/// A Minter with one entry. `unique_jti`: every JWT-SVID is signed (the
/// default here, what the mint path costs); without it, the server-side
/// cache answers repeated requests.
fn fixture(runtime: &Runtime, revocations: RevocationSet, unique_jti: bool) -> Fixture {
    fixture_with(runtime, revocations, unique_jti, false)
}

/// [`fixture`], with the anomaly detectors (default thresholds) when `anomaly`.
fn fixture_with(
    runtime: &Runtime,
    revocations: RevocationSet,
    unique_jti: bool,
    anomaly: bool,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let trust_domain = TrustDomain::new(TRUST_DOMAIN).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (ca, _) = CertificateAuthority::load_or_create(
        &dir.path().join("ca"),
        &CaConfig::new(trust_domain.clone()),
        clock.now(),
    )
    .unwrap();
    let now = clock.unix_now();
    let entry = EntrySpec {
        spiffe_id: Some(WORKLOAD.into()),
        audiences: Some(vec![AUDIENCE.into()]),
        owner: Some("billing@example.org".into()),
        purpose: Some("criterion".into()),
        unique_jti: Some(unique_jti),
        ..EntrySpec::default()
    }
    .create(&trust_domain, &TtlPolicy::default(), now)
    .unwrap();
    let store = EmbeddedStore::open(&dir.path().join(EmbeddedStore::FILE_NAME)).unwrap();
    // The audit log starts a writer thread; open it inside the runtime like the server.
    let audit = runtime
        .block_on(async { AuditLog::open(&dir.path().join("audit")) })
        .unwrap();
    let entries = Arc::new(EntryIndex::new([entry]));
    let metrics = mayfly::telemetry::Telemetry::new().metrics().clone();
    let mut minter = Minter::new(MinterParts {
        ca: Arc::new(ca),
        entries: entries.clone(),
        store: Arc::new(store),
        audit,
        usage: Arc::new(UsageTracker::new(Vec::new())),
        clock: clock.clone(),
        attestors: Arc::new(Attestors::new(&Default::default()).unwrap()),
        revocations: Arc::new(revocations),
        leeway: LEEWAY,
        metrics: metrics.clone(),
    })
    .unwrap();
    let mut findings = None;
    if anomaly {
        let (detector, receiver) =
            Detector::new(&AnomalyConfig::default(), entries, clock.clone(), metrics);
        minter = minter.with_anomaly(Arc::new(detector));
        findings = Some(receiver);
    }
    let caller = Caller {
        spiffe_id: SpiffeId::parse(WORKLOAD).unwrap(),
        serial: "5c0f31a2".into(),
        not_before: now - 60,
    };
    Fixture {
        _dir: dir,
        minter: Arc::new(minter),
        caller,
        _findings: findings,
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `IN_FLIGHT` copies of `call` concurrently and waits for all of them.
fn concurrently<F, Fut>(runtime: &Runtime, fixture: &Fixture, call: F)
where
    F: Fn(Arc<Minter>, Caller) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    runtime.block_on(async {
        let mut calls = JoinSet::new();
        for _ in 0..IN_FLIGHT {
            calls.spawn(call(fixture.minter.clone(), fixture.caller.clone()));
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap();
        }
    })
}

fn mint_jwt(c: &mut Criterion) {
    let runtime = runtime();
    let fixture = fixture(&runtime, RevocationSet::authoritative(), true);
    let mut group = c.benchmark_group("mint_jwt");
    group.bench_function("sequential", |b| {
        b.iter(|| {
            runtime
                .block_on(
                    fixture
                        .minter
                        .mint_jwt(&fixture.caller, black_box(AUDIENCE), None),
                )
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("concurrent_64", |b| {
        b.iter(|| {
            concurrently(&runtime, &fixture, |minter, caller| async move {
                minter.mint_jwt(&caller, AUDIENCE, None).await.unwrap();
            })
        })
    });
    // The same request for an entry that allows reuse: a cache hit, its
    // revocation check and its audit record, no signature.
    let cached = crate::fixture(&runtime, RevocationSet::authoritative(), false);
    group.throughput(Throughput::Elements(1));
    group.bench_function("cached_sequential", |b| {
        b.iter(|| {
            runtime
                .block_on(
                    cached
                        .minter
                        .mint_jwt(&cached.caller, black_box(AUDIENCE), None),
                )
                .unwrap()
        })
    });
    group.finish();
}

fn renew_x509(c: &mut Criterion) {
    let runtime = runtime();
    let fixture = fixture(&runtime, RevocationSet::authoritative(), true);
    let (_, csr) = mayfly_sdk::client::new_key_and_csr().unwrap();
    let csr = Arc::new(csr);
    let mut group = c.benchmark_group("renew_x509");
    group.bench_function("sequential", |b| {
        b.iter(|| {
            runtime
                .block_on(fixture.minter.renew_x509(&fixture.caller, black_box(&csr)))
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("concurrent_64", |b| {
        b.iter(|| {
            let csr = csr.clone();
            concurrently(&runtime, &fixture, move |minter, caller| {
                let csr = csr.clone();
                async move {
                    minter.renew_x509(&caller, &csr).await.unwrap();
                }
            })
        })
    });
    group.finish();
}

/// `count` `jti` revocations as the admin API makes them: random 22-character jtis, each
/// covering an hour.
fn revocations(count: usize) -> RevocationSet {
    let set = RevocationSet::authoritative();
    let now = SystemClock.unix_now();
    for n in 0..count {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        bytes[8..].copy_from_slice(&0x6d61_7966_6c79_u64.to_be_bytes());
        let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut revocation =
            Revocation::new(RevocationKind::Jti, &jti, now - 60, Some(now + 3600)).unwrap();
        revocation.reason = "token leaked in a CI build log (INC-2041)".into();
        revocation.actor = "admin:uid=1000".into();
        set.upsert(revocation);
    }
    set
}

fn validate_jwt(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("validate_jwt");
    for (name, count) in [("revocations_0", 0), ("revocations_10k", 10_000)] {
        let fixture = fixture(&runtime, revocations(count), true);
        let token = runtime
            .block_on(fixture.minter.mint_jwt(&fixture.caller, AUDIENCE, None))
            .unwrap()
            .token;
        group.bench_function(name, |b| {
            b.iter(|| {
                fixture
                    .minter
                    .validate_jwt(black_box(&token), AUDIENCE)
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn spiffe_id(c: &mut Criterion) {
    c.bench_function("spiffe_id_parse", |b| {
        b.iter(|| {
            SpiffeId::parse(black_box("spiffe://example.org/ns/billing/sa/api-server")).unwrap()
        })
    });
}

/// The mint path without and with the anomaly detectors.
fn mint_jwt_anomaly(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("mint_jwt_anomaly");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    for (mode, on) in [("off", false), ("on", true)] {
        for (kind, unique_jti) in [("signed", true), ("cached", false)] {
            let fixture = fixture_with(&runtime, RevocationSet::authoritative(), unique_jti, on);
            group.bench_function(format!("{mode}/{kind}_concurrent_64"), |b| {
                b.iter(|| {
                    concurrently(&runtime, &fixture, |minter, caller| async move {
                        minter.mint_jwt(&caller, AUDIENCE, None).await.unwrap();
                    })
                })
            });
        }
    }
    group.finish();
}

/// `Detector::observe` alone: one granted mint of a busy entry.
fn anomaly_observe(c: &mut Criterion) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let trust_domain = TrustDomain::new(TRUST_DOMAIN).unwrap();
    let entry = EntrySpec {
        spiffe_id: Some(WORKLOAD.into()),
        audiences: Some(vec![AUDIENCE.into()]),
        owner: Some("billing@example.org".into()),
        purpose: Some("criterion".into()),
        ..EntrySpec::default()
    }
    .create(&trust_domain, &TtlPolicy::default(), clock.unix_now())
    .unwrap();
    let event = AuditEvent {
        action: "jwt.mint".into(),
        outcome: Outcome::Granted,
        actor: WORKLOAD.into(),
        entry_id: Some(entry.id.to_string()),
        spiffe_id: Some(WORKLOAD.into()),
        audience: Some(AUDIENCE.into()),
        ..AuditEvent::default()
    };
    let (detector, _findings) = Detector::new(
        &AnomalyConfig::default(),
        Arc::new(EntryIndex::new([entry])),
        clock,
        mayfly::telemetry::Telemetry::new().metrics().clone(),
    );
    c.bench_function("anomaly_observe", |b| {
        b.iter(|| detector.observe(black_box(&event), Seen::Granted))
    });
}

criterion_group!(
    benches,
    mint_jwt,
    renew_x509,
    validate_jwt,
    spiffe_id,
    mint_jwt_anomaly,
    anomaly_observe
);
criterion_main!(benches);

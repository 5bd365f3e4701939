//! `--memory`: fills the broker with many entries and `jti` revocations so that its
//! resident memory can be read under a realistic load.
//!
//! Each entry has two Kubernetes selectors and one audience; each revocation is a random
//! 22-character `jti` (the shape the broker mints) with a 41-byte reason, made through the
//! admin API with a few dozen requests in flight (the broker commits each one, store and
//! audit log, before it answers).
//!
//! Entries go through the admin API only with `--memory-entries-via-admin` (an RPC, a
//! store commit and an audit record each). By default they are written straight into the
//! stopped broker's embedded store, with the same store call `CreateEntry` makes, and the
//! broker is restarted, indexing them once, as it would after a restart in production.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mayfly_sdk::TrustDomain;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::error::BenchError;
use super::setup::random_id;
use crate::policy::{EntrySpec, TtlPolicy};
use crate::store::{EmbeddedStore, Store as _};

/// Admin requests in flight while loading.
const LOAD_CONCURRENCY: usize = 32;
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A reason as an operator writes one (41 bytes).
const REASON: &str = "token leaked in a CI build log (INC-2041)";

/// Load entry `n`, as the admin API's wire spec.
fn entry_spec(prefix: &str, n: usize) -> pb::EntrySpec {
    let list = |values: Vec<String>| Some(pb::StringList { values });
    pb::EntrySpec {
        spiffe_id: Some(format!("{prefix}/load/e-{n}")),
        selectors: list(vec![
            format!("k8s:ns:team-{}", n % 500),
            format!("k8s:sa:svc-{n}"),
        ]),
        audiences: list(vec![format!("svc-{}", n % 1000)]),
        owner: Some(format!("team-{}@example.org", n % 500)),
        purpose: Some("memory load (mayfly bench --memory)".to_owned()),
        environment: Some("test".to_owned()),
        data_class: Some("none".to_owned()),
        ..pb::EntrySpec::default()
    }
}

/// Creates `count` entries named `<prefix>/load/e-<n>` through the admin API.
///
/// # Errors
/// [`BenchError::Setup`] with the broker's answer when one is refused.
pub(crate) async fn load_entries(
    admins: &[AdminClient<Channel>],
    prefix: &str,
    count: usize,
) -> Result<Duration, BenchError> {
    let prefix = Arc::<str>::from(prefix);
    run_pool(admins, count, "entries", move |mut admin, n| {
        let spec = entry_spec(&prefix, n);
        async move {
            admin
                .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
                .await
                .map(drop)
                .map_err(|s| BenchError::setup(format!("create load entry {n}"), &s))
        }
    })
    .await
}

/// Writes `count` entries named `<prefix>/load/e-<n>` into the embedded store at `path`,
/// whose broker must be stopped.
///
/// # Errors
/// [`BenchError::Local`] when the store cannot be opened or written, or an entry is
/// refused by the policy checks.
pub(crate) async fn seed_entries(
    path: &Path,
    trust_domain: &str,
    prefix: &str,
    count: usize,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let local = |what: &str, e: &dyn std::fmt::Display| BenchError::Local(format!("{what}: {e}"));
    let trust_domain = TrustDomain::new(trust_domain).map_err(|e| local("trust domain", &e))?;
    let store = EmbeddedStore::open(path).map_err(|e| local("open the store", &e))?;
    let ttl = TtlPolicy::default();
    let mut last_report = Instant::now();
    for n in 0..count {
        let entry = spec_from_wire(entry_spec(prefix, n))
            .create(
                &trust_domain,
                &ttl,
                crate::clock::unix_seconds(std::time::SystemTime::now()),
            )
            .map_err(|e| local("build a load entry", &e))?;
        store
            .create_entry(&entry)
            .await
            .map_err(|e| local("write a load entry", &e))?;
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let rate = n as f64 / started.elapsed().as_secs_f64();
            super::progress(&format!(
                "memory: {n}/{count} entries written ({rate:.0}/s)"
            ));
        }
    }
    Ok(started.elapsed())
}

/// The policy spec of a wire spec (the fields the load entries set).
fn spec_from_wire(spec: pb::EntrySpec) -> EntrySpec {
    EntrySpec {
        spiffe_id: spec.spiffe_id,
        selectors: spec.selectors.map(|l| l.values),
        audiences: spec.audiences.map(|l| l.values),
        owner: spec.owner,
        purpose: spec.purpose,
        environment: spec.environment,
        data_class: spec.data_class,
        ..EntrySpec::default()
    }
}

/// Revokes `count` random `jti` values through the admin API.
///
/// # Errors
/// [`BenchError::Setup`] with the broker's answer when one is refused.
pub(crate) async fn load_revocations(
    admins: &[AdminClient<Channel>],
    count: usize,
) -> Result<Duration, BenchError> {
    run_pool(admins, count, "revocations", |mut admin, n| async move {
        let request = pb::RevokeRequest {
            kind: "jti".to_owned(),
            value: random_id(16),
            reason: REASON.to_owned(),
        };
        admin
            .revoke(request)
            .await
            .map(drop)
            .map_err(|s| BenchError::setup(format!("revocation {n}"), &s))
    })
    .await
}

/// Runs `request(admin, n)` for n in 0..count with [`LOAD_CONCURRENCY`] in flight over
/// `admins`, printing progress; stops at the first failure.
async fn run_pool<F, Fut>(
    admins: &[AdminClient<Channel>],
    count: usize,
    what: &'static str,
    request: F,
) -> Result<Duration, BenchError>
where
    F: Fn(AdminClient<Channel>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BenchError>> + Send,
{
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for worker in 0..LOAD_CONCURRENCY.min(count) {
        let Some(admin) = admins.get(worker % admins.len().max(1)).cloned() else {
            break;
        };
        let (next, done, request) = (next.clone(), done.clone(), request.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok(());
                }
                request(admin.clone(), n).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(error))) => return Err(error),
                Some(Err(error)) => {
                    return Err(BenchError::Local(format!("a loader failed: {error}")));
                }
            },
            _ = progress.tick() => {
                let finished = done.load(Ordering::Relaxed);
                let rate = finished as f64 / started.elapsed().as_secs_f64();
                super::progress(&format!("memory: {finished}/{count} {what} ({rate:.0}/s)"));
            }
        }
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_entries_pass_the_policy_checks() {
        let trust_domain = TrustDomain::new("mayfly.internal").unwrap();
        let prefix = "spiffe://mayfly.internal/bench/Ab-9_x";
        for n in [0, 1, 99_999] {
            let entry = spec_from_wire(entry_spec(prefix, n))
                .create(&trust_domain, &TtlPolicy::default(), 1_800_000_000)
                .unwrap();
            assert_eq!(entry.spiffe_id.as_str(), format!("{prefix}/load/e-{n}"));
            assert_eq!(entry.selectors.len(), 2);
            assert_eq!(entry.audiences.len(), 1);
        }
        // A spec in another trust domain is refused: the checks do run.
        let other = TrustDomain::new("example.org").unwrap();
        assert!(
            spec_from_wire(entry_spec(prefix, 1))
                .create(&other, &TtlPolicy::default(), 1_800_000_000)
                .is_err()
        );
    }
}

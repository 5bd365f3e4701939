//! `--memory`: fills the broker with many entries and `jti` revocations so that its
//! resident memory can be read under a realistic load, then reads the first revocation
//! sync a subscriber (an agent) takes, for the broker's peak while it sends the set.
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

use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::error::BenchError;
use super::setup::random_id;
use super::{EntrySeeder, SeedRequest};

/// Admin requests in flight while loading.
const LOAD_CONCURRENCY: usize = 32;
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A reason as an operator writes one (41 bytes).
const REASON: &str = "token leaked in a CI build log (INC-2041)";
/// `jti` revocations per `RevokeMany` call (the broker takes up to 10,000).
const REVOCATIONS_PER_CALL: usize = 1_000;
/// The largest message the first sync accepts, as the SDK's follower.
const SYNC_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// Load entry `n` under `prefix` (a SPIFFE ID of the broker's trust domain), as the
/// admin API's wire spec: two Kubernetes selectors, one audience.
pub fn entry_spec(prefix: &str, n: usize) -> pb::EntrySpec {
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
    run_pool(admins, count, count, "entries", move |mut admin, n| {
        let spec = entry_spec(&prefix, n);
        async move {
            admin
                .create_entry(pb::CreateEntryRequest { spec: Some(spec) })
                .await
                .map(|_| 1)
                .map_err(|s| BenchError::setup(format!("create load entry {n}"), &s))
        }
    })
    .await
}

/// Writes `count` entries named `<prefix>/load/e-<n>` into the stopped broker's embedded
/// store at `path`, through `seeder` (this crate does not link the broker's store).
///
/// # Errors
/// [`BenchError::Local`] with the seeder's reason when the store cannot be written or an
/// entry is refused by the policy checks.
pub(crate) async fn seed_entries(
    seeder: &EntrySeeder,
    path: &Path,
    trust_domain: &str,
    prefix: &str,
    count: usize,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    super::progress(&format!("memory: writing {count} entries into the store"));
    let request = SeedRequest {
        store: path.to_owned(),
        trust_domain: trust_domain.to_owned(),
        specs: (0..count).map(|n| entry_spec(prefix, n)).collect(),
    };
    seeder(request)
        .await
        .map_err(|reason| BenchError::Local(format!("write load entries: {reason}")))?;
    Ok(started.elapsed())
}

/// Revokes `count` random `jti` values through the admin API, [`REVOCATIONS_PER_CALL`]
/// to a `RevokeMany` call (each one still its own audit record).
///
/// # Errors
/// [`BenchError::Setup`] with the broker's answer when one is refused.
pub(crate) async fn load_revocations(
    admins: &[AdminClient<Channel>],
    count: usize,
) -> Result<Duration, BenchError> {
    let calls = count.div_ceil(REVOCATIONS_PER_CALL);
    run_pool(
        admins,
        calls,
        count,
        "revocations",
        move |mut admin, n| async move {
            let size = REVOCATIONS_PER_CALL.min(count - n * REVOCATIONS_PER_CALL);
            let items = (0..size)
                .map(|_| pb::RevokeRequest {
                    kind: "jti".to_owned(),
                    value: random_id(16),
                    reason: REASON.to_owned(),
                })
                .collect();
            let answer = admin
                .revoke_many(pb::RevokeManyRequest { items })
                .await
                .map_err(|s| BenchError::setup(format!("revocation call {n}"), &s))?
                .into_inner();
            if answer.revoked != size as u64 {
                let why = answer
                    .results
                    .iter()
                    .find(|r| !r.error.is_empty())
                    .map_or("no reason given", |r| r.error.as_str());
                return Err(BenchError::Setup {
                    step: format!("revocation call {n}"),
                    reason: format!("{} of {size} revoked: {why}", answer.revoked),
                });
            }
            Ok(size)
        },
    )
    .await
}

/// Opens `WatchRevocations` as a subscriber (an agent, the SDK) does and reads its first
/// full set to the end (every page); returns how many revocations came and how long it
/// took. The broker's memory while it sends them is the figure.
///
/// # Errors
/// [`BenchError::Setup`] if the broker refuses the stream or it breaks off.
pub(crate) async fn first_sync(
    broker: BrokerClient<Channel>,
) -> Result<(usize, Duration), BenchError> {
    let step = || "the first revocation sync".to_owned();
    let started = Instant::now();
    let mut stream = broker
        .max_decoding_message_size(SYNC_MESSAGE_LIMIT)
        .watch_revocations(pb::WatchRevocationsRequest {})
        .await
        .map_err(|s| BenchError::setup(step(), &s))?
        .into_inner();
    let mut received = 0;
    let mut begun = false;
    loop {
        let Some(update) = stream
            .message()
            .await
            .map_err(|s| BenchError::setup(step(), &s))?
        else {
            return Err(BenchError::Setup {
                step: step(),
                reason: "the stream ended before the full set".into(),
            });
        };
        begun |= update.full;
        if begun {
            received += update.upserted.len();
            if !update.more {
                return Ok((received, started.elapsed()));
            }
        }
    }
}

/// Runs `request(admin, n)` for n in 0..count with [`LOAD_CONCURRENCY`] in flight over
/// `admins`, printing progress (each request answers how many of the `total` `what` it
/// made); stops at the first failure.
async fn run_pool<F, Fut>(
    admins: &[AdminClient<Channel>],
    count: usize,
    total: usize,
    what: &'static str,
    request: F,
) -> Result<Duration, BenchError>
where
    F: Fn(AdminClient<Channel>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<usize, BenchError>> + Send,
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
                let made = request(admin.clone(), n).await?;
                done.fetch_add(made, Ordering::Relaxed);
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
                super::progress(&format!("memory: {finished}/{total} {what} ({rate:.0}/s)"));
            }
        }
    }
    Ok(started.elapsed())
}

//! The closed-loop load spread over several processes (`--load-processes`), so that one
//! process's own ceiling (a tokio runtime, an HTTP/2 client per connection) is not what
//! a broker on a bigger machine is measured against.
//!
//! For each path the run writes each worker a plan (the path, the broker, the SVIDs and
//! keys it authenticates with, its share of the requests in flight and connections) into
//! the run's temporary directory, mode 0600, and starts `mayfly bench --load-worker
//! <plan>` (the same executable, on the same CPUs). A worker connects, says `ready` on its
//! standard output, waits for a line on its standard input so that every worker starts at
//! once, runs its closed loop, and prints what it measured as one JSON document.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mayfly_sdk::proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use zeroize::Zeroizing;

use super::error::BenchError;
use super::load::{self, Outcome, Phases};
use super::paths::PathKind;
use super::setup::{self, BrokerAddress, Fixture, Identity};

/// How long a worker may take to connect before it says `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after its window a worker may take to report.
const REPORT_GRACE: Duration = Duration::from_secs(30);
/// The line a worker prints once connected.
const READY: &str = "ready";

/// What one worker is to do.
#[derive(Serialize, Deserialize)]
struct Plan {
    path: PathKind,
    url: String,
    bundle_pem: String,
    /// Certificate chain and private key, PEM.
    client: Option<(String, String)>,
    cached_client: Option<(String, String)>,
    agent: Option<(String, String)>,
    /// `JwtSvidParams`: entry id, audience, TTL.
    batch_params: Vec<(String, String, u32)>,
    agent_socket: Option<PathBuf>,
    concurrency: usize,
    connections: usize,
    warmup_ms: u64,
    measure_ms: u64,
}

/// `total` split into `parts` shares that differ by at most one, none below one.
fn shares(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| (total / parts + usize::from(i < total % parts)).max(1))
        .collect()
}

/// What the parent needs of a run to hand a path to workers.
pub(crate) struct Spread<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) broker: BrokerAddress<'a>,
    pub(crate) fixture: &'a Fixture,
    pub(crate) agent_socket: Option<&'a Path>,
}

/// The workers of one path, connected and waiting for the start.
pub(crate) struct Workers {
    running: Vec<Running>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Workers {
    /// Starts `processes` workers for `path`, sharing `concurrency` and `connections`, and
    /// waits until each has connected.
    ///
    /// # Errors
    /// [`BenchError::Process`] when a worker cannot start, stops, or does not connect in
    /// time; [`BenchError::Local`] when its plan cannot be written.
    pub(crate) async fn start(
        spread: &Spread<'_>,
        path: PathKind,
        processes: usize,
        concurrency: usize,
        connections: usize,
        phases: Phases,
    ) -> Result<Workers, BenchError> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Local(format!("cannot find this executable: {e}")))?;
        let mut running = Vec::with_capacity(processes);
        let connections = shares(connections, processes);
        for (index, concurrency) in shares(concurrency, processes).into_iter().enumerate() {
            let plan = plan(spread, path, concurrency, connections[index], phases);
            let file = spread.dir.join(format!("worker-{path}-{index}.json"));
            write_private(&file, &plan)?;
            let log = spread.dir.join(format!("worker-{path}-{index}.log"));
            let stderr = std::fs::File::create(&log)
                .map_err(|e| BenchError::Local(format!("{}: {e}", log.display())))?;
            let mut child = Command::new(&exe)
                .arg("bench")
                .arg("--load-worker")
                .arg(&file)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| worker_failed(&log, &format!("cannot start: {e}")))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(worker_failed(&log, "has no standard input or output"));
            };
            running.push(Running {
                child,
                stdin,
                stdout: BufReader::new(stdout),
                log,
            });
        }
        for worker in &mut running {
            let mut line = String::new();
            let said = tokio::time::timeout(READY_TIMEOUT, worker.stdout.read_line(&mut line))
                .await
                .map_err(|_| worker_failed(&worker.log, "did not connect within a minute"))?
                .map_err(|e| worker_failed(&worker.log, &e.to_string()))?;
            if said == 0 || line.trim_end() != READY {
                return Err(worker_failed(&worker.log, "stopped before it connected"));
            }
        }
        Ok(Workers { running })
    }

    /// The workers' pids, while they run.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.running.iter().filter_map(|w| w.child.id()).collect()
    }

    /// Starts every worker's load at once, and merges what they measured; with how many
    /// reported (all of them, or an error).
    ///
    /// # Errors
    /// [`BenchError::Process`] when a worker fails or reports nothing readable.
    pub(crate) async fn run(self, phases: Phases) -> Result<(Outcome, usize), BenchError> {
        let mut started = Vec::with_capacity(self.running.len());
        for mut worker in self.running {
            worker
                .stdin
                .write_all(b"go\n")
                .await
                .map_err(|e| worker_failed(&worker.log, &format!("cannot be started: {e}")))?;
            started.push(worker);
        }
        let limit = phases.warmup + phases.measure + REPORT_GRACE;
        let mut total = Outcome::new(phases.measure);
        let mut reported = 0;
        for mut worker in started {
            let mut report = String::new();
            tokio::time::timeout(limit, worker.stdout.read_to_string(&mut report))
                .await
                .map_err(|_| worker_failed(&worker.log, "did not report in time"))?
                .map_err(|e| worker_failed(&worker.log, &e.to_string()))?;
            let measured: Outcome = serde_json::from_str(&report).map_err(|e| {
                worker_failed(&worker.log, &format!("reported nothing usable: {e}"))
            })?;
            let _ = worker.child.wait().await;
            total.merge(measured);
            reported += 1;
        }
        Ok((total, reported))
    }
}

fn plan(
    spread: &Spread<'_>,
    path: PathKind,
    concurrency: usize,
    connections: usize,
    phases: Phases,
) -> Plan {
    let fixture = spread.fixture;
    Plan {
        path,
        url: spread.broker.url.to_owned(),
        bundle_pem: String::from_utf8_lossy(spread.broker.bundle_pem).into_owned(),
        client: fixture.client.as_ref().map(Identity::to_pem),
        cached_client: fixture.cached_client.as_ref().map(Identity::to_pem),
        agent: fixture.agent.as_ref().map(Identity::to_pem),
        batch_params: fixture
            .batch_params
            .iter()
            .map(|p| (p.entry_id.clone(), p.audience.clone(), p.ttl_seconds))
            .collect(),
        agent_socket: spread.agent_socket.map(Path::to_path_buf),
        concurrency,
        connections,
        warmup_ms: millis(phases.warmup),
        measure_ms: millis(phases.measure),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The plan holds private keys: written mode 0600, new, in the run's own directory.
fn write_private(file: &Path, plan: &Plan) -> Result<(), BenchError> {
    use std::io::Write as _;
    let bytes = Zeroizing::new(
        serde_json::to_vec(plan).map_err(|e| BenchError::Local(format!("a worker plan: {e}")))?,
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| BenchError::Local(format!("{}: {e}", file.display())))
}

fn worker_failed(log: &Path, reason: &str) -> BenchError {
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail = tail.lines().rev().take(3).collect::<Vec<_>>();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    BenchError::Process {
        what: "load worker",
        reason: if tail.is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}: {}", tail.join(" / "))
        },
    }
}

/// `mayfly bench --load-worker <plan>`: connects as the plan says, prints `ready`, waits
/// for a line on standard input, runs the closed loop and prints what it measured as JSON.
///
/// # Errors
/// [`BenchError::Local`] for an unreadable plan or a closed standard input;
/// [`BenchError::Unreachable`] when the broker or the agent cannot be reached.
pub async fn load_worker(plan_file: &Path) -> Result<String, BenchError> {
    // The plan holds private keys: read as a secret (bounded, refused if others may read it).
    let text = mayfly_sdk::files::read_secret_file(plan_file)
        .map_err(|e| BenchError::Local(e.to_string()))?;
    let plan: Plan = serde_json::from_slice(&text)
        .map_err(|e| BenchError::Local(format!("{}: {e}", plan_file.display())))?;
    let batch_params = plan
        .batch_params
        .into_iter()
        .map(|(entry_id, audience, ttl_seconds)| pb::JwtSvidParams {
            entry_id,
            audience,
            ttl_seconds,
        })
        .collect();
    let fixture = Fixture::for_worker(
        plan.client.map(Identity::from_pem),
        plan.cached_client.map(Identity::from_pem),
        plan.agent.map(Identity::from_pem),
        batch_params,
    );
    let broker = BrokerAddress {
        url: &plan.url,
        bundle_pem: plan.bundle_pem.as_bytes(),
    };
    let callers = setup::callers(
        plan.path,
        broker,
        &fixture,
        plan.connections,
        plan.agent_socket.as_deref(),
    )
    .await?;
    // Standard input and output are pipes to the parent: a line each way, blocking.
    let started = tokio::task::spawn_blocking(|| {
        use std::io::{BufRead as _, Write as _};
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{READY}")?;
        stdout.flush()?;
        let mut go = String::new();
        std::io::stdin().lock().read_line(&mut go)
    })
    .await
    .map_err(|e| BenchError::Local(format!("waiting for the start: {e}")))?
    .map_err(|e| BenchError::Local(format!("waiting for the start: {e}")))?;
    if started == 0 {
        return Err(BenchError::Local(
            "standard input closed before the start".into(),
        ));
    }
    let phases = Phases {
        warmup: Duration::from_millis(plan.warmup_ms),
        measure: Duration::from_millis(plan.measure_ms),
    };
    let outcome = load::closed_loop(&callers, plan.concurrency, phases).await;
    serde_json::to_string(&outcome).map_err(|e| BenchError::Local(format!("the report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.json");
        let plan = Plan {
            path: PathKind::Mint,
            url: "https://127.0.0.1:7443".into(),
            bundle_pem: String::new(),
            client: Some(("chain".into(), "key".into())),
            cached_client: None,
            agent: None,
            batch_params: vec![("e".into(), "a".into(), 60)],
            agent_socket: None,
            concurrency: 2,
            connections: 1,
            warmup_ms: 1,
            measure_ms: 2,
        };
        write_private(&file, &plan).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back: Plan = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(back.client, plan.client);
        assert_eq!(back.batch_params, plan.batch_params);
        assert_eq!(back.path, PathKind::Mint);
        // A second plan under the same name is refused, not written over.
        assert!(write_private(&file, &plan).is_err());
    }

    #[test]
    fn shares_add_up_and_none_is_empty() {
        assert_eq!(shares(64, 3), vec![22, 21, 21]);
        assert_eq!(shares(64, 4), vec![16, 16, 16, 16]);
        assert_eq!(shares(4, 4), vec![1, 1, 1, 1]);
        // More processes than connections: each still needs one.
        assert_eq!(shares(2, 3), vec![1, 1, 1]);
        assert_eq!(shares(5, 1), vec![5]);
        assert_eq!(shares(5, 0), vec![5]);
    }
}

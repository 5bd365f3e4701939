//! `mayfly bench`: a load generator for the broker over real gRPC with TLS and mTLS.
//!
//! One command on a fresh machine gives the whole table: it starts its own broker (a
//! `mayfly server` child in a temporary directory, optionally pinned to some CPUs with
//! `taskset`), pins itself to others, registers what it needs through the admin socket,
//! measures the raw single-core ES256 rates with `openssl speed` on the broker's core, and
//! then drives each path:
//!
//! | path | what is called |
//! |---|---|
//! | `floor` | `Ping` over mTLS: an RPC that does nothing, the transport alone |
//! | `mint` | `MintJwtSvid` over mTLS with a workload's X509-SVID |
//! | `batch` | `BatchMintJwtSvids` over mTLS with an agent's X509-SVID, as agents do |
//! | `x509` | `RenewX509Svid`: a CSR in, an X509-SVID out |
//! | `validate` | `ValidateJwtSvid` over TLS, as a relying party |
//! | `workload` | the Workload API's `FetchJWTSVID` through a `mayfly agent` child |
//!
//! Each runs closed loop (`concurrency` requests always in flight over `connections`
//! HTTP/2 connections) for a warm-up, then a measured window, and reports throughput and
//! p50/p99/p99.9 latency as a ratio to the raw limit (see [`report`] for the targets).
//! When `floor` ran, every other path is also shown as a fraction of what the floor and
//! its own signature work allow together ([`report::transport_bound`]).
//! Mint and validate then run again open loop at half their peak, where p99 must stay
//! under 2 ms. The broker's resident memory is read idle and, with `--memory`, after
//! loading 100,000 entries and 1,000,000 revocations through the admin API.
//!
//! This crate is a client of the broker and the agent, which it runs as child processes
//! of the `mayfly` binary (`std::env::current_exe`); it links the SDK, never the broker.
//! Where it needs the broker's code (writing load entries straight into a stopped
//! broker's store), the binary hands it an [`EntrySeeder`].
//!
//! Modules: `paths` (what each path calls), `load` (closed- and open-loop drivers),
//! `setup` (entries, SVIDs, tokens), `process` (the broker and agent children), `memory`
//! (the `--memory` load), `openssl` (`openssl speed`), `stats` and [`report`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), mayfly_bench::BenchError> {
//! use std::time::Duration;
//! use mayfly_bench::{BrokerTarget, Options, PathKind};
//!
//! let report = mayfly_bench::run(Options {
//!     paths: vec![PathKind::Mint, PathKind::Validate],
//!     duration: Duration::from_secs(2),
//!     warmup: Duration::from_secs(1),
//!     ..Options::new(BrokerTarget::Spawn)
//! })
//! .await?;
//! print!("{}", report.render());
//! # Ok(()) }
//! ```

mod error;
mod load;
mod memory;
mod openssl;
mod paths;
mod process;
pub mod report;
mod setup;
mod stats;
mod worker;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mayfly_sdk::proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

pub use error::BenchError;
pub use memory::entry_spec as memory_load_entry;
pub use openssl::{Measured, RawLimits, parse_speed};
pub use paths::PathKind;
pub use process::parse_vm_rss;
pub use report::Report;
pub use stats::Percentiles;
pub use worker::load_worker;

use load::{Outcome, Phases};
use process::{AgentPlan, ChildProcess, TasksetProblem};
use report::{FirstSync, HalfLoadResult, LoadedMemory, MemoryFigure, PathResult, Settings};
use setup::{BrokerAddress, Fixture};

/// The broker a run measures.
#[derive(Debug, Clone)]
pub enum BrokerTarget {
    /// Start `mayfly server` as a child process with a temporary data directory, and stop
    /// it (and remove the directory) at the end.
    Spawn,
    /// A broker that is already running. Setup goes through the admin socket in its data
    /// directory; the entries made are deleted at the end.
    Existing {
        /// Its `https://` URL.
        server: String,
        /// Its root CA bundle (PEM).
        bundle: PathBuf,
        /// Its data directory (for `admin.sock`).
        data_dir: PathBuf,
        /// Its pid, to read its memory; without it, memory is not reported.
        pid: Option<u32>,
    },
}

/// Entries for the memory load, to be written straight into a stopped broker's embedded
/// store (see [`EntrySeeder`]).
#[derive(Debug)]
pub struct SeedRequest {
    /// The store's database file.
    pub store: std::path::PathBuf,
    /// The broker's trust domain.
    pub trust_domain: String,
    /// The entries, as the admin API would take them.
    pub specs: Vec<mayfly_sdk::proto::v1::EntrySpec>,
}

/// Writes a [`SeedRequest`] into the store, with the same checks `CreateEntry` makes; the
/// error is why not. The `mayfly` binary, which links the broker, provides it: this crate
/// is a client of the broker and does not link its store.
pub type EntrySeeder = std::sync::Arc<
    dyn Fn(SeedRequest) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// How much `--memory` loads, and how.
#[derive(Clone)]
pub struct MemoryLoad {
    /// Entries to create.
    pub entries: usize,
    /// `jti` revocations to make (through the admin API).
    pub revocations: usize,
    /// Create the entries through the admin API (an RPC, a commit and an audit record
    /// each) rather than writing them into the stopped broker's store and restarting it.
    pub entries_via_admin: bool,
    /// What writes them into the store when not through the admin API.
    pub seeder: Option<EntrySeeder>,
}

impl std::fmt::Debug for MemoryLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLoad")
            .field("entries", &self.entries)
            .field("revocations", &self.revocations)
            .field("entries_via_admin", &self.entries_via_admin)
            .field("seeder", &self.seeder.is_some())
            .finish()
    }
}

/// What to measure and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker.
    pub target: BrokerTarget,
    /// The paths, in [`PathKind::ALL`] order.
    pub paths: Vec<PathKind>,
    /// The measured window per path.
    pub duration: Duration,
    /// The warm-up before it.
    pub warmup: Duration,
    /// Requests in flight (closed loop).
    pub concurrency: usize,
    /// HTTP/2 connections (Unix socket connections for the workload path).
    pub connections: usize,
    /// JWT-SVIDs per `BatchMintJwtSvids` call (entries registered under the agent).
    pub batch_size: usize,
    /// `taskset` CPU list for the broker, the agent and `openssl speed`.
    pub server_cpus: Option<String>,
    /// `taskset` CPU list for this process (it re-executes itself under `taskset`).
    pub load_cpus: Option<String>,
    /// Seconds per operation for `openssl speed`; 0 skips it (and the ratios).
    pub openssl_seconds: u32,
    /// Whether to re-run mint and validate at half their peak rate.
    pub half_load: bool,
    /// Whether, and how much, to load for the memory figure.
    pub memory: Option<MemoryLoad>,
    /// Processes the closed-loop load is spread over (1: this one alone).
    pub load_processes: usize,
}

impl Options {
    /// The defaults: every path, 10 s after a 2 s warm-up, 64 requests in flight over 4
    /// connections, batches of 16, openssl for 3 s, half-load runs, no pinning, no memory
    /// load.
    pub fn new(target: BrokerTarget) -> Self {
        Options {
            target,
            paths: PathKind::ALL.to_vec(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            concurrency: 64,
            connections: 4,
            batch_size: 16,
            server_cpus: None,
            load_cpus: None,
            openssl_seconds: 3,
            half_load: true,
            memory: None,
            load_processes: 1,
        }
    }
}

/// One progress line on standard error.
pub(crate) fn progress(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "bench: {line}");
}

/// Runs the load test and returns what it measured. With `load_cpus` set, the first call
/// re-executes the process under `taskset` and never returns (unless that fails).
///
/// # Errors
/// [`BenchError::Usage`] for options that cannot work (a CPU list `taskset` refuses);
/// [`BenchError::Process`] when the broker or agent cannot start;
/// [`BenchError::Unreachable`] when the broker or its admin socket cannot be reached;
/// [`BenchError::Setup`] when setup is refused; [`BenchError::Local`].
pub async fn run(mut options: Options) -> Result<Report, BenchError> {
    let mut notes = Vec::new();
    pin_load(&mut options, &mut notes).await?;
    if let Some(cpus) = options.server_cpus.clone() {
        match process::check_taskset(&cpus).await {
            Ok(()) => {}
            Err(TasksetProblem::Refused(reason)) => return Err(BenchError::Usage(reason)),
            Err(TasksetProblem::Missing(reason)) => {
                notes.push(format!("{reason}: the broker runs unpinned"));
                options.server_cpus = None;
            }
        }
    }
    if options.load_cpus.is_none() || options.server_cpus.is_none() {
        notes.push(
            "broker and load are not both pinned: they compete for the same cores \
             (--server-cpus 0 --load-cpus 1 on a 2-core machine)"
                .into(),
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("mayfly-bench-")
        .tempdir()
        .map_err(|e| BenchError::Local(format!("cannot create a temporary directory: {e}")))?;
    let mut lab = Lab::start(&options, dir.path()).await?;
    let result = lab.measure(&options, notes).await;
    lab.stop().await;
    drop(dir);
    result
}

/// Re-executes this process under `taskset -c <load_cpus>` unless it already runs so.
async fn pin_load(options: &mut Options, notes: &mut Vec<String>) -> Result<(), BenchError> {
    let Some(cpus) = options.load_cpus.clone() else {
        return Ok(());
    };
    if process::already_pinned() {
        return Ok(());
    }
    match process::check_taskset(&cpus).await {
        Ok(()) => {
            progress(&format!("re-running under taskset -c {cpus}"));
            Err(process::pin_this_process(&cpus))
        }
        Err(TasksetProblem::Refused(reason)) => Err(BenchError::Usage(reason)),
        Err(TasksetProblem::Missing(reason)) => {
            progress(&format!("{reason}; the load runs unpinned"));
            notes.push(format!("{reason}: the load runs unpinned"));
            options.load_cpus = None;
            Ok(())
        }
    }
}

/// The broker under test, the agent, and the files of a run.
struct Lab {
    broker: Option<ChildProcess>,
    agent: Option<ChildProcess>,
    url: String,
    bundle_pem: Vec<u8>,
    admin_socket: PathBuf,
    /// The broker's data directory.
    data_dir: PathBuf,
    pid: Option<u32>,
    dir: PathBuf,
    /// Set once setup has made entries on a broker that outlives the run.
    cleanup: Option<Fixture>,
}

impl Lab {
    async fn start(options: &Options, dir: &Path) -> Result<Lab, BenchError> {
        let (broker, url, bundle, data_dir, pid) = match &options.target {
            BrokerTarget::Spawn => {
                progress("starting a broker");
                let data_dir = dir.join("broker");
                let (mut child, url) = process::spawn_broker(
                    &data_dir,
                    &dir.join("broker.log"),
                    options.server_cpus.as_deref(),
                )
                .await?;
                let pid = child.pid();
                if pid.is_none() {
                    return Err(child.failure("has no pid"));
                }
                (Some(child), url, data_dir.join("bundle.pem"), data_dir, pid)
            }
            BrokerTarget::Existing {
                server,
                bundle,
                data_dir,
                pid,
            } => (None, server.clone(), bundle.clone(), data_dir.clone(), *pid),
        };
        let bundle_pem = std::fs::read(&bundle)
            .map_err(|e| BenchError::Local(format!("cannot read {}: {e}", bundle.display())))?;
        Ok(Lab {
            broker,
            agent: None,
            url,
            bundle_pem,
            admin_socket: mayfly_sdk::data_dir::DataDir::new(&data_dir).admin_socket(),
            data_dir,
            pid,
            dir: dir.to_owned(),
            cleanup: None,
        })
    }

    fn address(&self) -> BrokerAddress<'_> {
        BrokerAddress {
            url: &self.url,
            bundle_pem: &self.bundle_pem,
        }
    }

    async fn admin(&self) -> Result<AdminClient<Channel>, BenchError> {
        Ok(mayfly_sdk::client::connect_admin(&self.admin_socket).await?)
    }

    /// Everything after the broker is up: limits, setup, the paths, memory.
    async fn measure(
        &mut self,
        options: &Options,
        notes: Vec<String>,
    ) -> Result<Report, BenchError> {
        let mut report = Report {
            settings: self.settings(options),
            raw_limits: None,
            raw_limits_error: None,
            paths: Vec::new(),
            half_load: Vec::new(),
            memory: report::MemoryReport::default(),
            notes,
        };
        self.raw_limits(options, &mut report).await;
        let fixture = self.setup(options).await?;
        report.memory.idle = self
            .rss("idle")?
            .map(|kib| MemoryFigure::new(kib, report::IDLE_RSS_TARGET_MIB));
        let phases = Phases {
            warmup: options.warmup,
            measure: options.duration,
        };
        for &path in &options.paths {
            let result = self
                .full_load(path, options, &fixture, phases, &report)
                .await?;
            report.paths.push(result);
        }
        let limits = report.raw_limits.as_ref().map(|m| &m.limits);
        if let Some(floor) = report.paths.iter().find(|r| r.path == PathKind::Floor) {
            let floor_per_s = floor.requests_per_s;
            for result in &mut report.paths {
                result.transport = report::transport_bound(
                    result.path,
                    result.rate_per_s,
                    result.requests_per_s,
                    floor_per_s,
                    limits,
                );
            }
        }
        if options.half_load {
            self.half_loads(options, &fixture, phases, &mut report)
                .await?;
        }
        if let Some(load) = options.memory.clone() {
            report.memory.loaded = self.loaded_memory(load, options, &fixture.prefix).await?;
        }
        if matches!(options.target, BrokerTarget::Existing { .. }) {
            self.cleanup = Some(fixture);
        }
        Ok(report)
    }

    fn settings(&self, options: &Options) -> Settings {
        Settings {
            duration_s: options.duration.as_secs_f64(),
            warmup_s: options.warmup.as_secs_f64(),
            concurrency: options.concurrency,
            connections: options.connections,
            batch_size: options.batch_size,
            broker: match options.target {
                BrokerTarget::Spawn => "spawned".into(),
                BrokerTarget::Existing { .. } => self.url.clone(),
            },
            broker_pid: self.pid,
            server_cpus: options.server_cpus.clone(),
            load_cpus: options.load_cpus.clone(),
            load_cores: load_cores(),
            load_processes: options.load_processes.max(1),
        }
    }

    async fn raw_limits(&self, options: &Options, report: &mut Report) {
        if options.openssl_seconds == 0 {
            report.raw_limits_error = Some("skipped with --openssl-seconds 0".into());
            return;
        }
        progress(&format!(
            "openssl speed -seconds {} ecdsap256 (about {} s)",
            options.openssl_seconds,
            2 * options.openssl_seconds
        ));
        match openssl::measure(options.openssl_seconds, options.server_cpus.as_deref()).await {
            Ok(measured) => report.raw_limits = Some(measured),
            Err(error) => {
                progress(&format!("no raw limit: {error}"));
                report.raw_limits_error = Some(error);
            }
        }
    }

    /// Entries, SVIDs and, for the workload path, a running agent.
    async fn setup(&mut self, options: &Options) -> Result<Fixture, BenchError> {
        progress("setting up entries and SVIDs through the admin socket");
        let uid = std::fs::metadata(&self.dir)
            .map_err(|e| BenchError::Local(format!("{}: {e}", self.dir.display())))?
            .uid();
        let mut admin = self.admin().await?;
        let fixture = setup::prepare(
            &mut admin,
            self.address(),
            &options.paths,
            options.batch_size,
            uid,
        )
        .await?;
        if let Some(token) = &fixture.node_token {
            self.start_agent(token, options.server_cpus.as_deref())
                .await?;
        }
        Ok(fixture)
    }

    async fn start_agent(&mut self, token: &str, cpus: Option<&str>) -> Result<(), BenchError> {
        progress("starting an agent");
        let token_file = self.dir.join("agent-token");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_file)
            .and_then(|mut file| file.write_all(token.as_bytes()))
            .map_err(|e| BenchError::Local(format!("{}: {e}", token_file.display())))?;
        let socket = self.agent_socket();
        let bundle = self.dir.join("bundle.pem");
        std::fs::write(&bundle, &self.bundle_pem)
            .map_err(|e| BenchError::Local(format!("{}: {e}", bundle.display())))?;
        let plan = AgentPlan {
            data_dir: &self.dir.join("agent"),
            socket: &socket,
            token_file: &token_file,
            server: &self.url,
            bundle: &bundle,
            log: &self.dir.join("agent.log"),
        };
        let mut agent = process::spawn_agent(&plan, cpus)?;
        setup::wait_for_agent(&mut agent, &socket).await?;
        self.agent = Some(agent);
        Ok(())
    }

    /// The broker's and the agent's pids, where known.
    fn server_pids(&self) -> Vec<u32> {
        let agent = self.agent.as_ref().and_then(ChildProcess::pid);
        self.pid.into_iter().chain(agent).collect()
    }

    fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// The broker's VmRSS in KiB, if its pid is known.
    fn rss(&self, state: &str) -> Result<Option<u64>, BenchError> {
        let Some(pid) = self.pid else {
            return Ok(None);
        };
        let kib = process::rss_kib(pid).map_err(BenchError::Local)?;
        progress(&format!(
            "broker RSS {state}: {:.1} MiB",
            kib as f64 / 1024.0
        ));
        Ok(Some(kib))
    }

    /// One path, closed loop.
    async fn full_load(
        &self,
        path: PathKind,
        options: &Options,
        fixture: &Fixture,
        phases: Phases,
        report: &Report,
    ) -> Result<PathResult, BenchError> {
        progress(&format!(
            "{path}: {} in flight, {} warm-up + {} measured",
            options.concurrency,
            humantime::format_duration(phases.warmup),
            humantime::format_duration(phases.measure)
        ));
        let agent_socket = self.agent.as_ref().map(|_| self.agent_socket());
        let (mut outcome, cpu, processes) = if options.load_processes > 1 {
            let spread = worker::Spread {
                dir: &self.dir,
                broker: self.address(),
                fixture,
                agent_socket: agent_socket.as_deref(),
            };
            let workers = worker::Workers::start(
                &spread,
                path,
                options.load_processes,
                options.concurrency,
                options.connections,
                phases,
            )
            .await?;
            let mut load_pids = workers.pids();
            load_pids.push(std::process::id());
            let (outcome, cpu) = tokio::join!(
                workers.run(phases),
                cpu_during(self.server_pids(), load_pids, phases),
            );
            let (outcome, reported) = outcome?;
            (outcome, cpu, reported)
        } else {
            let callers = setup::callers(
                path,
                self.address(),
                fixture,
                options.connections,
                agent_socket.as_deref(),
            )
            .await?;
            let (outcome, cpu) = tokio::join!(
                load::closed_loop(&callers, options.concurrency, phases),
                cpu_during(self.server_pids(), vec![std::process::id()], phases),
            );
            (outcome, cpu, 1)
        };
        let mut result = path_result(path, &mut outcome, report.raw_limits.as_ref());
        (result.server_cpu_percent, result.load_cpu_percent) = (cpu.server, cpu.load);
        result.limited_by = report::limited_by(cpu.server, cpu.load, load_cores());
        result.load_processes = processes;
        progress(&summary(
            path,
            result.rate_per_s,
            result.latency.as_ref(),
            result.errors,
        ));
        Ok(result)
    }

    async fn half_loads(
        &self,
        options: &Options,
        fixture: &Fixture,
        phases: Phases,
        report: &mut Report,
    ) -> Result<(), BenchError> {
        let mut peaks: Vec<(PathKind, f64)> = report
            .paths
            .iter()
            .filter(|r| matches!(r.path, PathKind::Mint | PathKind::Validate))
            .filter(|r| r.requests_per_s > 0.0)
            .map(|r| (r.path, r.requests_per_s))
            .collect();
        // The control: the floor at mint's half rate shows what the transport and the load
        // add to every latency at that rate.
        let floor_measured = report.paths.iter().any(|r| r.path == PathKind::Floor);
        if let Some(&(_, mint)) = peaks.iter().find(|(p, _)| *p == PathKind::Mint)
            && floor_measured
        {
            peaks.insert(0, (PathKind::Floor, mint));
        }
        for (path, peak) in peaks {
            let rate = peak / 2.0;
            progress(&format!("{path}: open loop at {rate:.0}/s (half the peak)"));
            let callers =
                setup::callers(path, self.address(), fixture, options.connections, None).await?;
            let in_flight = (options.concurrency * 4).max(256);
            let (outcome, cpu) = tokio::join!(
                load::open_loop(&callers, rate, in_flight, phases),
                cpu_during(self.server_pids(), vec![std::process::id()], phases),
            );
            let mut result = half_load_result(path, rate, outcome);
            (result.server_cpu_percent, result.load_cpu_percent) = (cpu.server, cpu.load);
            result.limited_by = report::limited_by(cpu.server, cpu.load, load_cores());
            progress(&summary(
                path,
                result.achieved_per_s,
                result.latency.as_ref(),
                result.errors,
            ));
            report.half_load.push(result);
        }
        Ok(())
    }

    /// Loads entries and revocations, reading the RSS after each.
    async fn loaded_memory(
        &mut self,
        load: MemoryLoad,
        options: &Options,
        prefix: &str,
    ) -> Result<Option<LoadedMemory>, BenchError> {
        progress(&format!(
            "memory: loading {} entries and {} revocations",
            load.entries, load.revocations
        ));
        // The agent's work is done; it would only add its own churn to the broker's.
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
        let entries_took = match (&load.seeder, load.entries_via_admin) {
            (Some(seeder), false) => {
                self.seed_entries(seeder, load.entries, prefix, options)
                    .await?
            }
            _ => memory::load_entries(&self.admins(4).await?, prefix, load.entries).await?,
        };
        let with_entries = self.rss("with entries")?;
        let revocations_took =
            memory::load_revocations(&self.admins(4).await?, load.revocations).await?;
        // Let the broker's background work (usage flush, CRL) settle before reading.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(kib) = self.rss("loaded")? else {
            return Ok(None);
        };
        let first_sync = self.first_sync_memory().await?;
        Ok(Some(LoadedMemory {
            entries: load.entries,
            revocations: load.revocations,
            entries_via_admin: load.entries_via_admin || load.seeder.is_none(),
            load_seconds: (entries_took + revocations_took).as_secs_f64(),
            with_entries_mib: with_entries.map(|kib| kib as f64 / 1024.0),
            rss: MemoryFigure::new(kib, report::LOADED_RSS_TARGET_MIB),
            first_sync,
        }))
    }

    /// The broker's peak RSS while a subscriber takes the first revocation sync (the peak
    /// is started over just before), and its RSS after.
    async fn first_sync_memory(&self) -> Result<Option<FirstSync>, BenchError> {
        let Some(pid) = self.pid else {
            return Ok(None);
        };
        progress("memory: a subscriber takes the first revocation sync");
        process::reset_peak_rss(pid).map_err(BenchError::Local)?;
        let broker = setup::broker_clients(self.address(), None, 1).await?;
        let Some(broker) = broker.into_iter().next() else {
            return Ok(None);
        };
        let (revocations, took) = memory::first_sync(broker).await?;
        let peak = process::peak_rss_kib(pid).map_err(BenchError::Local)?;
        let after = process::rss_kib(pid).map_err(BenchError::Local)?;
        Ok(Some(FirstSync {
            revocations,
            seconds: took.as_secs_f64(),
            peak: MemoryFigure::new(peak, report::LOADED_RSS_TARGET_MIB),
            after_mib: after as f64 / 1024.0,
        }))
    }

    async fn admins(&self, count: usize) -> Result<Vec<AdminClient<Channel>>, BenchError> {
        let mut admins = Vec::with_capacity(count);
        for _ in 0..count {
            admins.push(self.admin().await?);
        }
        Ok(admins)
    }

    /// Stops the broker, writes `count` entries into its store, and starts it again.
    async fn seed_entries(
        &mut self,
        seeder: &EntrySeeder,
        count: usize,
        prefix: &str,
        options: &Options,
    ) -> Result<Duration, BenchError> {
        let trust_domain = self
            .admin()
            .await?
            .server_status(mayfly_sdk::proto::v1::ServerStatusRequest {})
            .await
            .map_err(|s| BenchError::setup("ask the server's status", &s))?
            .into_inner()
            .trust_domain;
        let Some(broker) = self.broker.take() else {
            return Err(BenchError::Usage(
                "--memory needs the broker bench starts (not --existing)".into(),
            ));
        };
        progress("memory: stopping the broker to write entries into its store");
        broker.stop_gracefully().await;
        let store = mayfly_sdk::data_dir::DataDir::new(&self.data_dir).store();
        let took = memory::seed_entries(seeder, &store, &trust_domain, prefix, count).await?;
        progress("memory: restarting the broker");
        let (child, url) = process::spawn_broker(
            &self.data_dir,
            &self.dir.join("broker-restarted.log"),
            options.server_cpus.as_deref(),
        )
        .await?;
        self.pid = child.pid();
        self.url = url;
        self.broker = Some(child);
        Ok(took)
    }

    /// Stops the agent and the broker; on a broker that outlives the run, deletes the
    /// entries setup made.
    async fn stop(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
        if let Some(fixture) = self.cleanup.take()
            && let Ok(mut admin) = self.admin().await
        {
            fixture.delete_entries(&mut admin).await;
        }
        if let Some(broker) = self.broker.take() {
            broker.stop().await;
        }
    }
}

/// The share of one core the server side and this process used in a measured window,
/// percent.
#[derive(Debug, Clone, Copy, Default)]
struct CpuShare {
    server: Option<f64>,
    load: Option<f64>,
}

/// Samples the CPU time of `server_pids` and of `load_pids` (this process, and its load
/// workers) over the measured window of `phases` (started together with the load).
async fn cpu_during(server_pids: Vec<u32>, load_pids: Vec<u32>, phases: Phases) -> CpuShare {
    let sample = |pids: &[u32]| -> Option<Duration> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&pid| process::cpu_time(pid).ok()).sum()
    };
    tokio::time::sleep(phases.warmup).await;
    let started = tokio::time::Instant::now();
    let before = (sample(&server_pids), sample(&load_pids));
    tokio::time::sleep(phases.measure).await;
    let after = (sample(&server_pids), sample(&load_pids));
    let window = started.elapsed().as_secs_f64();
    let percent = |before: Option<Duration>, after: Option<Duration>| {
        let used = after?.checked_sub(before?)?;
        (window > 0.0).then(|| used.as_secs_f64() / window * 100.0)
    };
    CpuShare {
        server: percent(before.0, after.0),
        load: percent(before.1, after.1),
    }
}

fn path_result(path: PathKind, outcome: &mut Outcome, limits: Option<&Measured>) -> PathResult {
    let rate_per_s = outcome.items_per_s();
    PathResult {
        path,
        rpc: path.rpc(),
        rate_per_s,
        requests_per_s: outcome.requests_per_s(),
        requests: outcome.requests,
        errors: outcome.errors,
        first_error: outcome.first_error.take(),
        latency: Percentiles::of(&mut outcome.latencies),
        verdict: limits.and_then(|m| report::judge_rate(path, rate_per_s, &m.limits)),
        server_cpu_percent: None,
        load_cpu_percent: None,
        limited_by: None,
        transport: None,
        load_processes: 1,
    }
}

fn half_load_result(path: PathKind, rate: f64, mut outcome: Outcome) -> HalfLoadResult {
    let latency = Percentiles::of(&mut outcome.latencies);
    HalfLoadResult {
        path,
        offered_per_s: rate,
        achieved_per_s: outcome.requests_per_s(),
        errors: outcome.errors,
        not_sent: outcome.not_sent,
        met: report::judge_p99(latency.as_ref()),
        latency,
        target_p99_ms: report::HALF_LOAD_P99_TARGET_MS,
        server_cpu_percent: None,
        load_cpu_percent: None,
        limited_by: None,
    }
}

fn summary(path: PathKind, rate: f64, latency: Option<&Percentiles>, errors: u64) -> String {
    let latency = latency.map_or("no latency".into(), |l| {
        format!("p50 {:.2} ms, p99 {:.2} ms", l.p50_ms, l.p99_ms)
    });
    format!(
        "{path}: {}/s, {latency}, {errors} errors",
        report::thousands(rate)
    )
}

/// How many cores this process (the load) may run on: its CPU affinity, as `taskset`
/// left it.
fn load_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

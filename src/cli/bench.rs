//! `mayfly bench`: the load generator (see [`crate::bench`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{DEFAULT_DATA_DIR, GlobalArgs, exit, output};
use mayfly_bench::{BenchError, BrokerTarget, MemoryLoad, Options, PathKind, SeedRequest};
use mayfly_sdk::client::BUNDLE_FILE;

pub(super) const BENCH_EXAMPLES: &str = "\
Examples:
  mayfly bench                         # every path, 10 s each, own broker
  mayfly bench --server-cpus 0 --load-cpus 1   # clean figures (2+ cores)
  mayfly bench --duration 2 --warmup 1 --paths mint,validate
  mayfly bench --memory                # + RSS, 100k entries + 1M revocations
  mayfly bench --load-cpus 1-3 --load-processes 3   # load in 3 processes
  mayfly bench --json > bench.json
  mayfly bench --existing --server https://127.0.0.1:7443 \\
      --data-dir ./mayfly-data --server-pid \"$(pidof mayfly)\"

Starts its own broker (and, for the workload path, an agent) in a temporary
directory, measures `openssl speed ecdsap256` on the broker's CPU, and prints
each path's throughput, p50/p99/p99.9 latency and its ratio to the raw ES256
limit. Progress goes to standard error. Pinning needs `taskset` and 2+ cores.";

/// Arguments of `mayfly bench`. With `--existing`, the global `--server`, `--bundle` and
/// `--data-dir` name the broker to measure.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The paths to measure, comma-separated: floor (an RPC that does nothing: the
    /// transport alone; with it, every path is also shown as a fraction of what the floor
    /// and its signature work allow), mint (every token signed), mint-cached (the
    /// server-side JWT-SVID cache), batch, x509, validate, workload.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "floor,mint,mint-cached,batch,x509,validate,workload",
        value_parser = parse_paths
    )]
    paths: PathList,
    /// How long each path is measured.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// How long each path runs before it is measured.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Connections they share (HTTP/2; Unix socket connections for the workload path).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    connections: u16,
    /// JWT-SVIDs per BatchMintJwtSvids call (entries registered under the bench's agent).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch_size: u16,
    /// Pin the broker, the agent and openssl speed to these CPUs (taskset -c LIST).
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<String>,
    /// Pin this process (the load) to these CPUs: it re-runs itself under taskset.
    #[arg(long, value_name = "LIST")]
    load_cpus: Option<String>,
    /// Seconds per operation for openssl speed (0: skip it, and the ratios).
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    openssl_seconds: u32,
    /// Skip the runs at 50 % of the peak rate (p99 latency of mint and validate).
    #[arg(long)]
    no_half_load: bool,
    /// Also read the broker's memory with many entries (written into its store, then
    /// restarted) and jti revocations (through the admin API); takes minutes.
    #[arg(long)]
    memory: bool,
    /// Entries --memory creates.
    #[arg(long, value_name = "N", default_value_t = 100_000, requires = "memory")]
    memory_entries: usize,
    /// jti revocations --memory makes.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        requires = "memory"
    )]
    memory_revocations: usize,
    /// Create --memory's entries through the admin API instead of writing them into the
    /// stopped broker's store (slower: a commit and an audit record each).
    #[arg(long, requires = "memory")]
    memory_entries_via_admin: bool,
    /// Measure the running broker named by --server, --bundle and --data-dir instead of
    /// starting one (its entries are deleted at the end; --memory is refused).
    #[arg(long, conflicts_with = "memory")]
    existing: bool,
    /// With --existing: the broker's pid, to report its memory.
    #[arg(long, value_name = "PID", requires = "existing")]
    server_pid: Option<u32>,
    /// Spread the peak (closed-loop) load over N processes on the --load-cpus, each with
    /// its share of --concurrency and --connections, for when one process is the limit;
    /// the half-load runs use one.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    load_processes: u16,
    /// Run as one of those processes, from the plan in FILE (internal).
    #[arg(long, value_name = "FILE", hide = true)]
    load_worker: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// The `--paths` list, in run order.
#[derive(Debug, Clone)]
struct PathList(Vec<PathKind>);

fn parse_paths(text: &str) -> Result<PathList, String> {
    PathKind::parse_list(text).map(PathList)
}

/// A duration such as `10s` or `500ms`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Duration::from_secs_f64(seconds),
        _ => humantime::parse_duration(text)
            .map_err(|e| format!("{e}; expected a duration such as 10s or 500ms"))?,
    };
    if duration.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    Ok(duration)
}

impl BenchArgs {
    fn options(&self, global: &GlobalArgs) -> Options {
        let target = if self.existing {
            let data_dir = global
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            BrokerTarget::Existing {
                server: global.server.clone(),
                bundle: global
                    .bundle
                    .clone()
                    .unwrap_or_else(|| data_dir.join(BUNDLE_FILE)),
                data_dir,
                pid: self.server_pid,
            }
        } else {
            BrokerTarget::Spawn
        };
        Options {
            target,
            paths: self.paths.0.clone(),
            duration: self.duration,
            warmup: self.warmup,
            concurrency: self.concurrency.into(),
            connections: self.connections.into(),
            batch_size: self.batch_size.into(),
            server_cpus: self.server_cpus.clone(),
            load_cpus: self.load_cpus.clone(),
            openssl_seconds: self.openssl_seconds,
            half_load: !self.no_half_load,
            load_processes: self.load_processes.into(),
            memory: self.memory.then(|| MemoryLoad {
                entries: self.memory_entries,
                revocations: self.memory_revocations,
                entries_via_admin: self.memory_entries_via_admin,
                seeder: Some(std::sync::Arc::new(|request| {
                    Box::pin(seed_entries(request))
                })),
            }),
        }
    }
}

/// Runs `mayfly bench`: 0 when every path answered, 1 when one never did or the run
/// failed, 130 on Ctrl-C (after stopping the broker and removing its files).
pub(super) async fn run(global: &GlobalArgs, args: BenchArgs) -> ExitCode {
    if let Some(plan) = &args.load_worker {
        return match mayfly_bench::load_worker(plan).await {
            Ok(report) => match output::stdout(&report) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    output::stderr_line(&format!("error: {error}"));
                    ExitCode::from(exit::FAILED)
                }
            },
            Err(error) => failed(&error),
        };
    }
    let options = args.options(global);
    let report = tokio::select! {
        result = mayfly_bench::run(options) => result,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the run kills the children and removes the temporary directory.
            output::stderr_line("bench: interrupted; stopped the broker and removed its files");
            return ExitCode::from(130);
        }
    };
    let report = match report {
        Ok(report) => report,
        Err(error) => return failed(&error),
    };
    let printed = if args.json {
        output::json(&report)
    } else {
        output::stdout(&report.render())
    };
    if let Err(error) = printed {
        output::stderr_line(&format!("error: {error}"));
        return ExitCode::from(exit::FAILED);
    }
    if report.paths.iter().any(|p| p.requests == 0) {
        output::stderr_line("error: a path had no successful request (see its first error)");
        return ExitCode::from(exit::FAILED);
    }
    ExitCode::SUCCESS
}

fn failed(error: &BenchError) -> ExitCode {
    output::stderr_line(&format!("error: {}", output::clean(&error.to_string())));
    ExitCode::from(exit_code(error))
}

/// 64 for a bad option, 69 when the broker cannot be reached, 1 otherwise.
fn exit_code(error: &BenchError) -> u8 {
    match error {
        BenchError::Usage(_) => exit::USAGE,
        BenchError::Unreachable(_) => exit::UNAVAILABLE,
        _ => exit::FAILED,
    }
}

/// Writes the memory load's entries into the stopped broker's embedded store, with the
/// checks `CreateEntry` makes (the load generator does not link the store).
async fn seed_entries(request: SeedRequest) -> Result<(), String> {
    use mayfly::store::Store as _;
    let trust_domain = mayfly_sdk::TrustDomain::new(&request.trust_domain)
        .map_err(|e| format!("trust domain: {e}"))?;
    let store = mayfly::store::EmbeddedStore::open(&request.store)
        .map_err(|e| format!("open the store: {e}"))?;
    let ttl = mayfly::policy::TtlPolicy::default();
    let now = mayfly_sdk::clock::now_unix();
    for spec in request.specs {
        let entry = mayfly::policy::EntrySpec {
            spiffe_id: spec.spiffe_id,
            selectors: spec.selectors.map(|l| l.values),
            audiences: spec.audiences.map(|l| l.values),
            owner: spec.owner,
            purpose: spec.purpose,
            environment: spec.environment,
            data_class: spec.data_class,
            ..mayfly::policy::EntrySpec::default()
        }
        .create(&trust_domain, &ttl, now)
        .map_err(|e| format!("build a load entry: {e}"))?;
        store
            .create_entry(&entry)
            .await
            .map_err(|e| format!("write a load entry: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Command};
    use super::*;

    fn bench(args: &[&str]) -> Result<(BenchArgs, GlobalArgs), clap::Error> {
        let cli = Cli::try_parse_from([&["mayfly", "bench"], args].concat())?;
        match cli.command {
            Command::Bench(bench) => Ok((bench, cli.global)),
            _ => unreachable!("parsed as bench"),
        }
    }

    #[test]
    fn defaults_measure_every_path_with_a_spawned_broker() {
        let (args, global) = bench(&[]).unwrap();
        let options = args.options(&global);
        assert_eq!(options.paths, PathKind::ALL);
        assert_eq!(options.duration, Duration::from_secs(10));
        assert_eq!(options.warmup, Duration::from_secs(2));
        assert_eq!((options.concurrency, options.connections), (64, 4));
        assert!(matches!(options.target, BrokerTarget::Spawn));
        assert!(options.memory.is_none() && options.half_load);
    }

    #[test]
    fn flags_reach_the_options() {
        let (args, global) = bench(&[
            "--duration",
            "500ms",
            "--warmup",
            "1.5",
            "--paths",
            "validate,mint",
            "--load-cpus",
            "1",
            "--memory",
            "--memory-entries",
            "10",
            "--no-half-load",
        ])
        .unwrap();
        let options = args.options(&global);
        assert_eq!(options.duration, Duration::from_millis(500));
        assert_eq!(options.warmup, Duration::from_millis(1500));
        assert_eq!(options.paths, [PathKind::Mint, PathKind::Validate]);
        assert_eq!(options.load_cpus.as_deref(), Some("1"));
        let memory = options.memory.unwrap();
        assert_eq!(
            (memory.entries, memory.revocations, memory.entries_via_admin),
            (10, 1_000_000, false)
        );
        assert!(
            memory.seeder.is_some(),
            "the CLI writes entries into the store"
        );
        assert!(!options.half_load);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["--duration", "0s"][..],
            &["--duration", "soon"],
            &["--duration", "-1"],
            &["--paths", "mint,renew"],
            &["--concurrency", "0"],
            &["--batch-size", "257"],
            &["--existing", "--memory"],
            &["--server-pid", "1"],
        ] {
            assert!(bench(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn existing_broker_comes_from_the_global_flags() {
        let (args, global) = bench(&[
            "--existing",
            "--server",
            "https://127.0.0.1:9",
            "--data-dir",
            "/d",
            "--server-pid",
            "7",
        ])
        .unwrap();
        match args.options(&global).target {
            BrokerTarget::Existing {
                server,
                bundle,
                data_dir,
                pid,
            } => {
                assert_eq!(server, "https://127.0.0.1:9");
                assert_eq!(bundle, PathBuf::from("/d/bundle.pem"));
                assert_eq!(data_dir, PathBuf::from("/d"));
                assert_eq!(pid, Some(7));
            }
            BrokerTarget::Spawn => panic!("not the existing broker"),
        }
    }

    #[tokio::test]
    async fn memory_load_entries_pass_the_policy_checks_into_the_store() {
        use mayfly::store::Store as _;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.redb");
        let prefix = "spiffe://mayfly.internal/bench/Ab-9_x";
        let specs = [0, 1, 99_999]
            .into_iter()
            .map(|n| mayfly_bench::memory_load_entry(prefix, n))
            .collect();
        seed_entries(SeedRequest {
            store: store.clone(),
            trust_domain: "mayfly.internal".into(),
            specs,
        })
        .await
        .unwrap();
        let written = mayfly::store::EmbeddedStore::open(&store)
            .unwrap()
            .list_entries()
            .await
            .unwrap();
        let mut ids: Vec<String> = written.iter().map(|e| e.spiffe_id.to_string()).collect();
        ids.sort();
        assert_eq!(
            ids,
            [0, 1, 99_999]
                .map(|n| format!("{prefix}/load/e-{n}"))
                .to_vec()
        );
        assert!(
            written
                .iter()
                .all(|e| e.selectors.len() == 2 && e.audiences.len() == 1)
        );
        // A spec in another trust domain is refused: the checks do run.
        let refused = seed_entries(SeedRequest {
            store: dir.path().join("other.redb"),
            trust_domain: "example.org".into(),
            specs: vec![mayfly_bench::memory_load_entry(prefix, 1)],
        })
        .await;
        assert!(refused.is_err(), "{refused:?}");
    }
}

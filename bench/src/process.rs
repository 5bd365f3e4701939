//! The processes a load test runs: the broker under test and the agent (children of this
//! one, optionally pinned with `taskset`), this process itself re-executed under `taskset`,
//! and their resident memory as `/proc/<pid>/status` reports it.
//!
//! Children are killed when their handle is dropped, so an early return or Ctrl-C leaves
//! nothing running.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::error::BenchError;

/// Set in the environment of this process once it runs under `taskset`, so that it does
/// not re-execute itself again.
const PINNED_ENV: &str = "MAYFLY_BENCH_PINNED";
/// How long the broker may take to print its banner (it makes its CA on first start).
const BANNER_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a child's log quoted when it fails.
const LOG_TAIL_LINES: usize = 15;

/// Whether this process was re-executed under `taskset` by [`pin_this_process`].
pub(crate) fn already_pinned() -> bool {
    std::env::var_os(PINNED_ENV).is_some()
}

/// Why `taskset` cannot pin.
#[derive(Debug)]
pub(crate) enum TasksetProblem {
    /// It is not installed (or cannot be run): continue unpinned.
    Missing(String),
    /// It refuses the CPU list: a usage error.
    Refused(String),
}

/// Checks that `taskset -c <cpus>` works here by pinning `true`.
pub(crate) async fn check_taskset(cpus: &str) -> Result<(), TasksetProblem> {
    let output = Command::new("taskset")
        .args(["-c", cpus, "true"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| TasksetProblem::Missing(format!("cannot run taskset: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(TasksetProblem::Refused(format!(
        "taskset -c {cpus}: {}",
        stderr.lines().last().unwrap_or("refused")
    )))
}

/// Replaces this process with itself under `taskset -c <cpus>`, same arguments (no unsafe
/// code: `exec` from the standard library). Returns only if that fails.
pub(crate) fn pin_this_process(cpus: &str) -> BenchError {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return BenchError::Local(format!("cannot find this executable: {e}")),
    };
    let error = std::process::Command::new("taskset")
        .args(["-c", cpus])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(PINNED_ENV, cpus)
        .exec();
    BenchError::Process {
        what: "taskset",
        reason: format!("cannot re-execute under taskset: {error}"),
    }
}

/// A child process, killed when dropped; its standard error goes to a log file.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Its pid, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// An error saying it stopped or failed, with the end of its log.
    pub(crate) fn failure(&mut self, problem: &str) -> BenchError {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" (it exited: {status})"),
            _ => String::new(),
        };
        BenchError::Process {
            what: self.what,
            reason: format!("{problem}{status}{}", log_tail(&self.log)),
        }
    }

    /// Whether it has exited.
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks it to stop (SIGTERM, as Ctrl-C would) and waits up to 15 s for it to drain,
    /// then kills it.
    pub(crate) async fn stop_gracefully(mut self) {
        if let Some(pid) = self.child.id() {
            let term = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .status()
                .await;
            if term.is_ok_and(|status| status.success())
                && tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                    .await
                    .is_ok()
            {
                return;
            }
        }
        self.stop().await;
    }

    /// Kills it and waits for it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// The last lines of a log file, indented, or nothing.
fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        return String::new();
    }
    format!(
        "; its log ({}) ends:\n    {}",
        path.display(),
        tail.join("\n    ")
    )
}

/// `mayfly <args>`, under `taskset -c <cpus>` when given, with no `MAYFLY_*` variable
/// of ours leaking into it (a config file or store URL would change what is measured),
/// logging warnings only, standard error to `log`.
fn mayfly_command(cpus: Option<&str>, log: &Path) -> Result<Command, BenchError> {
    let exe = std::env::current_exe()
        .map_err(|e| BenchError::Local(format!("cannot find this executable: {e}")))?;
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MAYFLY_") {
            command.env_remove(name);
        }
    }
    let log_file = std::fs::File::create(log)
        .map_err(|e| BenchError::Local(format!("cannot create {}: {e}", log.display())))?;
    command
        .env("MAYFLY_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true);
    Ok(command)
}

/// Starts `mayfly server` with its data in `data_dir` on ephemeral loopback ports, waits
/// for its banner, and returns it with its broker URL.
pub(crate) async fn spawn_broker(
    data_dir: &Path,
    log: &Path,
    cpus: Option<&str>,
) -> Result<(ChildProcess, String), BenchError> {
    let mut command = mayfly_command(cpus, log)?;
    command
        .args([OsString::from("--data-dir"), data_dir.into()])
        .args([
            "server",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped());
    let child = command.spawn().map_err(|e| BenchError::Process {
        what: "broker",
        reason: format!("cannot start: {e}"),
    })?;
    let mut broker = ChildProcess {
        what: "broker",
        child,
        log: log.to_owned(),
    };
    let Some(stdout) = broker.child.stdout.take() else {
        return Err(broker.failure("its standard output is not readable"));
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    let read_banner = async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Stop with") {
                return true;
            }
        }
        false
    };
    let complete = tokio::time::timeout(BANNER_TIMEOUT, read_banner).await;
    if complete != Ok(true) {
        return Err(broker.failure("did not print its banner"));
    }
    let Some(url) = broker_url(&banner) else {
        return Err(broker.failure("its banner names no https:// broker address"));
    };
    // Nothing more is expected on standard output, but a full pipe would block the broker.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((broker, url))
}

/// The broker URL in `mayfly server`'s banner:
/// `  broker (gRPC)    https://127.0.0.1:7443   (TLS; ...)`.
pub(crate) fn broker_url(banner: &str) -> Option<String> {
    banner
        .lines()
        .find(|line| line.contains("broker (gRPC)"))?
        .split_whitespace()
        .find(|word| word.starts_with("https://") && word.len() > "https://".len())
        .map(str::to_owned)
}

/// Where a `mayfly agent` lives and what it attests with.
#[derive(Debug)]
pub(crate) struct AgentPlan<'a> {
    /// The agent's data directory.
    pub(crate) data_dir: &'a Path,
    /// The Workload API socket it serves.
    pub(crate) socket: &'a Path,
    /// A file holding its join token.
    pub(crate) token_file: &'a Path,
    /// The broker.
    pub(crate) server: &'a str,
    /// The broker's root CA.
    pub(crate) bundle: &'a Path,
    /// Its log.
    pub(crate) log: &'a Path,
}

/// Starts `mayfly agent`; the caller waits until its Workload API answers.
pub(crate) fn spawn_agent(
    plan: &AgentPlan<'_>,
    cpus: Option<&str>,
) -> Result<ChildProcess, BenchError> {
    let mut command = mayfly_command(cpus, plan.log)?;
    command
        .args([OsString::from("--data-dir"), plan.data_dir.into()])
        .args(["--server", plan.server])
        .args([OsString::from("--bundle"), plan.bundle.into()])
        .args([
            OsString::from("agent"),
            "--socket".into(),
            plan.socket.into(),
        ])
        .args([OsString::from("--join-token-file"), plan.token_file.into()])
        .args(["--sync-interval", "1s"])
        .stdout(Stdio::null());
    let child = command.spawn().map_err(|e| BenchError::Process {
        what: "agent",
        reason: format!("cannot start: {e}"),
    })?;
    Ok(ChildProcess {
        what: "agent",
        child,
        log: plan.log.to_owned(),
    })
}

/// The resident set size of process `pid`, KiB (`VmRSS` in `/proc/<pid>/status`).
///
/// # Errors
/// A message when the file cannot be read (no such process, not Linux) or has no VmRSS.
pub(crate) fn rss_kib(pid: u32) -> Result<u64, String> {
    status_field_kib(pid, "VmRSS")
}

/// The `field` line of `/proc/<pid>/status`, KiB.
fn status_field_kib(pid: u32, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status_kib(&status, &format!("{field}:")).ok_or_else(|| format!("{path} has no {field} line"))
}

/// The `VmRSS:  12345 kB` value of a `/proc/<pid>/status` text, KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status_kib(status, "VmRSS:")
}

/// The value of the `/proc/<pid>/status` line that starts with `field`, KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim();
    let number = value.strip_suffix("kB")?.trim();
    number.parse().ok()
}

/// The process's peak RSS (VmHWM) since it started or since [`reset_peak_rss`], KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    status_field_kib(pid, "VmHWM")
}

/// Starts the process's peak RSS over from its RSS now (`5` to `/proc/<pid>/clear_refs`).
pub(crate) fn reset_peak_rss(pid: u32) -> Result<(), String> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").map_err(|e| format!("cannot write {path}: {e}"))
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux
/// architecture, a fixed part of the kernel's user-space ABI.
const USER_HZ: u64 = 100;

/// The CPU time (user + system, all threads) process `pid` has used so far.
///
/// # Errors
/// A message when `/proc/<pid>/stat` cannot be read or parsed.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| format!("{path} does not parse"))?;
    Ok(Duration::from_millis(ticks.saturating_mul(1000) / USER_HZ))
}

/// `utime + stime` (fields 14 and 15, clock ticks) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may contain spaces and parentheses, so
/// fields are counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tmayfly\nVmPeak:\t  900000 kB\nVmRSS:\t   23456 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(23_456));
        assert_eq!(parse_vm_rss("Name:\tmayfly\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t lots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t 12 MB\n"), None);
    }

    #[test]
    fn our_own_rss_is_readable() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 100, "{kib} KiB");
        assert!(rss_kib(u32::MAX).is_err());
        // The peak: reset, it is at least the RSS now; then 64 MiB touched raise it.
        reset_peak_rss(std::process::id()).unwrap();
        let before = peak_rss_kib(std::process::id()).unwrap();
        assert!(before >= kib / 2, "{before} KiB");
        let touched = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = peak_rss_kib(std::process::id()).unwrap();
        assert!(after >= before + (60 << 10), "{before} -> {after} KiB");
        drop(touched);
        assert!(peak_rss_kib(u32::MAX).is_err());
    }

    #[test]
    fn cpu_ticks_are_user_plus_system() {
        let stat = "18068 (my (odd) name) R 18064 18064 27461 0 -1 4194304 120 0 0 0 \
                    250 31 0 0 20 0 1 0 358324 3133440 361";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        assert_eq!(parse_cpu_ticks("18068 (cat) R 1 2 3"), None);
        assert_eq!(
            parse_cpu_ticks("no parenthesis 1 2 3 4 5 6 7 8 9 10 11 12 13"),
            None
        );
        assert!(cpu_time(std::process::id()).is_ok());
        assert!(cpu_time(u32::MAX).is_err());
    }

    #[test]
    fn broker_url_comes_from_the_banner() {
        let banner = "Mayfly 0.1.0 broker is running.\n\n  trust domain     mayfly.internal\n  \
                      broker (gRPC)    https://127.0.0.1:40123   (TLS; mTLS for renew and mint)\n";
        assert_eq!(
            broker_url(banner).as_deref(),
            Some("https://127.0.0.1:40123")
        );
        assert_eq!(broker_url("  broker (gRPC)    http://127.0.0.1:1\n"), None);
        assert_eq!(broker_url("  HTTP   https://127.0.0.1:1\n"), None);
        assert_eq!(broker_url(""), None);
    }
}

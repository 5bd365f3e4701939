//! Telling a program that its files changed: run a command, signal a
//! process, or both, after the sink wrote a new X509-SVID or bundle.
//!
//! Neither goes through a shell: the command is a program and its
//! arguments, and signals are sent by running `kill -s SIG -- PID`, so the
//! agent needs no FFI. Only a few signals a program may reasonably take as
//! "reload" or "restart" are allowed, and only a positive pid: `kill` would
//! take 0 or a negative number as a whole process group or every process.
//!
//! A failure is logged and otherwise ignored: the files are written either
//! way, and the agent goes on.

use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::AgentError;

/// How long the on-renew command may run before it is killed, by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `kill` may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Environment variables the command does not inherit: a join token given
/// to the agent this way would otherwise reach every on-renew command.
const WITHHELD_ENVIRONMENT: [&str; 1] = ["MAYFLY_JOIN_TOKEN"];
/// The longest pause between two checks of whether the command ended.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(200);
/// More than any pid file holds.
const MAX_PID_FILE: u64 = 64;

/// A program and its arguments, run without a shell after each new
/// X509-SVID or bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewCommand {
    program: String,
    args: Vec<String>,
}

impl RenewCommand {
    /// The first word is the program (looked up in `PATH` unless it has a
    /// `/`), the others its arguments, each passed as it is.
    ///
    /// # Errors
    /// [`AgentError::Config`] if there is no word, or the program is empty.
    pub fn new(words: Vec<String>) -> Result<Self, AgentError> {
        let mut words = words.into_iter();
        match words.next() {
            Some(program) if !program.trim().is_empty() => Ok(RenewCommand {
                program,
                args: words.collect(),
            }),
            _ => Err(AgentError::Config {
                reason: "the on-renew command is empty; give a program to run".to_owned(),
            }),
        }
    }

    /// Splits `line` on whitespace: no quotes, variables or globs, since no
    /// shell is involved. Use [`new`](Self::new) for arguments with spaces.
    ///
    /// # Errors
    /// [`AgentError::Config`] if `line` is blank.
    pub fn split(line: &str) -> Result<Self, AgentError> {
        RenewCommand::new(line.split_whitespace().map(str::to_owned).collect())
    }

    /// The program.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Its arguments.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

impl fmt::Display for RenewCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// The signals the sink may send: the ones programs use for "reload" or
/// "stop", nothing that cannot be caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// SIGHUP, the usual "reload your configuration".
    Hup,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTERM, for a supervisor that restarts the program.
    Term,
    /// SIGINT.
    Int,
}

impl Signal {
    const ALL: [Signal; 5] = [
        Signal::Hup,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Term,
        Signal::Int,
    ];

    /// The name `kill -s` takes: `HUP`, `USR1` ….
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
            Signal::Term => "TERM",
            Signal::Int => "INT",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl FromStr for Signal {
    type Err = AgentError;

    /// `HUP`, `SIGHUP`, `hup` …; only the five allowed signals.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL
            .into_iter()
            .find(|signal| signal.name() == name)
            .ok_or_else(|| AgentError::Config {
                reason: format!(
                    "signal {text:?} is not allowed; use one of HUP, USR1, USR2, TERM, INT"
                ),
            })
    }
}

/// A process that may be signalled: a pid from 1 to `i32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId(u32);

impl ProcessId {
    /// Checks a pid.
    ///
    /// # Errors
    /// [`AgentError::Config`] for 0 (which `kill` takes as the agent's own
    /// process group) and anything above `i32::MAX` (negative to `kill`).
    pub fn new(pid: u32) -> Result<Self, AgentError> {
        if pid == 0 || i32::try_from(pid).is_err() {
            return Err(AgentError::Config {
                reason: format!("{pid} is not a process id to signal"),
            });
        }
        Ok(ProcessId(pid))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for ProcessId {
    type Err = AgentError;

    /// Decimal digits only (surrounding whitespace is ignored): no sign.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.trim();
        let bad = || AgentError::Config {
            reason: format!("{digits:?} is not a process id (decimal digits, above 0)"),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let pid = digits.parse::<u32>().map_err(|_| bad())?;
        ProcessId::new(pid)
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which process gets the signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalTarget {
    /// This pid.
    Pid(ProcessId),
    /// The pid written in this file, read again before every signal, so a
    /// restarted program is found. The file must belong to the agent's
    /// user or to root and be writable by nobody else: whoever can write
    /// it chooses which process the agent signals.
    PidFile(PathBuf),
}

/// A signal to send after each new X509-SVID or bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewSignal {
    /// Which signal.
    pub signal: Signal,
    /// To whom.
    pub target: SignalTarget,
}

/// Why a child process did not end well.
#[derive(Debug)]
enum RunError {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    TimedOut(Duration),
    Cancelled,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn(error) => write!(f, "cannot start it: {error}"),
            RunError::Wait(error) => write!(f, "cannot wait for it: {error}"),
            RunError::TimedOut(limit) => write!(f, "still running after {limit:?}; killed"),
            RunError::Cancelled => f.write_str("the agent is stopping; killed"),
        }
    }
}

/// Runs the command and sends the signal, as configured.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    command: Option<RenewCommand>,
    signal: Option<RenewSignal>,
    timeout: Duration,
    /// The agent's effective uid, the only owner besides root a pid file
    /// may have.
    agent_uid: u32,
}

impl Notifier {
    pub(crate) fn new(
        command: Option<RenewCommand>,
        signal: Option<RenewSignal>,
        timeout: Duration,
        agent_uid: u32,
    ) -> Self {
        Notifier {
            command,
            signal,
            timeout,
            agent_uid,
        }
    }

    /// The command first (so a program that is signalled sees what the
    /// command did), then the signal. Logs the outcome; never fails.
    pub(crate) async fn notify(&self, cancel: &CancellationToken) {
        if let Some(command) = &self.command {
            let mut process = Command::new(&command.program);
            process.args(&command.args);
            match run(process, self.timeout, cancel).await {
                Ok(status) if status.success() => {
                    tracing::info!(%command, "the on-renew command succeeded");
                }
                Ok(status) => tracing::warn!(%command, %status, "the on-renew command failed"),
                Err(error) => tracing::warn!(%command, %error, "the on-renew command failed"),
            }
        }
        if let Some(signal) = &self.signal {
            self.send(signal, cancel).await;
        }
    }

    async fn send(&self, renew: &RenewSignal, cancel: &CancellationToken) {
        let signal = renew.signal;
        let pid = match &renew.target {
            SignalTarget::Pid(pid) => *pid,
            SignalTarget::PidFile(path) => match read_pid_file(path, self.agent_uid) {
                Ok(pid) => pid,
                Err(reason) => {
                    tracing::warn!(%signal, pid_file = %path.display(), %reason, "cannot send the on-renew signal");
                    return;
                }
            },
        };
        let mut kill = Command::new("kill");
        kill.args(["-s", signal.name(), "--", &pid.to_string()]);
        match run(kill, KILL_TIMEOUT, cancel).await {
            Ok(status) if status.success() => tracing::info!(%signal, %pid, "on-renew signal sent"),
            Ok(status) => {
                tracing::warn!(%signal, %pid, %status, "`kill` could not send the on-renew signal")
            }
            Err(error) => {
                tracing::warn!(%signal, %pid, %error, "`kill` could not send the on-renew signal")
            }
        }
    }
}

/// Reads a pid file that only the agent's user (or root) can have
/// written; the checks are on the opened file, so the file checked is the
/// file read.
fn read_pid_file(path: &Path, agent_uid: u32) -> Result<ProcessId, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.uid() != agent_uid && metadata.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not by the agent's user or root; its owner could make the \
             agent signal any process",
            metadata.uid()
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(format!(
            "mode {:o} lets others write it, and so choose which process the agent signals",
            metadata.mode() & 0o7777
        ));
    }
    let mut text = String::new();
    file.take(MAX_PID_FILE)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    text.parse::<ProcessId>().map_err(|e| e.to_string())
}

/// Runs `command` (no standard input, output passed through) until it
/// ends, `limit` passes, or `cancel` fires; kills it in the latter cases.
async fn run(
    mut command: Command,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<ExitStatus, RunError> {
    command.stdin(Stdio::null());
    for name in WITHHELD_ENVIRONMENT {
        command.env_remove(name);
    }
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(error) => {
                kill_and_reap(child);
                return Err(RunError::Wait(error));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            kill_and_reap(child);
            return Err(RunError::TimedOut(limit));
        }
        tokio::select! {
            () = cancel.cancelled() => {
                kill_and_reap(child);
                return Err(RunError::Cancelled);
            }
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_POLL_PAUSE);
    }
}

/// SIGKILL, then reap the child off the async workers (a process in
/// uninterruptible sleep takes its time to die).
fn kill_and_reap(mut child: Child) {
    if let Err(error) = child.kill() {
        tracing::debug!(%error, "killing a child process");
    }
    drop(tokio::task::spawn_blocking(move || child.wait()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_on_whitespace_or_keep_their_words() {
        let split = RenewCommand::split("  nginx -s   reload ").unwrap();
        assert_eq!(split.program(), "nginx");
        assert_eq!(split.args(), ["-s", "reload"]);
        assert_eq!(split.to_string(), "nginx -s reload");
        let words = RenewCommand::new(vec!["cp".into(), "a b".into(), "c".into()]).unwrap();
        assert_eq!(words.args(), ["a b", "c"]);
        assert!(RenewCommand::split("   ").is_err());
        assert!(RenewCommand::new(Vec::new()).is_err());
        assert!(RenewCommand::new(vec![String::new(), "x".into()]).is_err());
    }

    #[test]
    fn only_the_allowed_signals_parse() {
        for (text, signal) in [
            ("HUP", Signal::Hup),
            ("SIGHUP", Signal::Hup),
            ("hup", Signal::Hup),
            ("usr1", Signal::Usr1),
            ("SIGUSR2", Signal::Usr2),
            ("TERM", Signal::Term),
            ("INT", Signal::Int),
        ] {
            assert_eq!(text.parse::<Signal>().unwrap(), signal, "{text}");
        }
        for bad in ["KILL", "SIGKILL", "9", "1", "STOP", "", "SIG", "HUPX"] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn process_ids_are_positive_and_fit_a_pid() {
        assert_eq!("42".parse::<ProcessId>().unwrap().get(), 42);
        assert_eq!(" 1\n".parse::<ProcessId>().unwrap().get(), 1);
        for bad in [
            "0",
            "-1",
            "+5",
            "",
            "1.5",
            "0x10",
            "2147483648",
            "99999999999",
        ] {
            assert!(bad.parse::<ProcessId>().is_err(), "{bad:?}");
        }
        assert!(ProcessId::new(i32::MAX as u32).is_ok());
        assert!(ProcessId::new(0).is_err());
    }

    #[test]
    fn pid_files_others_can_write_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("app.pid");
        std::fs::write(&path, "1234\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let owner = std::fs::metadata(&path).unwrap().uid();
        assert_eq!(read_pid_file(&path, owner).unwrap().get(), 1234);
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let refused = read_pid_file(&path, owner).unwrap_err();
            assert!(refused.contains("lets others write"), "{mode:o}: {refused}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if owner != 0 {
            let refused = read_pid_file(&path, owner + 1).unwrap_err();
            assert!(refused.contains("owned by uid"), "{refused}");
        }
        std::fs::write(&path, "0\n").unwrap();
        assert!(read_pid_file(&path, owner).is_err());
        assert!(read_pid_file(&tmp.path().join("missing.pid"), owner).is_err());
        assert!(read_pid_file(tmp.path(), owner).is_err());
    }

    #[tokio::test]
    async fn a_command_that_runs_too_long_is_killed() {
        let cancel = CancellationToken::new();
        let mut quick = Command::new("true");
        quick.arg("ignored");
        assert!(
            run(quick, Duration::from_secs(10), &cancel)
                .await
                .unwrap()
                .success()
        );
        let mut slow = Command::new("sleep");
        slow.arg("30");
        let started = std::time::Instant::now();
        let outcome = run(slow, Duration::from_millis(200), &cancel).await;
        assert!(matches!(outcome, Err(RunError::TimedOut(_))), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let missing = run(
            Command::new("/nonexistent/mayfly-test"),
            Duration::from_secs(1),
            &cancel,
        )
        .await;
        assert!(matches!(missing, Err(RunError::Spawn(_))), "{missing:?}");
    }

    #[tokio::test]
    async fn cancelling_kills_the_command() {
        let cancel = CancellationToken::new();
        let mut slow = Command::new("sleep");
        slow.arg("30");
        let stopper = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stopper.cancel();
        });
        let outcome = run(slow, Duration::from_secs(30), &cancel).await;
        assert!(matches!(outcome, Err(RunError::Cancelled)), "{outcome:?}");
    }
}

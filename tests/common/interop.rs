//! Workload API clients from other ecosystems, for tests/workload_interop.rs:
//! py-spiffe (Python, on grpcio's C core) in a virtualenv and @grpc/grpc-js
//! (Node) in a node_modules, both under `target/interop` (or
//! `MAYFLY_INTEROP_DIR`), installed by `tests/interop/setup.sh`.
//!
//! The first test that needs them runs the setup script (idempotent: it
//! returns at once when everything is installed and up to date). When it
//! fails (no python3, node or npm, no package registry), the tests are
//! skipped with a note on stderr, except under `CI=true`, where they fail:
//! CI must not pass by testing nothing.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// How long one client run may take before it is killed and the test fails.
/// Each does a handful of calls; this only bounds a hang.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);

/// The installed clients and the interpreters that run them.
#[derive(Debug)]
pub struct InteropClients {
    /// The virtualenv's `bin/python`: run through it, Python finds py-spiffe.
    pub python: PathBuf,
    /// The file that process executes (`/proc/<pid>/exe`), as the agent's
    /// `unix:path` selector sees it: the virtualenv's symlinks resolved.
    pub python_executable: PathBuf,
    /// The node binary, symlinks resolved: run and attested as this path.
    pub node: PathBuf,
    /// The `node_modules` with @grpc/grpc-js and @grpc/proto-loader.
    pub node_modules: PathBuf,
}

/// The repository root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the setup script installs the clients.
fn install_dir() -> PathBuf {
    std::env::var_os("MAYFLY_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target").join("interop"))
}

/// A client script under `tests/interop`.
pub fn script(relative: &str) -> PathBuf {
    repo().join("tests").join("interop").join(relative)
}

/// The Workload API's proto, which the Node client loads at run time.
pub fn workload_proto() -> PathBuf {
    repo()
        .join("proto")
        .join("spiffe")
        .join("workloadapi.proto")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// The clients, installed by the setup script on first use (once per test
/// binary), or `None` (the test returns early) when they cannot be
/// installed. Panics instead under `CI=true`.
pub fn clients_or_skip() -> Option<&'static InteropClients> {
    static CLIENTS: OnceLock<Result<InteropClients, String>> = OnceLock::new();
    match CLIENTS.get_or_init(install) {
        Ok(clients) => Some(clients),
        Err(why) if in_ci() => {
            panic!("{why}; CI=true, so the interop tests must run, not skip")
        }
        Err(why) => {
            // Straight to stderr: the harness captures `eprintln!`, and a
            // skip should be seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipping: {why} (set CI=true to make this a failure)"
            );
            None
        }
    }
}

fn install() -> Result<InteropClients, String> {
    let setup = script("setup.sh");
    let output = Command::new("bash")
        .arg(&setup)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run bash {}: {error}", setup.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}{}",
            setup.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    let dir = install_dir();
    let python = dir.join("venv").join("bin").join("python");
    let python_executable =
        std::fs::canonicalize(&python).map_err(|error| format!("{}: {error}", python.display()))?;
    Ok(InteropClients {
        python,
        python_executable,
        node: node_executable()?,
        node_modules: dir.join("node").join("node_modules"),
    })
}

/// The node binary the setup script used, as the file it executes.
fn node_executable() -> Result<PathBuf, String> {
    let node = std::env::var_os("MAYFLY_INTEROP_NODE").unwrap_or_else(|| "node".into());
    let output = Command::new(&node)
        .args(["-p", "process.execPath"])
        .output()
        .map_err(|error| format!("cannot run {}: {error}", node.to_string_lossy()))?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        return Err(format!(
            "{} -p process.execPath failed",
            node.to_string_lossy()
        ));
    }
    std::fs::canonicalize(&path).map_err(|error| format!("{path}: {error}"))
}

/// What one run of a client script gave.
#[derive(Debug)]
pub struct ClientRun {
    /// Whether it exited with status 0.
    pub success: bool,
    /// The JSON object it printed.
    pub json: serde_json::Value,
    /// Everything it said, for assertion messages.
    pub transcript: String,
}

impl InteropClients {
    /// Runs `tests/interop/python/<script>` with py-spiffe against the
    /// agent on `socket`.
    pub async fn run_python(&self, script_name: &str, args: &[&str], socket: &Path) -> ClientRun {
        // -I: no user site-packages, PYTHONPATH or script directory on the
        // path; -B: no __pycache__ in the repository.
        let mut command_line: Vec<OsString> = vec!["-I".into(), "-B".into()];
        command_line.push(script(&format!("python/{script_name}")).into());
        command_line.extend(args.iter().map(OsString::from));
        run(&self.python, &command_line, socket, &[]).await
    }

    /// Runs `tests/interop/node/<script>` with grpc-js against the agent on
    /// `socket`.
    pub async fn run_node(&self, script_name: &str, args: &[&str], socket: &Path) -> ClientRun {
        let mut command_line: Vec<OsString> = vec![script(&format!("node/{script_name}")).into()];
        command_line.extend(args.iter().map(OsString::from));
        let node_path = self.node_modules.clone().into_os_string();
        run(
            &self.node,
            &command_line,
            socket,
            &[("NODE_PATH", node_path)],
        )
        .await
    }
}

/// Runs `program` with `SPIFFE_ENDPOINT_SOCKET=unix://<socket>`, kills it
/// after [`CLIENT_TIMEOUT`], and parses the JSON object it printed last.
async fn run(
    program: &Path,
    args: &[OsString],
    socket: &Path,
    env: &[(&str, OsString)],
) -> ClientRun {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CLIENT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} ran past {CLIENT_TIMEOUT:?}", program.display()))
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let transcript = format!(
        "{} {args:?} exited with {}\n--- stdout\n{stdout}--- stderr\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON result on stdout:\n{transcript}"));
    ClientRun {
        success: output.status.success(),
        json,
        transcript,
    }
}

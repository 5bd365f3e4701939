//! `mayfly audit export` and `mayfly audit verify-export` with the real binary: a broker
//! started as a process in a fresh directory, a workload attested and minting (granted and
//! refused) through the command line, the root key pinned, exports made while the broker
//! runs and after it stopped, each checked as an auditor would with only the pinned key;
//! tampered exports exit 1 naming the seq.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
/// How long the test waits for the broker to sign a checkpoint (it does about once a
/// second while it appends).
const PATIENCE: Duration = Duration::from_secs(30);

/// `mayfly server` in a directory, on ephemeral ports.
struct ServerProcess {
    child: Child,
    url: String,
}

/// A test that fails half-way must not leave its broker running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts it in `dir` and waits for its banner.
    fn start(dir: &Path) -> ServerProcess {
        let mut child = Command::new(MAYFLY)
            .args([
                "server",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir)
            .env_remove("MAYFLY_DATA_DIR")
            .env("MAYFLY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (_, url) = common::server_banner(child.stdout.take().unwrap());
        ServerProcess { child, url }
    }

    /// SIGTERM; asserts a graceful exit (the log closed, its last checkpoint signed).
    fn stop(mut self) {
        // The banner comes before the SIGTERM handler is installed; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop: {status:?}");
    }
}

/// `mayfly <args>` in `cwd`, with `stdin` as its input.
fn mayfly_with(cwd: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(MAYFLY)
        .args(args)
        .current_dir(cwd)
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn mayfly(cwd: &Path, args: &[&str]) -> Output {
    mayfly_with(cwd, args, b"")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts exit 0; (stdout, stderr).
fn ok(output: &Output) -> (String, String) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    (text(&output.stdout), text(&output.stderr))
}

/// Asserts exit `code`; stderr.
fn fails(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(output).0).unwrap()
}

/// The complete lines of the audit log.
fn log_lines(cwd: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(cwd.join("mayfly-data/audit/audit.log")).unwrap();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end_matches('\n').to_owned())
        .collect()
}

fn field(line: &str, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap()[name].clone()
}

/// Waits until the broker's signed checkpoint covers record `seq`.
fn wait_until_signed(cwd: &Path, seq: u64) {
    let path = cwd.join("mayfly-data/audit/checkpoint.json");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let signed = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|checkpoint| checkpoint["seq"].as_u64())
            .unwrap_or(0);
        if signed >= seq {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "record {seq} not signed for within {PATIENCE:?} (signed through {signed})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A workload registered for audience `db`, attested with a join token (its SVID in
/// `cwd/svid`), that then mints three JWT-SVIDs and is refused one for `marketing`.
fn workload_mints(cwd: &Path, url: &str) {
    let entry = json(&mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/api",
            "--owner",
            "team@example.org",
            "--purpose",
            "serves the API",
            "--audience",
            "db",
            "--json",
        ],
    ));
    let token = json(&mayfly(
        cwd,
        &[
            "token",
            "create",
            "--entry",
            entry["id"].as_str().unwrap(),
            "--json",
        ],
    ));
    ok(&mayfly(
        cwd,
        &[
            "--server",
            url,
            "client",
            "attest",
            "--join-token",
            token["token"].as_str().unwrap(),
        ],
    ));
    for _ in 0..3 {
        let jwt = mayfly(
            cwd,
            &[
                "--server",
                url,
                "client",
                "jwt",
                "--audience",
                "db",
                "--quiet",
            ],
        );
        ok(&jwt);
    }
    let refused = mayfly(
        cwd,
        &["--server", url, "client", "jwt", "--audience", "marketing"],
    );
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn exports_of_a_real_broker_verify_with_the_pinned_key_and_tampered_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd);
    workload_mints(cwd, &server.url);
    // The auditor's copy of the root key, kept apart from the data directory.
    let auditor = cwd.join("auditor");
    std::fs::create_dir(&auditor).unwrap();
    let pem = ok(&mayfly(cwd, &["audit", "public-key"])).0;
    std::fs::write(auditor.join("audit-root.pub"), pem).unwrap();
    let pinned = "auditor/audit-root.pub";

    // While the broker runs: the export ends at the signed head.
    let refused_seq = log_lines(cwd)
        .iter()
        .find(|l| field(l, "audience") == "marketing")
        .map(|l| field(l, "seq").as_u64().unwrap())
        .unwrap();
    wait_until_signed(cwd, refused_seq);
    let (_, summary) = ok(&mayfly(cwd, &["audit", "export", "--out", "running.jsonl"]));
    assert!(summary.contains("exported "), "{summary}");
    assert!(
        summary.contains("mayfly audit verify-export running.jsonl --public-key audit-root.pub"),
        "{summary}"
    );
    let (verified, _) = ok(&mayfly(
        cwd,
        &[
            "audit",
            "verify-export",
            "running.jsonl",
            "--public-key",
            pinned,
        ],
    ));
    assert!(verified.starts_with("export OK: "), "{verified}");
    server.stop();

    // After the stop: every record is signed for.
    let lines = log_lines(cwd);
    let last = lines.len() as u64;
    let first_mint = lines
        .iter()
        .find(|l| field(l, "action") == "jwt.mint")
        .map(|l| field(l, "seq").as_u64().unwrap())
        .unwrap();
    let since = format!("seq:{first_mint}");
    let (_, summary) = ok(&mayfly(
        cwd,
        &[
            "audit",
            "export",
            "--since",
            &since,
            "--format",
            "csv",
            "--out",
            "mints.csv",
        ],
    ));
    let count = last - first_mint + 1;
    assert!(
        summary.contains(&format!(
            "exported {count} records, seq {first_mint} to {last} ("
        )),
        "{summary}"
    );
    assert!(summary.contains("proof: mints.csv.proof.json"), "{summary}");
    let csv = std::fs::read_to_string(cwd.join("mints.csv")).unwrap();
    assert!(csv.starts_with("seq,time,action,outcome,actor,"), "{csv}");
    let proof: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cwd.join("mints.csv.proof.json")).unwrap()).unwrap();
    assert_eq!(proof["schema"], "mayfly-audit-export/1");
    assert_eq!(proof["range"]["since"], since.as_str());
    assert_eq!(proof["before"], lines[first_mint as usize - 2].as_str());
    assert_eq!(proof["after"], serde_json::Value::Null);
    let (verified, _) = ok(&mayfly(
        cwd,
        &[
            "audit",
            "verify-export",
            "mints.csv",
            "--public-key",
            pinned,
        ],
    ));
    assert!(
        verified.starts_with(&format!(
            "export OK: {count} records, seq {first_mint} to {last}, complete for the range \
             [{since}, the signed head]"
        )),
        "{verified}"
    );
    assert!(
        verified.contains(&format!("signed checkpoint: seq {last}, root ")),
        "{verified}"
    );

    // The refused mint's record edited in the CSV: exit 1, its row and seq named.
    let edited = csv.replacen(
        "\"\"audience\"\":\"\"marketing\"\"",
        "\"\"audience\"\":\"\"marketinG\"\"",
        1,
    );
    assert_ne!(edited, csv);
    std::fs::write(cwd.join("mints.csv"), &edited).unwrap();
    let reason = fails(
        &mayfly(
            cwd,
            &[
                "audit",
                "verify-export",
                "mints.csv",
                "--public-key",
                pinned,
            ],
        ),
        1,
    );
    let row = refused_seq - first_mint + 2;
    assert!(
        reason.contains(&format!(
            "export does NOT hold: row {row} (seq {refused_seq}): the record was edited"
        )),
        "{reason}"
    );

    // A time range, from the first mint's time to the refused mint's (excluded).
    let time = |seq: u64| {
        field(&lines[seq as usize - 1], "time")
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (from, to) = (time(first_mint), time(refused_seq));
    ok(&mayfly(
        cwd,
        &[
            "audit",
            "export",
            "--since",
            &from,
            "--until",
            &to,
            "--out",
            "times.jsonl",
        ],
    ));
    let expected: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let t = field(l, "time");
            let t = t.as_str().unwrap();
            t >= from.as_str() && t < to.as_str()
        })
        .collect();
    let exported = std::fs::read_to_string(cwd.join("times.jsonl")).unwrap();
    assert_eq!(exported.lines().collect::<Vec<_>>(), expected);
    let (verified, _) = ok(&mayfly(
        cwd,
        &[
            "audit",
            "verify-export",
            "times.jsonl",
            "--public-key",
            pinned,
        ],
    ));
    assert!(verified.starts_with("export OK: "), "{verified}");

    // To standard output with --proof, and checked from standard input.
    let (records, _) = ok(&mayfly(
        cwd,
        &[
            "audit",
            "export",
            "--until",
            "seq:3",
            "--out",
            "-",
            "--proof",
            "first.proof.json",
        ],
    ));
    assert_eq!(records, format!("{}\n{}\n", lines[0], lines[1]));
    let check_stdin = |records: &str| {
        mayfly_with(
            cwd,
            &[
                "audit",
                "verify-export",
                "-",
                "--proof",
                "first.proof.json",
                "--public-key",
                pinned,
            ],
            records.as_bytes(),
        )
    };
    let (verified, _) = ok(&check_stdin(&records));
    assert!(
        verified.starts_with("export OK: 2 records, seq 1 to 2"),
        "{verified}"
    );
    // The first record dropped: the one left is named.
    let reason = fails(&check_stdin(&format!("{}\n", lines[1])), 1);
    assert!(
        reason.contains("export does NOT hold: line 1 (seq 2)"),
        "{reason}"
    );

    // Another broker's root key.
    let other = tempfile::tempdir().unwrap();
    let stranger = ServerProcess::start(other.path());
    stranger.stop();
    let other_pem = ok(&mayfly(other.path(), &["audit", "public-key"])).0;
    std::fs::write(auditor.join("other.pub"), other_pem).unwrap();
    let reason = fails(
        &mayfly(
            cwd,
            &[
                "audit",
                "verify-export",
                "times.jsonl",
                "--public-key",
                "auditor/other.pub",
            ],
        ),
        1,
    );
    assert!(reason.contains("not the pinned key"), "{reason}");
}

#[test]
fn export_flags_that_cannot_be_used_are_refused_and_help_teaches() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let reason = fails(
        &mayfly(cwd, &["audit", "export", "--since", "120", "--out", "x"]),
        64,
    );
    assert!(
        reason.contains("write seq:120 for a record number"),
        "{reason}"
    );
    let reason = fails(&mayfly(cwd, &["audit", "export", "--out", "-"]), 2);
    assert!(reason.contains("--proof"), "{reason}");
    let reason = fails(
        &mayfly(
            cwd,
            &[
                "audit",
                "export",
                "--since",
                "seq:9",
                "--until",
                "seq:3",
                "--out",
                "x",
                "--audit-dir",
                ".",
            ],
        ),
        64,
    );
    assert!(
        reason.contains("the range ends before it starts"),
        "{reason}"
    );
    // A data directory without an audit log.
    let reason = fails(&mayfly(cwd, &["audit", "export", "--out", "x"]), 1);
    assert!(reason.contains("no such directory"), "{reason}");
    assert!(!cwd.join("x").exists());
    for command in ["export", "verify-export"] {
        let (help, _) = ok(&mayfly(cwd, &["audit", command, "--help"]));
        assert!(help.contains("Examples:"), "{help}");
        assert!(help.contains(&format!("mayfly audit {command}")), "{help}");
    }
}

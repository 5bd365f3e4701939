//! `mayfly audit prove` and `mayfly audit verify-proof`, run with the real binary over a
//! data directory whose audit log this test wrote with `mayfly::audit::AuditLog`: the
//! proofs an auditor gets from the operator, and checks with only the pinned root key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mayfly::audit::{AuditEvent, AuditLog, Outcome};

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");

/// Appends records `from..from + n` to the log in `dir` (each open starts a key epoch).
async fn append(dir: &Path, from: u64, n: u64) {
    let log = AuditLog::open(dir).unwrap();
    for i in from..from + n {
        log.append(AuditEvent {
            action: "jwt.mint".into(),
            outcome: Outcome::Granted,
            actor: format!("spiffe://example.org/workload-{i}"),
            audience: Some(format!("audience-{i}")),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    log.close().await.unwrap();
}

fn mayfly(data: &Path, args: &[&str]) -> Output {
    Command::new(MAYFLY)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("MAYFLY_DATA_DIR")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args`, asserts exit 0, returns stdout.
fn ok(data: &Path, args: &[&str]) -> String {
    let out = mayfly(data, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `args`, asserts exit 1, returns stderr.
fn fails(data: &Path, args: &[&str]) -> String {
    let out = mayfly(data, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    /// The root public key, as an auditor pinned it.
    pem: String,
    /// A checkpoint kept after the first 5 records.
    kept: String,
    /// Where to write files.
    out: PathBuf,
}

/// Records 1-5 under the root key, a copy of the checkpoint kept then, records 6-9 under
/// epoch 1.
async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let audit = data.join("audit");
    append(&audit, 1, 5).await;
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let kept = out.join("kept.json");
    std::fs::copy(audit.join("checkpoint.json"), &kept).unwrap();
    append(&audit, 6, 4).await;
    let pem = out.join("audit-root.pub");
    std::fs::copy(audit.join("key").join("audit-root.pub"), &pem).unwrap();
    Setup {
        data,
        pem: pem.to_str().unwrap().to_owned(),
        kept: kept.to_str().unwrap().to_owned(),
        out,
        _tmp: tmp,
    }
}

fn write(setup: &Setup, name: &str, text: &str) -> String {
    let path = setup.out.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_inclusion_proof_is_printed_and_checked_offline() {
    let setup = setup().await;
    let data = &setup.data;
    let json = ok(data, &["audit", "prove", "3"]);
    let bundle: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(bundle["kind"], "inclusion");
    assert_eq!(
        (bundle["index"].as_u64(), bundle["size"].as_u64()),
        (Some(2), Some(9))
    );
    let record: serde_json::Value =
        serde_json::from_str(bundle["record"].as_str().unwrap()).unwrap();
    assert_eq!(record["seq"], 3);
    assert_eq!(record["audience"], "audience-3");
    assert_eq!(bundle["keys"].as_array().unwrap().len(), 2);
    let proof = write(&setup, "proof-3.json", &json);

    // The auditor's side needs no data directory: point it at one that does not exist.
    let nowhere = setup.out.join("no-such-dir");
    let summary = ok(
        &nowhere,
        &["audit", "verify-proof", &proof, "--public-key", &setup.pem],
    );
    assert!(
        summary.starts_with("inclusion proof OK: record seq 3 is in the audit log of 9 records"),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 1, "{summary}");

    // From standard input.
    let mut child = Command::new(MAYFLY)
        .args(["audit", "verify-proof", "-", "--public-key", &setup.pem])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("record seq 3"));

    // A tampered proof, a swapped record, another root key: exit 1 with the reason.
    let mut tampered = bundle.clone();
    let first = tampered["proof"][0].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if first.starts_with('0') { "1" } else { "0" },
        &first[1..]
    );
    tampered["proof"][0] = flipped.into();
    let path = write(&setup, "tampered.json", &tampered.to_string());
    let reason = fails(
        data,
        &["audit", "verify-proof", &path, "--public-key", &setup.pem],
    );
    assert!(
        reason
            .contains("proof does NOT hold: record seq 3 is not in the tree the checkpoint signed"),
        "{reason}"
    );
    let other =
        serde_json::from_str::<serde_json::Value>(&ok(data, &["audit", "prove", "4"])).unwrap();
    let mut swapped = bundle.clone();
    swapped["record"] = other["record"].clone();
    let path = write(&setup, "swapped.json", &swapped.to_string());
    let reason = fails(
        data,
        &["audit", "verify-proof", &path, "--public-key", &setup.pem],
    );
    assert!(
        reason.contains("the record is seq 4, but the proof is for index 2"),
        "{reason}"
    );

    let stranger = tempfile::tempdir().unwrap();
    append(stranger.path(), 1, 1).await;
    let stranger_pem = stranger.path().join("key").join("audit-root.pub");
    let reason = fails(
        data,
        &[
            "audit",
            "verify-proof",
            &proof,
            "--public-key",
            stranger_pem.to_str().unwrap(),
        ],
    );
    assert!(reason.contains("not the pinned key"), "{reason}");
    let reason = fails(
        data,
        &[
            "audit",
            "verify-proof",
            &setup.kept,
            "--public-key",
            &setup.pem,
        ],
    );
    assert!(reason.contains("not a proof bundle"), "{reason}");

    // Against the checkpoint kept at 5 records.
    let json = ok(data, &["audit", "prove", "2", "--checkpoint", &setup.kept]);
    let kept: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(kept["size"], 5);
    let path = write(&setup, "proof-2-at-5.json", &json);
    let summary = ok(
        data,
        &["audit", "verify-proof", &path, "--public-key", &setup.pem],
    );
    assert!(
        summary.contains("record seq 2 is in the audit log of 5 records"),
        "{summary}"
    );
    let reason = fails(data, &["audit", "prove", "7", "--checkpoint", &setup.kept]);
    assert!(reason.contains("covers records 1 to 5 only"), "{reason}");
}

#[tokio::test]
async fn a_consistency_proof_shows_the_log_only_grew_since_a_kept_checkpoint() {
    let setup = setup().await;
    let data = &setup.data;
    let json = ok(data, &["audit", "prove", "--since", &setup.kept]);
    let bundle: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(bundle["kind"], "consistency");
    assert_eq!(
        (bundle["old"]["seq"].as_u64(), bundle["new"]["seq"].as_u64()),
        (Some(5), Some(9))
    );
    let path = write(&setup, "grew.json", &json);
    let summary = ok(
        data,
        &["audit", "verify-proof", &path, "--public-key", &setup.pem],
    );
    assert!(
        summary.starts_with(
            "consistency proof OK: the audit log of 9 records extends the one of 5 records"
        ),
        "{summary}"
    );

    // The old checkpoint's root replaced by another: its signature no longer holds.
    let mut tampered = bundle.clone();
    tampered["old"]["root"] = bundle["new"]["root"].clone();
    let path = write(&setup, "tampered.json", &tampered.to_string());
    let reason = fails(
        data,
        &["audit", "verify-proof", &path, "--public-key", &setup.pem],
    );
    assert!(
        reason.contains("the old checkpoint (size 5) is not signed"),
        "{reason}"
    );

    // A log whose early record was edited gets no proof at all.
    let log = data.join("audit").join("audit.log");
    let original = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, original.replacen("audience-2", "audience-X", 1)).unwrap();
    let reason = fails(data, &["audit", "prove", "--since", &setup.kept]);
    assert!(reason.contains("does not verify"), "{reason}");
    let reason = fails(data, &["audit", "prove", "7"]);
    assert!(reason.contains("does not verify"), "{reason}");
    std::fs::write(&log, original).unwrap();
    ok(data, &["audit", "prove", "7"]);
}

#[tokio::test]
async fn a_proof_of_what_is_not_there_is_refused_and_help_has_examples() {
    let setup = setup().await;
    let data = &setup.data;
    let reason = fails(data, &["audit", "prove", "0"]);
    assert!(reason.contains("there is no record 0"), "{reason}");
    let reason = fails(data, &["audit", "prove", "10"]);
    assert!(
        reason.contains("the log holds 9 records: there is no record 10"),
        "{reason}"
    );
    ok(data, &["audit", "prove", "9"]);
    // Neither a seq nor --since: clap's usage error.
    assert_eq!(mayfly(data, &["audit", "prove"]).status.code(), Some(2));
    assert_eq!(
        mayfly(data, &["audit", "prove", "3", "--since", &setup.kept])
            .status
            .code(),
        Some(2)
    );
    for command in ["prove", "verify-proof"] {
        let help = ok(data, &["audit", command, "--help"]);
        assert!(help.contains("Examples:"), "{help}");
        assert!(help.contains(&format!("mayfly audit {command}")), "{help}");
    }
}

//! Helpers shared by the audit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::record::{canonical_bytes, line_bytes, sha256_hex};
use super::{AuditEvent, AuditLog, AuditReceipt, AuditRecord, GENESIS_HASH, Outcome};

/// A distinct event for record number `n`.
pub(super) fn event(n: u64) -> AuditEvent {
    AuditEvent {
        action: "jwt.mint".into(),
        outcome: if n.is_multiple_of(3) {
            Outcome::Refused
        } else {
            Outcome::Granted
        },
        actor: format!("spiffe://example.org/workload-{n}"),
        audience: Some(format!("audience-{n}")),
        jti: Some(format!("jti-{n}")),
        detail: Some(serde_json::json!({"n": n, "z": [n, "x"], "a": {"y": 1, "b": true}})),
        ..Default::default()
    }
}

/// A closed log in `dir` with records 1..=n, appended one after the other.
pub(super) async fn write_log(dir: &Path, n: u64) -> Vec<AuditReceipt> {
    let log = AuditLog::open(dir).unwrap();
    let mut receipts = Vec::new();
    for i in 1..=n {
        receipts.push(log.append(event(i)).await.unwrap());
    }
    log.close().await.unwrap();
    receipts
}

/// The lines of the log in `dir`, without newlines.
pub(super) fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Replaces the log in `dir` with `lines`, each newline-terminated.
pub(super) fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(dir.join("audit.log"), text).unwrap();
}

/// A copy of the audit directory `from` (its files: the log, its sealed segments, the
/// checkpoint and the key chain; not the key directory `AuditLog::open` keeps inside it), for tampering next to an
/// untouched control, or for an auditor who holds no secret.
pub(super) fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    copy_files(from, to.path());
    let segments = from.join("segments");
    if segments.is_dir() {
        std::fs::create_dir(to.path().join("segments")).unwrap();
        copy_files(&segments, &to.path().join("segments"));
    }
    to
}

/// A copy of the audit directory `from` with the key directory `AuditLog::open` keeps in it,
/// for a copy the log is opened on again.
pub(super) fn copy_with_key(from: &Path) -> tempfile::TempDir {
    let to = copy_dir(from);
    let key = to.path().join("key");
    std::fs::create_dir(&key).unwrap();
    copy_files(&from.join("key"), &key);
    to
}

/// Copies the files (not the directories) of `from` into `to`, replacing what is there.
pub(super) fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Appends `n` more records to the log in `dir` (a new key epoch: every open starts one),
/// numbered from `from`.
pub(super) async fn append_more(dir: &Path, from: u64, n: u64) {
    let log = AuditLog::open(dir).unwrap();
    for i in from..from + n {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
}

/// Re-encodes a record after `change`, with a freshly computed hash, as an attacker who
/// knows the format would.
pub(super) fn forge(line: &str, change: impl FnOnce(&mut AuditRecord)) -> String {
    let mut record: AuditRecord = serde_json::from_str(line).unwrap();
    change(&mut record);
    let canonical = canonical_bytes(record.seq, &record.time, &record.prev, &record.event).unwrap();
    record.hash = sha256_hex(&canonical);
    String::from_utf8(line_bytes(&canonical, &record.hash)).unwrap()
}

/// Renumbers from 1 and re-links every line, as an attacker does after an edit or a removal.
pub(super) fn relink(lines: &mut [String]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (seq, line) in (1u64..).zip(lines.iter_mut()) {
        let previous = prev.clone();
        *line = forge(line, |r| {
            r.seq = seq;
            r.prev = previous;
        });
        prev = serde_json::from_str::<AuditRecord>(line).unwrap().hash;
    }
}

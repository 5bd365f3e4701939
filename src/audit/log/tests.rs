#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use super::super::test_support::{copy_with_key, event, log_lines, write_lines, write_log};
use super::super::{BreakKind, verify};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_verify_and_reopen_continues_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut receipts = Vec::new();
                for i in 0..25 {
                    receipts.push(log.append(event(task * 100 + i)).await.unwrap());
                }
                receipts
            })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for task in tasks {
        for receipt in task.await.unwrap() {
            assert!(
                seqs.insert(receipt.seq),
                "seq {} handed out twice",
                receipt.seq
            );
        }
    }
    let last = log.append(event(999)).await.unwrap();
    assert_eq!(last.seq, 201);
    assert_eq!(seqs, (1..=200).collect());
    log.close().await.unwrap();

    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.head_seq), (201, 201));
    assert_eq!(report.head_hash, last.hash);
    assert!(report.notes.is_empty(), "{:?}", report.notes);

    // A restart continues the same chain.
    let log = AuditLog::open(dir.path()).unwrap();
    let next = log.append(event(1000)).await.unwrap();
    log.close().await.unwrap();
    assert_eq!(next.seq, 202);
    let lines = log_lines(dir.path());
    let record: crate::audit::AuditRecord = serde_json::from_str(&lines[201]).unwrap();
    assert_eq!(record.prev, last.hash);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_all_answers_each_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let receipts = log.append_all((1..=5).map(event).collect()).await;
    let seqs: Vec<u64> = receipts.into_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    log.close().await.unwrap();
    let lines = log_lines(dir.path());
    assert_eq!(lines.len(), 5);
    assert!(verify(dir.path()).unwrap().is_intact());
    // Closed: every record is refused, none is written.
    let refused = log.append_all((6..=7).map(event).collect()).await;
    assert!(
        refused.iter().all(|r| matches!(r, Err(AuditError::Closed))),
        "{refused:?}"
    );
    assert_eq!(log_lines(dir.path()).len(), 5);
}

/// The checkpoint is off the commit path, yet an idle log is anchored within the interval
/// (by the checkpoint thread, before any close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_log_is_checkpointed_within_the_interval() {
    use super::super::writer::CHECKPOINT_INTERVAL;
    let head_seq = |dir: &Path| match checkpoint::read(dir).unwrap() {
        checkpoint::CheckpointState::Found(found) => found.seq,
        other => panic!("no checkpoint: {other:?}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    // Opening anchors the (empty) head: the control.
    assert_eq!(head_seq(dir.path()), 0);
    let receipt = log.append(event(1)).await.unwrap();
    let deadline = std::time::Instant::now() + 5 * CHECKPOINT_INTERVAL;
    while head_seq(dir.path()) != receipt.seq {
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint still at seq {} after {:?} idle",
            head_seq(dir.path()),
            5 * CHECKPOINT_INTERVAL
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Dropping every handle stops the writer and its timer; the log reopens.
    drop(log);
    let deadline = std::time::Instant::now() + 5 * CHECKPOINT_INTERVAL;
    let reopened = loop {
        match AuditLog::open(dir.path()) {
            Ok(log) => break log,
            Err(AuditError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    assert_eq!(reopened.append(event(2)).await.unwrap().seq, 2);
    reopened.close().await.unwrap();
    assert_eq!(head_seq(dir.path()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_appending_never_reports_a_break() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let writers: Vec<_> = (0..4u64)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    log.append(event(task * 100 + i)).await.unwrap();
                }
            })
        })
        .collect();
    let path = dir.path().to_owned();
    let checker = tokio::task::spawn_blocking(move || {
        for _ in 0..30 {
            let report = verify(&path).unwrap();
            assert!(report.is_intact(), "{report:?}");
        }
    });
    for writer in writers {
        writer.await.unwrap();
    }
    checker.await.unwrap();
    log.close().await.unwrap();
    assert_eq!(verify(dir.path()).unwrap().records, 200);
}

#[tokio::test]
async fn torn_final_line_is_noted_by_verify_and_cut_by_open() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 4).await;
    let torn = br#"{"seq":5,"time":"2025-01-01T00:0"#;
    let mut file = File::options()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap();
    std::io::Write::write_all(&mut file, torn).unwrap();
    drop(file);

    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 4);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("line 5") && n.contains("no newline")),
        "{:?}",
        report.notes
    );

    let log = AuditLog::open(dir.path()).unwrap();
    let receipt = log.append(event(5)).await.unwrap();
    log.close().await.unwrap();
    assert_eq!(receipt.seq, 5);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 5);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert!(!log_lines(dir.path()).iter().any(|l| l.contains("00:0\"")));
}

#[tokio::test]
async fn the_log_is_private_and_an_open_one_is_narrowed_on_open() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    write_log(&dir, 2).await;
    assert_eq!(mode_of(&dir), 0o700, "the directory it created");
    assert_eq!(mode_of(&dir.join(LOG_FILE)), 0o600);
    assert_eq!(mode_of(&dir.join(checkpoint::CHECKPOINT_FILE)), 0o600);

    // As an earlier version left them.
    for name in [LOG_FILE, checkpoint::CHECKPOINT_FILE] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let log = AuditLog::open(&dir).unwrap();
    assert_eq!(mode_of(&dir.join(LOG_FILE)), 0o600);
    assert_eq!(mode_of(&dir.join(checkpoint::CHECKPOINT_FILE)), 0o600);
    // Narrowed, not refused: the chain continues.
    assert_eq!(log.append(event(3)).await.unwrap().seq, 3);
    log.close().await.unwrap();
    assert!(verify(&dir).unwrap().problem.is_none());
}

#[tokio::test]
async fn open_refuses_a_broken_log() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5).await;
    let control = copy_with_key(dir.path());
    let tampered = copy_with_key(dir.path());
    let mut lines = log_lines(tampered.path());
    lines[2] = lines[2].replace("audience-3", "audience-x");
    write_lines(tampered.path(), &lines);

    AuditLog::open(control.path())
        .unwrap()
        .close()
        .await
        .unwrap();
    let err = AuditLog::open(tampered.path()).unwrap_err();
    match &err {
        AuditError::Broken { problem, .. } => {
            assert_eq!(
                (problem.line, problem.kind.clone()),
                (3, BreakKind::HashMismatch)
            );
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("line 3 (seq 3): record was edited"),
        "{message}"
    );
    assert!(message.contains("operator"), "{message}");
    // Refusing changed nothing.
    assert_eq!(log_lines(tampered.path()), lines);
}

#[tokio::test]
async fn open_refuses_a_truncated_log() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5).await;
    let mut lines = log_lines(dir.path());
    lines.truncate(3);
    write_lines(dir.path(), &lines);
    let err = AuditLog::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AuditError::Broken { problem, .. }
                if problem.kind == BreakKind::Truncated { checkpoint_seq: 5, last_seq: 3 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn second_open_is_refused_while_the_first_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let err = AuditLog::open(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Locked { .. }), "{err:?}");
    log.close().await.unwrap();
    // Closing released the lock.
    AuditLog::open(dir.path()).unwrap().close().await.unwrap();
}

#[tokio::test]
async fn append_after_close_fails_closed_on_every_clone() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    let clone = log.clone();
    log.append(event(1)).await.unwrap();
    log.close().await.unwrap();
    assert!(matches!(
        clone.append(event(2)).await,
        Err(AuditError::Closed)
    ));
    assert!(matches!(
        log.append(event(2)).await,
        Err(AuditError::Closed)
    ));
    clone.close().await.unwrap();
    assert_eq!(verify(dir.path()).unwrap().records, 1);
}

#[tokio::test]
async fn dropping_every_handle_flushes_and_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    log.append(event(1)).await.unwrap();
    drop(log);
    // The writer releases the lock soon after; open is retried instead of timed.
    let log = loop {
        match AuditLog::open(dir.path()) {
            Ok(log) => break log,
            Err(AuditError::Locked { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(log.append(event(2)).await.unwrap().seq, 2);
    log.close().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_checkpoint_is_a_note_for_an_old_log_and_refused_for_a_signed_one() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3).await;
    let signed = copy_with_key(dir.path());
    // A log of a version before the audit key: no keys.jsonl. Its checkpoint was written
    // without fsync, so a crash could leave it empty: a note, and rewritten (signed) at open.
    std::fs::remove_file(dir.path().join("keys.jsonl")).unwrap();
    std::fs::remove_dir_all(dir.path().join("key")).unwrap();
    std::fs::write(dir.path().join("checkpoint.json"), b"").unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(
        report.notes.iter().any(|n| n.contains("unreadable")),
        "{:?}",
        report.notes
    );
    AuditLog::open(dir.path()).unwrap().close().await.unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact() && report.notes.is_empty(), "{report:?}");
    assert_eq!((report.signed_through, report.keys.len()), (3, 1));

    // A signed log's checkpoint is written durably and atomically: empty means replaced.
    AuditLog::open(signed.path())
        .unwrap()
        .close()
        .await
        .unwrap();
    assert!(verify(signed.path()).unwrap().is_intact(), "control");
    std::fs::write(signed.path().join("checkpoint.json"), b"").unwrap();
    assert!(matches!(
        AuditLog::open(signed.path()),
        Err(AuditError::Broken { problem, .. })
            if matches!(problem.kind, BreakKind::CheckpointMissing { .. })
    ));
}

#[tokio::test]
async fn fresh_directory_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit");
    AuditLog::open(&audit).unwrap().close().await.unwrap();
    let report = verify(&audit).unwrap();
    assert!(report.is_intact() && report.notes.is_empty(), "{report:?}");
    assert_eq!((report.records, report.head_seq), (0, 0));
    assert_eq!(report.head_hash, crate::audit::GENESIS_HASH);
}

// ---------------------------------------------------------------------------------------
// A hand-over a crash interrupted, a torn keys.jsonl, a key that does not end the chain,
// and a witness the log falls short of.

use super::super::seal::{Handover, handover_body};
use super::super::test_support::append_more;

/// The epochs of the keys a report followed.
fn epochs(report: &super::super::VerifyReport) -> Vec<u64> {
    report.keys.iter().map(|key| key.epoch).collect()
}

/// The audit key now in `<dir>/key`.
fn current_key(dir: &Path) -> AuditSigner {
    AuditSigner::load(&dir.join("key").join(KEY_FILE))
        .unwrap()
        .unwrap()
}

/// A crash after the next key was written to the side, before its hand-over reached
/// `keys.jsonl`: the hand-over never happened, so the side key is discarded at open and
/// the current key hands over to a key of its own making.
#[tokio::test]
async fn a_side_key_that_never_reached_keys_jsonl_is_discarded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3).await;
    let next_path = dir.path().join("key").join(NEXT_KEY_FILE);
    let (stray, pkcs8) = AuditSigner::generate(1).unwrap();
    stray.store(&pkcs8, &next_path).unwrap();

    let log = AuditLog::open(dir.path()).unwrap();
    assert!(!next_path.exists(), "the side key is discarded");
    assert_eq!(log.append(event(4)).await.unwrap().seq, 4);
    log.close().await.unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(epochs(&report), [0, 1]);
    assert_ne!(report.keys[1].key, stray.public(), "not the discarded key");
    let key = current_key(dir.path());
    assert_eq!((key.epoch(), key.public()), (1, report.keys[1].key));
}

/// A crash after the hand-over was appended to `keys.jsonl`, before the side key replaced
/// `audit-key.json`: the hand-over took effect, so the side key is installed at open (the
/// old key file, which the log's key chain no longer ends with, would be a divergence),
/// and the log continues under it.
#[tokio::test]
async fn a_side_key_named_in_keys_jsonl_is_installed_at_open_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3).await;
    let report = verify(dir.path()).unwrap();
    let current = current_key(dir.path());
    assert_eq!(current.epoch(), 0);
    let next_path = dir.path().join("key").join(NEXT_KEY_FILE);
    let (next, pkcs8) = AuditSigner::generate(1).unwrap();
    next.store(&pkcs8, &next_path).unwrap();
    let mut handover = Handover {
        epoch: 1,
        public_key: next.public().to_base64(),
        size: report.records,
        root: report.root.clone(),
        head: report.head_hash.clone(),
        signature: None,
        reason: None,
    };
    handover.signature = Some(current.sign(handover_body(&handover).as_bytes()));
    let keys = trust::read_keys(dir.path()).unwrap();
    trust::append_key(dir.path(), &handover, keys.good_len).unwrap();
    // The state the crash left: the chain names epoch 1, the key file still holds epoch 0.
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(epochs(&report), [0, 1]);
    assert_eq!(current_key(dir.path()).epoch(), 0);
    // The control: without the side key, the same state is a divergence.
    let without = copy_with_key(dir.path());
    std::fs::remove_file(without.path().join("key").join(NEXT_KEY_FILE)).unwrap();
    assert!(
        matches!(
            AuditLog::open(without.path()),
            Err(AuditError::Diverged { .. })
        ),
        "the old key does not end the chain"
    );

    let log = AuditLog::open(dir.path()).unwrap();
    assert!(!next_path.exists(), "installed");
    assert_eq!(log.append(event(4)).await.unwrap().seq, 4);
    log.close().await.unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(epochs(&report), [0, 1, 2]);
    assert_eq!(report.keys[1].key, next.public(), "the side key took over");
    assert_eq!(current_key(dir.path()).epoch(), 2);
}

/// A hand-over whose line a crash cut short never took effect: verify reads the chain
/// without it, and the next open cuts it off before appending its own.
#[tokio::test]
async fn a_torn_last_line_of_keys_jsonl_is_cut_off_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3).await;
    let keys_path = dir.path().join(trust::KEYS_FILE);
    let complete = std::fs::read(&keys_path).unwrap();
    let torn = br#"{"epoch":1,"public_key":"AAAA"#;
    let mut file = File::options().append(true).open(&keys_path).unwrap();
    std::io::Write::write_all(&mut file, torn).unwrap();
    drop(file);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(epochs(&report), [0]);

    let log = AuditLog::open(dir.path()).unwrap();
    log.append(event(4)).await.unwrap();
    log.close().await.unwrap();
    let keys = std::fs::read(&keys_path).unwrap();
    assert!(keys.starts_with(&complete), "the complete lines are kept");
    assert!(
        !keys.windows(torn.len()).any(|w| w == torn),
        "the torn line is gone"
    );
    assert!(keys.ends_with(b"\n"));
    assert_eq!(keys.iter().filter(|b| **b == b'\n').count(), 2);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact() && report.notes.is_empty(), "{report:?}");
    assert_eq!(epochs(&report), [0, 1]);
}

/// A change to the audit key file, named, and what the refusal must say.
type KeyCase<'a> = (&'a str, &'a dyn Fn(&Path), &'a [&'a str]);

/// The audit key removed, replaced by another key of the same epoch, or rolled back to an
/// older epoch's: each is refused at open with what was found, and changes nothing; with
/// a reason accepted, the log opens and the acceptance is its next record.
#[tokio::test]
async fn a_key_that_does_not_end_the_key_chain_is_a_divergence_unless_accepted() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 2).await;
    let epoch_0_key = std::fs::read(dir.path().join("key").join(KEY_FILE)).unwrap();
    append_more(dir.path(), 3, 1).await;
    assert_eq!(current_key(dir.path()).epoch(), 1);
    // The control: an untouched copy opens.
    let control = copy_with_key(dir.path());
    AuditLog::open(control.path())
        .unwrap()
        .close()
        .await
        .unwrap();

    let removed = |key: &Path| std::fs::remove_file(key).unwrap();
    let replaced = |key: &Path| {
        let (other, pkcs8) = AuditSigner::generate(1).unwrap();
        std::fs::remove_file(key).unwrap();
        other.store(&pkcs8, key).unwrap();
    };
    let older = |key: &Path| std::fs::write(key, &epoch_0_key).unwrap();
    let cases: [KeyCase<'_>; 3] = [
        (
            "removed",
            &removed,
            &["no audit key in", "the key was removed"],
        ),
        (
            "replaced",
            &replaced,
            &["(epoch 1,", "is not the one", "replaced or rolled back"],
        ),
        (
            "older",
            &older,
            &[
                "(epoch 0,",
                "ends with (epoch 1,",
                "replaced or rolled back",
            ],
        ),
    ];
    for (case, change, expected) in cases {
        let copy = copy_with_key(dir.path());
        let key = copy.path().join("key").join(KEY_FILE);
        change(&key);
        let lines = log_lines(copy.path());
        let err = AuditLog::open(copy.path()).unwrap_err();
        let AuditError::Diverged { problem, .. } = &err else {
            panic!("{case}: {err:?}");
        };
        for needle in expected {
            assert!(problem.contains(needle), "{case}: {needle}: {problem}");
        }
        assert!(err.to_string().contains("--accept-audit-rollback"), "{err}");
        assert_eq!(
            log_lines(copy.path()),
            lines,
            "{case}: refusing changed nothing"
        );

        let reason = format!("audit key {case}, INC-7");
        let options = AuditOptions {
            accept_divergence: Some(reason.clone()),
            ..AuditOptions::new(copy.path().join("key"))
        };
        let log = AuditLog::open_with(copy.path(), &options).unwrap();
        assert_eq!(log.append(event(9)).await.unwrap().seq, 5, "{case}");
        log.close().await.unwrap();
        let accepted: crate::audit::AuditRecord =
            serde_json::from_str(&log_lines(copy.path())[3]).unwrap();
        assert_eq!(
            (accepted.seq, accepted.event.action.as_str()),
            (4, "audit.divergence.accepted"),
            "{case}"
        );
        assert_eq!(accepted.event.reason.as_deref(), Some(reason.as_str()));
        let found = accepted.event.detail.unwrap().to_string();
        assert!(found.contains(expected[0]), "{case}: {found}");
        let report = verify(copy.path()).unwrap();
        assert!(report.is_intact(), "{case}: {report:?}");
        assert!(
            report.notes.iter().any(|n| n.contains(&reason)),
            "{case}: {:?}",
            report.notes
        );
    }
}

/// A checkpoint a witness holds (the shared store's copy) that the log falls short of is
/// a divergence naming where it came from; the log's own checkpoint there is the control.
#[tokio::test]
async fn a_witnessed_checkpoint_the_log_falls_short_of_is_a_divergence_naming_the_witness() {
    let signed = |dir: &Path| match checkpoint::read(dir).unwrap() {
        checkpoint::CheckpointState::Found(found) => found,
        other => panic!("{other:?}"),
    };
    let witness = "redis://10.0.0.5:6379 (replica r2's copy)";
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3).await;
    let rolled_back = copy_with_key(dir.path());
    let own = signed(rolled_back.path());
    append_more(dir.path(), 4, 2).await;
    let later = signed(dir.path());
    assert_eq!((own.seq, later.seq), (3, 5));

    let control = copy_with_key(rolled_back.path());
    let options = AuditOptions {
        anchored: vec![(witness.to_owned(), own)],
        ..AuditOptions::new(control.path().join("key"))
    };
    AuditLog::open_with(control.path(), &options)
        .unwrap()
        .close()
        .await
        .unwrap();

    let options = AuditOptions {
        anchored: vec![(witness.to_owned(), later)],
        ..AuditOptions::new(rolled_back.path().join("key"))
    };
    let err = AuditLog::open_with(rolled_back.path(), &options).unwrap_err();
    let AuditError::Diverged { problem, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        problem.contains(&format!("anchored in {witness} (seq 5")),
        "{problem}"
    );
    assert!(
        problem.contains("log ends at seq 3") && problem.contains("truncated"),
        "{problem}"
    );
}

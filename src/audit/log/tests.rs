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

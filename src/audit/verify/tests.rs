#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::super::test_support::{copy_dir, forge, log_lines, write_lines, write_log};
use super::*;

const RECORDS: u64 = 8;

/// Writes a log of `RECORDS` records, applies `edit` to the lines of a copy, and checks
/// that the untouched original still verifies (the positive control). Returns the
/// tampered copy's report.
async fn tampered(edit: impl FnOnce(&mut Vec<String>)) -> VerifyReport {
    let control = tempfile::tempdir().unwrap();
    write_log(control.path(), RECORDS).await;
    let copy = copy_dir(control.path());
    let mut lines = log_lines(copy.path());
    edit(&mut lines);
    write_lines(copy.path(), &lines);

    let report = verify(control.path()).unwrap();
    assert!(report.is_intact(), "control: {report:?}");
    assert_eq!(report.records, RECORDS);
    verify(copy.path()).unwrap()
}

fn break_of(report: &VerifyReport) -> &ChainBreak {
    report.problem.as_ref().expect("tampering must be detected")
}

fn hash_of(line: &str) -> String {
    serde_json::from_str::<AuditRecord>(line).unwrap().hash
}

#[tokio::test]
async fn edited_field_is_a_hash_mismatch_at_its_line() {
    let report = tampered(|lines| lines[6] = lines[6].replace("audience-7", "audience-x")).await;
    let problem = break_of(&report);
    assert_eq!(
        (problem.line, problem.seq, &problem.kind),
        (7, Some(7), &BreakKind::HashMismatch)
    );
    assert_eq!(
        problem.to_string(),
        "line 7 (seq 7): record was edited: its hash does not match its contents"
    );
    assert_eq!((report.records, report.head_seq), (6, 6));
}

#[tokio::test]
async fn added_field_is_caught_although_the_hash_matches() {
    let report = tampered(|lines| lines[2] = lines[2].replacen('{', r#"{"extra":1,"#, 1)).await;
    let problem = break_of(&report);
    assert_eq!((problem.line, &problem.kind), (3, &BreakKind::NotCanonical));
}

#[tokio::test]
async fn garbled_line_is_unparseable() {
    let report = tampered(|lines| lines[3].truncate(20)).await;
    let problem = break_of(&report);
    assert_eq!(problem.line, 4);
    assert!(
        matches!(problem.kind, BreakKind::Unparseable { .. }),
        "{problem:?}"
    );
}

#[tokio::test]
async fn removed_record_is_a_seq_gap_at_its_line() {
    let report = tampered(|lines| {
        lines.remove(3);
    })
    .await;
    let problem = break_of(&report);
    assert_eq!(
        (problem.line, problem.seq, &problem.kind),
        (
            4,
            Some(5),
            &BreakKind::SeqGap {
                expected: 4,
                found: 5
            }
        )
    );
    assert_eq!(
        problem.to_string(),
        "line 4: expected seq 4, found seq 5: 1 record removed before this line"
    );

    let report = tampered(|lines| {
        lines.drain(6..8);
        lines.remove(0);
    })
    .await;
    assert_eq!(
        break_of(&report).kind,
        BreakKind::SeqGap {
            expected: 1,
            found: 2
        },
        "removing the first record"
    );

    let report = tampered(|lines| {
        lines.drain(2..4);
    })
    .await;
    assert_eq!(
        break_of(&report).to_string(),
        "line 3: expected seq 3, found seq 5: 2 records removed before this line"
    );
}

#[tokio::test]
async fn swapped_records_are_out_of_order_at_the_first_of_them() {
    let report = tampered(|lines| lines.swap(4, 5)).await;
    let problem = break_of(&report);
    assert_eq!(
        (problem.line, problem.seq, &problem.kind),
        (
            5,
            Some(6),
            &BreakKind::SeqOutOfOrder {
                expected: 5,
                found: 6
            }
        )
    );
    assert_eq!(
        problem.to_string(),
        "line 5: seq 6 comes before seq 5: records reordered"
    );

    // A record moved later than where it belongs.
    let report = tampered(|lines| {
        let moved = lines.remove(1);
        lines.insert(5, moved);
    })
    .await;
    assert_eq!(
        break_of(&report).kind,
        BreakKind::SeqOutOfOrder {
            expected: 2,
            found: 3
        }
    );

    // A duplicated record goes backwards.
    let report = tampered(|lines| {
        let copy = lines[2].clone();
        lines.insert(3, copy);
    })
    .await;
    assert_eq!(
        (break_of(&report).line, &break_of(&report).kind),
        (
            4,
            &BreakKind::SeqOutOfOrder {
                expected: 4,
                found: 3
            }
        )
    );
}

#[tokio::test]
async fn truncated_end_is_caught_by_the_checkpoint() {
    let report = tampered(|lines| lines.truncate(6)).await;
    let problem = break_of(&report);
    assert_eq!(
        problem.kind,
        BreakKind::Truncated {
            checkpoint_seq: 8,
            last_seq: 6
        }
    );
    assert_eq!(problem.line, 7);
    assert!(
        problem.to_string().starts_with(
            "log ends at seq 6 but the checkpoint says the head is seq 8: the log was truncated"
        ),
        "{problem}"
    );
    // Everything that is left still verified.
    assert_eq!((report.records, report.head_seq), (6, 6));

    let report = tampered(Vec::clear).await;
    assert_eq!(
        break_of(&report).kind,
        BreakKind::Truncated {
            checkpoint_seq: 8,
            last_seq: 0
        }
    );
}

#[tokio::test]
async fn forged_hash_is_caught_by_the_next_records_prev() {
    let report = tampered(|lines| {
        lines[2] = forge(&lines[2], |r| r.event.audience = Some("audience-x".into()));
    })
    .await;
    let problem = break_of(&report);
    assert_eq!(
        (problem.line, problem.seq, &problem.kind),
        (4, Some(4), &BreakKind::PrevMismatch)
    );
    assert!(
        problem
            .to_string()
            .starts_with("line 4 (seq 4): its prev does not match")
    );
}

#[tokio::test]
async fn rewritten_chain_is_caught_by_the_checkpoint() {
    // Edit record 3, then re-link and re-hash everything after it: only the checkpoint
    // remembers the old head.
    let report = tampered(|lines| {
        lines[2] = forge(&lines[2], |r| r.event.audience = Some("audience-x".into()));
        for i in 3..lines.len() {
            let prev = hash_of(&lines[i - 1]);
            lines[i] = forge(&lines[i], |r| r.prev = prev);
        }
    })
    .await;
    let problem = break_of(&report);
    assert_eq!(
        (problem.line, &problem.kind),
        (8, &BreakKind::CheckpointMismatch { seq: 8 })
    );
}

#[tokio::test]
async fn missing_checkpoint_and_missing_log_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3).await;
    let without_checkpoint = copy_dir(dir.path());
    std::fs::remove_file(without_checkpoint.path().join("checkpoint.json")).unwrap();
    let report = verify(without_checkpoint.path()).unwrap();
    assert_eq!(
        break_of(&report).kind,
        BreakKind::CheckpointMissing {
            found: "there is no checkpoint.json".into()
        }
    );
    // A log of a version before the audit key has no key chain: there, a missing
    // checkpoint is only a note.
    std::fs::remove_file(without_checkpoint.path().join("keys.jsonl")).unwrap();
    let report = verify(without_checkpoint.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("no checkpoint.json")),
        "{report:?}"
    );

    let without_log = copy_dir(dir.path());
    std::fs::remove_file(without_log.path().join(LOG_FILE)).unwrap();
    let report = verify(without_log.path()).unwrap();
    assert_eq!(
        break_of(&report).kind,
        BreakKind::Truncated {
            checkpoint_seq: 3,
            last_seq: 0
        }
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(verify(empty.path()), Err(AuditError::Io { .. })));
}

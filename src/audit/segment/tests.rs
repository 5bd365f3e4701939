#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::test_support::event;
use super::super::{
    AuditLog, AuditOptions, AuditPublicKey, BreakKind, ProofBundle, Rotation, prove_consistency,
    prove_inclusion, read_checkpoint, verify, verify_bundle, verify_segment,
};
use super::*;

/// Options that seal a segment every `max_bytes`, keys in `<dir>/key`.
fn rotating(dir: &Path, max_bytes: u64, retention: Option<Duration>) -> AuditOptions {
    let mut options = AuditOptions::new(dir.join("key"));
    options.rotation = Rotation {
        max_bytes,
        max_age: Duration::from_secs(3600),
        retention,
    };
    options
}

/// Appends records `from..=to`, one batch each, to a log opened with `options`.
async fn append(dir: &Path, options: &AuditOptions, from: u64, to: u64) {
    let log = AuditLog::open_with(dir, options).unwrap();
    for n in from..=to {
        log.append(event(n)).await.unwrap();
    }
    log.close().await.unwrap();
}

fn root_key(dir: &Path) -> AuditPublicKey {
    AuditPublicKey::from_pem(&std::fs::read(dir.join("key/audit-root.pub")).unwrap()).unwrap()
}

fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    list(&dir.join(SEGMENT_DIR))
        .unwrap()
        .into_iter()
        .map(|sealed| sealed.log)
        .collect()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines_to(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn full_segments_are_sealed_the_chain_runs_on_and_each_verifies_alone() {
    let dir = tempfile::tempdir().unwrap();
    let options = rotating(dir.path(), 2000, None);
    append(dir.path(), &options, 1, 30).await;
    // A restart continues the chain in the live segment, and seals on.
    append(dir.path(), &options, 31, 45).await;

    let logs = segment_logs(dir.path());
    assert!(
        logs.len() >= 4,
        "2000-byte segments of 45 records: {logs:?}"
    );
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.removed), (45, 0));
    assert_eq!(report.segments, logs.len());

    let key = root_key(dir.path());
    let mut next_first = 1;
    for log in &logs {
        let alone = verify_segment(log, &key).unwrap();
        assert_eq!(alone.first, next_first, "segments follow one another");
        assert!(alone.last >= alone.first);
        next_first = alone.last + 1;
    }
    // The live segment holds the rest: every record is in exactly one file.
    let live = lines_of(&dir.path().join("audit.log"));
    assert_eq!(next_first + live.len() as u64 - 1, 45);

    // A proof about a record of the oldest segment, against the current checkpoint.
    let bundle = prove_inclusion(dir.path(), 2, None).unwrap();
    let summary = verify_bundle(&bundle, &key).unwrap();
    assert_eq!(summary.size, 45);
}

#[tokio::test]
async fn a_segment_alone_refuses_an_edit_a_cut_a_forged_frontier_and_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let options = rotating(dir.path(), 1500, None);
    append(dir.path(), &options, 1, 20).await;
    let logs = segment_logs(dir.path());
    let (first, second) = (&logs[0], &logs[1]);
    let key = root_key(dir.path());
    // Control: untouched, both verify.
    verify_segment(first, &key).unwrap();
    let second_report = verify_segment(second, &key).unwrap();

    // An edited record of the second segment, its hash recomputed: the chain inside the
    // segment could be re-hashed, but not the root its seal signed.
    let mut lines = lines_of(second);
    let original = lines.clone();
    lines[1] = lines[1].replace("audience-", "audiencX-");
    write_lines_to(second, &lines);
    let error = verify_segment(second, &key).unwrap_err().to_string();
    assert!(
        error.contains(&format!("seq {}", second_report.first + 1)),
        "{error}"
    );
    // The whole log names the file and line.
    let report = verify(dir.path()).unwrap();
    let problem = report.problem.expect("an edited segment breaks the log");
    assert_eq!(problem.line, 2, "{problem}");
    assert_eq!(
        problem.file.as_deref(),
        Some(format!("segments/{}", log_name(second_report.first)).as_str()),
        "{problem}"
    );
    write_lines_to(second, &original);
    verify_segment(second, &key).unwrap();

    // The last record cut off.
    write_lines_to(second, &original[..original.len() - 1]);
    let error = verify_segment(second, &key).unwrap_err().to_string();
    assert!(error.contains("cut off"), "{error}");
    write_lines_to(second, &original);

    // A seal whose frontier was replaced: the root no longer matches what was signed.
    let seal_path = second.with_file_name(seal_name(second_report.first));
    let seal_text = std::fs::read_to_string(&seal_path).unwrap();
    let mut seal: SegmentSeal = serde_json::from_str(&seal_text).unwrap();
    seal.start[0] = "ab".repeat(32);
    std::fs::write(&seal_path, serde_json::to_vec(&seal).unwrap()).unwrap();
    let error = verify_segment(second, &key).unwrap_err().to_string();
    assert!(error.contains("do not make the tree"), "{error}");
    std::fs::write(&seal_path, &seal_text).unwrap();
    verify_segment(second, &key).unwrap();

    // Another pinned key.
    let other = tempfile::tempdir().unwrap();
    append(
        other.path(),
        &AuditOptions::new(other.path().join("key")),
        1,
        1,
    )
    .await;
    let error = verify_segment(second, &root_key(other.path()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("not the pinned key"), "{error}");
}

#[tokio::test]
async fn a_crash_between_the_rename_and_the_seal_is_sealed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = rotating(dir.path(), 1500, None);
    append(dir.path(), &options, 1, 12).await;
    let logs = segment_logs(dir.path());
    let last = logs.last().unwrap();
    let first: u64 = verify_segment(last, &root_key(dir.path())).unwrap().first;
    let seal = last.with_file_name(seal_name(first));
    std::fs::remove_file(&seal).unwrap();
    // And a next live file that never took the old one's place.
    std::fs::write(dir.path().join("audit.log.next"), b"").unwrap();
    assert!(verify_segment(last, &root_key(dir.path())).is_err());

    let log = AuditLog::open_with(dir.path(), &options).unwrap();
    log.close().await.unwrap();
    assert!(seal.exists(), "sealed again at open");
    verify_segment(last, &root_key(dir.path())).unwrap();
    assert!(!dir.path().join("audit.log.next").exists());
    assert!(verify(dir.path()).unwrap().is_intact());
}

#[tokio::test]
async fn a_crash_between_the_two_renames_leaves_a_log_that_opens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let options = rotating(dir.path(), 1500, None);
    append(dir.path(), &options, 1, 12).await;
    // The live file moved into segments/ and nothing took its place yet.
    let live = dir.path().join("audit.log");
    let lines = lines_of(&live);
    let first: u64 = serde_json::from_str::<serde_json::Value>(&lines[0]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    std::fs::rename(&live, dir.path().join(SEGMENT_DIR).join(log_name(first))).unwrap();
    assert!(verify(dir.path()).unwrap().is_intact());
    append(dir.path(), &options, 13, 14).await;
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 14);
    let last = segment_logs(dir.path()).pop().unwrap();
    verify_segment(&last, &root_key(dir.path())).unwrap();
}

#[tokio::test]
async fn retention_removes_old_segments_says_so_and_proofs_of_kept_records_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    // Control: a long retention removes nothing.
    let keep = rotating(dir.path(), 1500, Some(Duration::from_secs(3600)));
    append(dir.path(), &keep, 1, 20).await;
    let before = segment_logs(dir.path()).len();
    assert!(before >= 3);
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.removed, 0);
    let old = read_checkpoint(&dir.path().join("checkpoint.json")).unwrap();

    // Retention of zero: every sealed segment is past it.
    let expire = rotating(dir.path(), 1500, Some(Duration::ZERO));
    append(dir.path(), &expire, 21, 30).await;
    assert!(
        segment_logs(dir.path()).len() <= 1,
        "{:?}",
        segment_logs(dir.path())
    );
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(report.removed > 0);
    assert!(
        report.records > 30,
        "the retention records are in the log too"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.contains("removed by retention")),
        "{:?}",
        report.notes
    );
    let records = crate::audit::tail(dir.path(), 100).unwrap();
    assert!(
        records
            .iter()
            .any(|record| record.event.action == "audit.retention.removed")
    );

    // A kept record is proved against the current checkpoint; a removed one is refused.
    let key = root_key(dir.path());
    let kept = report.removed + 1;
    let bundle = prove_inclusion(dir.path(), kept, None).unwrap();
    verify_bundle(&bundle, &key).unwrap();
    let ProofBundle::Inclusion(inclusion) = &bundle else {
        panic!("an inclusion bundle")
    };
    assert_eq!(inclusion.index, kept - 1);
    let error = prove_inclusion(dir.path(), 1, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("removed by retention"), "{error}");
    // A consistency proof from before the cut needs removed records.
    if old.seq < report.removed {
        let error = prove_consistency(dir.path(), &old).unwrap_err().to_string();
        assert!(error.contains("retention"), "{error}");
    }

    // The log opens again from start.json and goes on.
    append(dir.path(), &keep, 31, 32).await;
    assert!(verify(dir.path()).unwrap().is_intact());
}

#[tokio::test]
async fn segments_removed_by_hand_are_a_break() {
    let dir = tempfile::tempdir().unwrap();
    let options = rotating(dir.path(), 1500, None);
    append(dir.path(), &options, 1, 20).await;
    assert!(verify(dir.path()).unwrap().is_intact(), "control");
    let logs = segment_logs(dir.path());

    // The oldest segment deleted: the kept log starts with a gap.
    let copy = super::super::test_support::copy_dir(dir.path());
    let copied = segment_logs(copy.path());
    std::fs::remove_file(&copied[0]).unwrap();
    let problem = verify(copy.path())
        .unwrap()
        .problem
        .expect("a removed segment");
    assert!(
        matches!(problem.kind, BreakKind::SeqGap { expected: 1, .. }),
        "{problem}"
    );

    // … and with a start.json made to match the next segment's seal: no retention record
    // accounts for it.
    let second = verify_segment(&logs[1], &root_key(dir.path())).unwrap();
    let seal = read_seal(&copied[1].with_file_name(seal_name(second.first)))
        .unwrap()
        .unwrap();
    let start = seal_start(&seal, Path::new("seal")).unwrap();
    write_start(&copy.path().join(SEGMENT_DIR), &start).unwrap();
    let problem = verify(copy.path())
        .unwrap()
        .problem
        .expect("no retention record");
    assert_eq!(
        problem.kind,
        BreakKind::Removed {
            through: second.first - 1,
            accounted: 0
        },
        "{problem}"
    );
    assert!(problem.to_string().contains("removed by hand"), "{problem}");
}

#[tokio::test]
async fn an_old_segment_rotates_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = rotating(dir.path(), u64::MAX, None);
    options.rotation.max_age = Duration::ZERO;
    append(dir.path(), &options, 1, 3).await;
    // Every batch found the live segment old enough.
    assert_eq!(segment_logs(dir.path()).len(), 3);
    assert!(verify(dir.path()).unwrap().is_intact());
    // Control: a day's age and no size limit seal nothing.
    let other = tempfile::tempdir().unwrap();
    let mut options = rotating(other.path(), u64::MAX, None);
    options.rotation.max_age = Duration::from_secs(86_400);
    append(other.path(), &options, 1, 3).await;
    assert!(segment_logs(other.path()).is_empty());
}

/// `verify` while the writer appends and seals finds the log intact every time (the
/// checkpoint is read before the files, the files are opened before they are read, and a
/// layout that changed under a failed check is read again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_segments_are_sealed_reports_no_break() {
    let dir = tempfile::tempdir().unwrap();
    let options = rotating(dir.path(), 4096, None);
    let log = AuditLog::open_with(dir.path(), &options).unwrap();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 1..=400 {
                log.append(event(n)).await.unwrap();
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        let path = dir.path().to_owned();
        let report = tokio::task::spawn_blocking(move || verify(&path).unwrap())
            .await
            .unwrap();
        assert!(report.is_intact(), "while sealing: {report:?}");
        checks += 1;
    }
    writer.await.unwrap();
    log.close().await.unwrap();
    assert!(checks > 0);
    assert!(segment_logs(dir.path()).len() >= 10);
    assert!(verify(dir.path()).unwrap().is_intact());
}

/// Exports read through the segments: a slice across two segments verifies alone; after
/// retention, a slice whose first record has nothing kept before it is refused with the
/// reason, and one that starts a record later verifies.
#[tokio::test]
async fn an_export_spans_segments_and_says_where_retention_cut() {
    use super::super::{ExportBound, ExportFormat, ExportRange, export, verify_export};
    let export_slice = |dir: &Path, since: u64, until: u64| {
        let range = ExportRange::new(
            Some(ExportBound::seq(since).unwrap()),
            Some(ExportBound::seq(until).unwrap()),
        )
        .unwrap();
        let mut out = Vec::new();
        export(
            dir,
            &range,
            ExportFormat::Jsonl,
            &mut out,
            Path::new("slice.jsonl"),
        )
        .map(|exported| (out, exported))
    };
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), &rotating(dir.path(), 1500, None), 1, 20).await;
    let logs = segment_logs(dir.path());
    let key = root_key(dir.path());
    let second = verify_segment(&logs[1], &key).unwrap();
    // From inside the first segment to inside the third.
    let (since, until) = (second.first - 1, second.last + 2);
    let (out, exported) = export_slice(dir.path(), since, until).unwrap();
    let verified = verify_export(
        out.as_slice(),
        Path::new("slice.jsonl"),
        &exported.proof,
        &key,
    )
    .unwrap();
    assert_eq!(exported.proof.count, until - since);
    assert!(format!("{verified:?}").contains(&since.to_string()));

    append(
        dir.path(),
        &rotating(dir.path(), 1500, Some(Duration::ZERO)),
        21,
        30,
    )
    .await;
    let removed = verify(dir.path()).unwrap().removed;
    assert!(removed > 0);
    let error = export_slice(dir.path(), removed + 1, removed + 3)
        .unwrap_err()
        .to_string();
    assert!(error.contains("removed by retention"), "{error}");
    let (out, exported) = export_slice(dir.path(), removed + 2, removed + 4).unwrap();
    verify_export(
        out.as_slice(),
        Path::new("slice.jsonl"),
        &exported.proof,
        &key,
    )
    .unwrap();
}

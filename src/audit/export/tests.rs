//! Exports made from real logs and checked as an auditor would: round trips of both
//! formats, time and seq ranges, an empty range, a range past the signed head; each attack
//! on an export next to the untouched control, with the place named; and the CSV checked
//! by python's own csv, json and hashlib.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::super::merkle::{self, Frontier};
use super::super::seal::{AuditSigner, KEY_FILE, ROOT_PUBLIC_KEY_FILE};
use super::super::test_support::{
    append_more, copy_with_key, event, forge, log_lines, relink, write_lines, write_log,
};
use super::super::verify::LOG_FILE;
use super::super::{AuditEvent, AuditLog, Outcome};
use super::*;

fn pinned(dir: &Path) -> AuditPublicKey {
    AuditPublicKey::from_pem(&std::fs::read(dir.join("key").join(ROOT_PUBLIC_KEY_FILE)).unwrap())
        .unwrap()
}

fn range(since: Option<&str>, until: Option<&str>) -> ExportRange {
    ExportRange::new(
        since.map(|s| s.parse().unwrap()),
        until.map(|s| s.parse().unwrap()),
    )
    .unwrap()
}

/// The records and the proof of an export of `range`.
fn export_of(dir: &Path, range: &ExportRange, format: ExportFormat) -> (Vec<u8>, Exported) {
    let mut out = Vec::new();
    let exported = export(dir, range, format, &mut out, Path::new("out")).unwrap();
    (out, exported)
}

fn check(
    records: &[u8],
    proof: &ExportProof,
    key: &AuditPublicKey,
) -> Result<ExportVerified, AuditError> {
    verify_export(records, Path::new("records"), proof, key)
}

/// Asserts that the export holds (the control next to every attack).
fn holds(records: &[u8], proof: &ExportProof, key: &AuditPublicKey) -> ExportVerified {
    check(records, proof, key).unwrap_or_else(|e| panic!("control: {e}"))
}

/// The break an export is refused with.
fn refusal(records: &[u8], proof: &ExportProof, key: &AuditPublicKey) -> ExportBreak {
    match check(records, proof, key) {
        Err(AuditError::ExportRefused { problem }) => *problem,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Records as JSON lines, each with its newline.
fn jsonl(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn lines_of(records: &[u8]) -> Vec<String> {
    String::from_utf8(records.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn seq_of_line(line: &str) -> u64 {
    serde_json::from_str::<AuditRecord>(line).unwrap().seq
}

/// Records 1-5 under the root key, 6-10 under epoch 1.
async fn two_epochs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5).await;
    append_more(dir.path(), 6, 5).await;
    dir
}

/// A log whose records carry `times` (one record each), as a log written over that time
/// would: written now, then re-timed, re-linked and re-signed with the key on the host
/// (one epoch, so the key that signs the checkpoint is still there).
async fn timed_log(times: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), times.len() as u64).await;
    let mut lines = log_lines(dir.path());
    for (line, time) in lines.iter_mut().zip(times) {
        *line = forge(line, |r| r.time = (*time).to_owned());
    }
    relink(&mut lines);
    write_lines(dir.path(), &lines);
    let key = AuditSigner::load(&dir.path().join("key").join(KEY_FILE))
        .unwrap()
        .unwrap();
    let old = checkpoint::read_checkpoint(&dir.path().join(CHECKPOINT_FILE)).unwrap();
    let frontier = Frontier::from_leaves(lines.iter().map(|l| merkle::leaf_hash(l.as_bytes())));
    let head = serde_json::from_str::<AuditRecord>(lines.last().unwrap()).unwrap();
    let signed = SignedCheckpoint::sign(
        &key,
        head.seq,
        head.hash,
        &frontier.root(),
        old.time,
        old.replica,
    );
    checkpoint::write(&dir.path().join(CHECKPOINT_FILE), &signed).unwrap();
    let report = super::super::verify(dir.path()).unwrap();
    assert!(report.is_intact(), "control: {report:?}");
    dir
}

const TIMES: [&str; 8] = [
    "2026-11-01T09:00:00.000Z",
    "2026-11-01T09:30:00.000Z",
    "2026-11-01T10:00:00.000Z",
    "2026-11-01T10:00:00.000Z",
    "2026-11-01T10:15:00.500Z",
    "2026-11-01T11:00:00.000Z",
    "2026-11-01T11:00:00.001Z",
    "2026-11-01T12:00:00.000Z",
];

#[tokio::test]
async fn jsonl_holds_the_records_byte_for_byte_and_verifies_across_key_epochs() {
    let dir = two_epochs().await;
    let key = pinned(dir.path());
    let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();

    let (records, exported) = export_of(dir.path(), &ExportRange::default(), ExportFormat::Jsonl);
    assert_eq!(records, log, "the whole log, byte for byte");
    let proof = &exported.proof;
    assert_eq!(
        (proof.first_seq, proof.last_seq, proof.count),
        (Some(1), Some(10), 10)
    );
    assert_eq!((&proof.before, &proof.after), (&None, &None));
    assert_eq!(proof.inclusion.index, 9, "the last record is proved");
    assert!(!exported.past_signed_head);
    let verified = holds(&records, proof, &key);
    assert_eq!((verified.count, verified.checkpoint.size), (10, 10));
    assert_eq!(verified.checkpoint.epoch, 1);
    assert!(verified.warnings.is_empty(), "{:?}", verified.warnings);
    let text = verified.to_string();
    assert!(
        text.starts_with("export OK: 10 records, seq 1 to 10, complete for the range [the start, the signed head]: it starts at the log's first record, it ends at the signed head (seq 10)"),
        "{text}"
    );
    assert!(text.contains("signed checkpoint: seq 10"), "{text}");

    // A seq range inside the first epoch: [2, 5) is 2, 3, 4; 1 before it, 5 after it.
    let lines = log_lines(dir.path());
    let (records, exported) = export_of(
        dir.path(),
        &range(Some("seq:2"), Some("seq:5")),
        ExportFormat::Jsonl,
    );
    assert_eq!(lines_of(&records), lines[1..4]);
    let proof = &exported.proof;
    assert_eq!(proof.before.as_deref(), Some(lines[0].as_str()));
    assert_eq!(proof.after.as_deref(), Some(lines[4].as_str()));
    assert_eq!(proof.inclusion.record, lines[4], "`after` is proved");
    assert_eq!(proof.inclusion.size, 10, "against the current checkpoint");
    let verified = holds(&records, proof, &key);
    assert_eq!(
        (
            verified.first_seq,
            verified.last_seq,
            verified.before_seq,
            verified.after_seq
        ),
        (Some(2), Some(4), Some(1), Some(5))
    );
    assert!(
        verified.to_string().starts_with(
            "export OK: 3 records, seq 2 to 4, complete for the range [seq:2, seq:5): seq 1 \
             before it is not in the range, seq 5 after it is at or past the range's end"
        ),
        "{verified}"
    );

    // The proof file reads back as written, and refuses what it does not know.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("proof.json");
    proof.write(&path).unwrap();
    assert_eq!(&ExportProof::read(&path).unwrap(), proof);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(value["schema"], EXPORT_SCHEMA);
    assert_eq!(value["range"]["since"], "seq:2");
    value["note"] = "trust me".into();
    let error = ExportProof::from_json(value.to_string().as_bytes()).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `note`"),
        "{error}"
    );
    value.as_object_mut().unwrap().remove("note");
    value["schema"] = "mayfly-audit-export/2".into();
    let error = ExportProof::from_json(value.to_string().as_bytes()).unwrap_err();
    assert!(error.to_string().contains("unknown variant"), "{error}");
    value["schema"] = EXPORT_SCHEMA.into();
    value["range"]["until"] = "seq:1".into();
    let error = ExportProof::from_json(value.to_string().as_bytes()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the range ends before it starts"),
        "{error}"
    );
}

/// since, until; the first and last seq of the slice; the seq before it and after it.
type Case<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<(u64, u64)>,
    Option<u64>,
    Option<u64>,
);

#[tokio::test]
async fn time_ranges_start_at_the_first_record_at_or_after_since_and_stop_before_until() {
    let dir = timed_log(&TIMES).await;
    let key = pinned(dir.path());
    let lines = log_lines(dir.path());
    let cases: [Case; 6] = [
        // Two records share 10:00; both are in, and 09:30 is before.
        (
            Some("2026-11-01T10:00:00Z"),
            Some("2026-11-01T11:00:00Z"),
            Some((3, 5)),
            Some(2),
            Some(6),
        ),
        // The same instant written with an offset.
        (
            Some("2026-11-01T11:00:00+01:00"),
            Some("2026-11-01T12:00:00+01:00"),
            Some((3, 5)),
            Some(2),
            Some(6),
        ),
        // Milliseconds count: 11:00:00.001 is at or after 11:00:00.001.
        (
            Some("2026-11-01T10:30:00Z"),
            Some("2026-11-01T11:00:00.001Z"),
            Some((6, 6)),
            Some(5),
            Some(7),
        ),
        // From the start; to the signed head.
        (
            None,
            Some("2026-11-01T09:30:00Z"),
            Some((1, 1)),
            None,
            Some(2),
        ),
        (
            Some("2026-11-01T11:30:00Z"),
            None,
            Some((8, 8)),
            Some(7),
            None,
        ),
        // A time and a seq mixed.
        (
            Some("seq:4"),
            Some("2026-11-01T11:00:00.001Z"),
            Some((4, 6)),
            Some(3),
            Some(7),
        ),
    ];
    for (since, until, seqs, before, after) in cases {
        let (records, exported) = export_of(dir.path(), &range(since, until), ExportFormat::Jsonl);
        let proof = &exported.proof;
        let case = format!("{since:?}..{until:?}");
        assert_eq!(proof.first_seq.zip(proof.last_seq), seqs, "{case}");
        let (first, last) = seqs.unwrap();
        assert_eq!(
            lines_of(&records),
            lines[first as usize - 1..last as usize],
            "{case}"
        );
        assert_eq!(proof.before.as_deref().map(seq_of_line), before, "{case}");
        assert_eq!(proof.after.as_deref().map(seq_of_line), after, "{case}");
        assert_eq!(
            exported.first_time.as_deref(),
            Some(TIMES[first as usize - 1]),
            "{case}"
        );
        let verified = holds(&records, proof, &key);
        assert_eq!(
            (verified.before_seq, verified.after_seq),
            (before, after),
            "{case}"
        );
        let (records, exported) = export_of(dir.path(), &range(since, until), ExportFormat::Csv);
        holds(&records, &exported.proof, &key);
    }
}

#[tokio::test]
async fn an_empty_range_proves_that_nothing_lies_in_it() {
    let dir = timed_log(&TIMES).await;
    let key = pinned(dir.path());
    for (since, until, before, after) in [
        ("2026-11-01T10:05:00Z", "2026-11-01T10:10:00Z", 4, 5),
        ("2026-11-01T10:05:00Z", "2026-11-01T10:05:00Z", 4, 5),
        ("seq:3", "seq:3", 2, 3),
    ] {
        for format in [ExportFormat::Jsonl, ExportFormat::Csv] {
            let (records, exported) =
                export_of(dir.path(), &range(Some(since), Some(until)), format);
            let proof = &exported.proof;
            assert_eq!(
                (proof.count, proof.first_seq, proof.last_seq),
                (0, None, None)
            );
            assert_eq!(proof.before.as_deref().map(seq_of_line), Some(before));
            assert_eq!(proof.after.as_deref().map(seq_of_line), Some(after));
            if format == ExportFormat::Jsonl {
                assert!(records.is_empty());
            }
            let verified = holds(&records, proof, &key);
            assert!(
                verified.to_string().starts_with(&format!(
                    "export OK: no record in the range [{since}, {until}): seq {before} before \
                     it is not in the range, seq {after} after it is at or past"
                )),
                "{verified}"
            );
        }
    }
    // Before every record, and after every record.
    let (records, exported) = export_of(
        dir.path(),
        &range(Some("2026-01-01T00:00:00Z"), Some("2026-01-02T00:00:00Z")),
        ExportFormat::Jsonl,
    );
    assert_eq!(exported.proof.before, None);
    assert_eq!(exported.proof.after.as_deref().map(seq_of_line), Some(1));
    holds(&records, &exported.proof, &key);
    let (records, exported) = export_of(
        dir.path(),
        &range(Some("seq:100"), None),
        ExportFormat::Jsonl,
    );
    assert_eq!(exported.proof.before.as_deref().map(seq_of_line), Some(8));
    assert_eq!(exported.proof.after, None);
    assert_eq!(
        exported.proof.inclusion.record,
        log_lines(dir.path())[7],
        "`before` is proved"
    );
    holds(&records, &exported.proof, &key);
}

#[tokio::test]
async fn a_range_past_the_signed_head_ends_there_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5).await;
    let at_five = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
    append_more(dir.path(), 6, 3).await;
    let key = pinned(dir.path());

    let (records, exported) = export_of(
        dir.path(),
        &range(Some("seq:4"), Some("seq:100")),
        ExportFormat::Jsonl,
    );
    assert!(exported.past_signed_head);
    assert_eq!(
        (exported.proof.last_seq, exported.proof.after.clone()),
        (Some(8), None)
    );
    let verified = holds(&records, &exported.proof, &key);
    assert!(
        verified.to_string().contains(
            "it ends at the signed head (seq 8): the range reaches past it, and later records \
             were not signed for when this was exported"
        ),
        "{verified}"
    );
    let (_, whole) = export_of(dir.path(), &ExportRange::default(), ExportFormat::Jsonl);
    assert!(!whole.past_signed_head, "no end asked for: nothing to say");

    // Records 6-8 not yet signed for: the checkpoint (put back to the one of 5 records, as
    // after a crash before the next one) covers 1-5 only, and only those are exported.
    std::fs::write(dir.path().join(CHECKPOINT_FILE), at_five).unwrap();
    assert!(
        super::super::verify(dir.path()).unwrap().is_intact(),
        "control"
    );
    let (records, exported) = export_of(
        dir.path(),
        &range(Some("seq:2"), Some("seq:7")),
        ExportFormat::Jsonl,
    );
    assert!(exported.past_signed_head);
    assert_eq!(lines_of(&records), log_lines(dir.path())[1..5]);
    assert_eq!(exported.proof.inclusion.size, 5);
    assert_eq!(exported.proof.after, None, "record 7 is not signed for yet");
    holds(&records, &exported.proof, &key);
}

/// A seq range [4, 8) of a two-epoch log, and the pinned key: the control of the attacks.
async fn sliced() -> (tempfile::TempDir, Vec<String>, ExportProof, AuditPublicKey) {
    let dir = two_epochs().await;
    let key = pinned(dir.path());
    let (records, exported) = export_of(
        dir.path(),
        &range(Some("seq:4"), Some("seq:8")),
        ExportFormat::Jsonl,
    );
    holds(&records, &exported.proof, &key);
    (dir, lines_of(&records), exported.proof, key)
}

fn place(seq: u64, line: u64) -> ExportPlace {
    ExportPlace::Line {
        line,
        seq: Some(seq),
    }
}

#[tokio::test]
async fn an_edited_record_is_named_by_line_and_seq() {
    let (_dir, lines, proof, key) = sliced().await;
    holds(&jsonl(&lines), &proof, &key);
    let mut edited = lines.clone();
    edited[1] = edited[1].replace("audience-5", "audience-X");
    let found = refusal(&jsonl(&edited), &proof, &key);
    assert_eq!(
        (found.place, found.check),
        (place(5, 2), ExportCheck::Edited)
    );
    // Re-hashed by someone who knows the format: the next record's link breaks.
    edited[1] = forge(&lines[1], |r| r.event.audience = Some("audience-X".into()));
    let found = refusal(&jsonl(&edited), &proof, &key);
    assert_eq!(
        (found.place, found.check),
        (place(6, 3), ExportCheck::Prev { previous: 5 })
    );
    assert_eq!(
        found_text(&jsonl(&edited), &proof, &key),
        "line 3 (seq 6): its prev is not the hash of the record before it (seq 5): a record \
         was replaced, or edited and re-hashed"
    );
    // Whitespace added, hash kept.
    edited[1] = lines[1].replacen(",", ", ", 1);
    let found = refusal(&jsonl(&edited), &proof, &key);
    assert_eq!(
        (found.place, found.check),
        (place(5, 2), ExportCheck::NotCanonical)
    );
}

fn found_text(records: &[u8], proof: &ExportProof, key: &AuditPublicKey) -> String {
    refusal(records, proof, key).to_string()
}

#[tokio::test]
async fn a_record_removed_or_added_in_the_middle_is_named() {
    let (_dir, lines, proof, key) = sliced().await;
    holds(&jsonl(&lines), &proof, &key);
    let mut removed = lines.clone();
    removed.remove(1);
    let found = refusal(&jsonl(&removed), &proof, &key);
    assert_eq!(
        (found.place, found.check),
        (
            place(6, 2),
            ExportCheck::Seq {
                expected: 5,
                found: 6
            }
        )
    );
    assert!(found_text(&jsonl(&removed), &proof, &key).contains("1 record left out before it"));

    let mut repeated = lines.clone();
    repeated.insert(2, lines[1].clone());
    let found = refusal(&jsonl(&repeated), &proof, &key);
    assert_eq!(
        (found.place, found.check),
        (
            place(5, 3),
            ExportCheck::Seq {
                expected: 6,
                found: 5
            }
        )
    );
    // A record made up at the end of the slice, linked to the last: it takes the seq of
    // `after`, which is the range's end.
    let mut added = lines.clone();
    let last = serde_json::from_str::<AuditRecord>(&lines[3]).unwrap();
    added.push(forge(&lines[3], |r| {
        r.seq = 8;
        r.prev = last.hash.clone();
        r.event.audience = Some("made-up".into());
    }));
    let mut proof_added = proof.clone();
    proof_added.count = 5;
    proof_added.last_seq = Some(8);
    let found = refusal(&jsonl(&added), &proof_added, &key);
    assert_eq!(found.place, place(8, 5));
    assert!(
        matches!(found.check, ExportCheck::PastUntil { .. }),
        "{found}"
    );
    // The count the proof states is checked too.
    let mut miscounted = proof.clone();
    miscounted.count = 3;
    let found = refusal(&jsonl(&lines), &miscounted, &key);
    assert_eq!(found.place, ExportPlace::Proof);
    assert!(
        matches!(found.check, ExportCheck::Stated { field: "count", .. }),
        "{found}"
    );
}

#[tokio::test]
async fn the_edges_of_the_slice_cannot_be_dropped() {
    let (dir, lines, proof, key) = sliced().await;
    holds(&jsonl(&lines), &proof, &key);

    // The first record dropped.
    let tail = &lines[1..];
    let mut shifted = proof.clone();
    shifted.count = 3;
    shifted.first_seq = Some(5);
    let found = refusal(&jsonl(tail), &shifted, &key);
    assert_eq!(
        (found.place, found.check),
        (
            place(5, 1),
            ExportCheck::Seq {
                expected: 4,
                found: 5
            }
        )
    );
    // ... and made the record before the slice: it is in the range.
    shifted.before = Some(lines[0].clone());
    let found = refusal(&jsonl(tail), &shifted, &key);
    assert_eq!(found.place, ExportPlace::Before { seq: Some(4) });
    assert!(
        matches!(found.check, ExportCheck::BeforeInRange { .. }),
        "{found}"
    );
    // ... or `before` dropped altogether.
    shifted.before = None;
    let found = refusal(&jsonl(tail), &shifted, &key);
    assert_eq!(
        (found.place, found.check),
        (place(5, 1), ExportCheck::NothingBefore)
    );

    // The last record dropped.
    let head = &lines[..3];
    let mut cut = proof.clone();
    cut.count = 3;
    cut.last_seq = Some(6);
    let found = refusal(&jsonl(head), &cut, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::After { seq: Some(8) },
            ExportCheck::Seq {
                expected: 7,
                found: 8
            }
        )
    );
    // ... and made the record after the slice: it is before the range's end.
    cut.after = Some(lines[3].clone());
    let found = refusal(&jsonl(head), &cut, &key);
    assert_eq!(found.place, ExportPlace::After { seq: Some(7) });
    assert!(
        matches!(found.check, ExportCheck::AfterInRange { .. }),
        "{found}"
    );
    // ... or `after` dropped, with the range made to run to the signed head.
    cut.after = None;
    cut.range = range(Some("seq:4"), None);
    let found = refusal(&jsonl(head), &cut, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::Proof,
            ExportCheck::ProvenNotLast { proven: 8, last: 6 }
        )
    );
    // ... with an inclusion proof of the new last record brought along.
    let ProofBundle::Inclusion(bundle) = prove_inclusion(dir.path(), 6, None).unwrap() else {
        panic!("inclusion")
    };
    cut.inclusion = bundle;
    let found = refusal(&jsonl(head), &cut, &key);
    assert_eq!(
        (found.place, found.check),
        (place(6, 3), ExportCheck::NotAtSignedHead { head: 10 })
    );

    // A record before the range added at the start, `before` moved back one.
    let log = log_lines(dir.path());
    let mut longer = vec![log[2].clone()];
    longer.extend(lines.iter().cloned());
    let mut grown = proof.clone();
    grown.count = 5;
    grown.first_seq = Some(3);
    grown.before = Some(log[1].clone());
    let found = refusal(&jsonl(&longer), &grown, &key);
    assert_eq!(found.place, place(3, 1));
    assert!(
        matches!(found.check, ExportCheck::BeforeSince { .. }),
        "{found}"
    );
    // The range's ends taken away, `before` and `after` kept.
    let mut open = proof.clone();
    open.range = range(None, Some("seq:8"));
    let found = refusal(&jsonl(&lines), &open, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::Before { seq: Some(3) },
            ExportCheck::BeforeWithoutSince
        )
    );
    open.range = range(Some("seq:4"), None);
    let found = refusal(&jsonl(&lines), &open, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::After { seq: Some(8) },
            ExportCheck::AfterWithoutUntil
        )
    );
}

#[tokio::test]
async fn a_before_or_after_swapped_for_another_record_is_refused() {
    let (dir, lines, proof, key) = sliced().await;
    holds(&jsonl(&lines), &proof, &key);
    let log = log_lines(dir.path());
    let before = proof.before.clone().unwrap();

    let mut swapped = proof.clone();
    swapped.before = Some(forge(&before, |r| r.event.audience = Some("other".into())));
    let found = refusal(&jsonl(&lines), &swapped, &key);
    assert_eq!(
        (found.place, found.check),
        (place(4, 1), ExportCheck::Prev { previous: 3 })
    );
    swapped.before = Some(log[1].clone());
    let found = refusal(&jsonl(&lines), &swapped, &key);
    assert_eq!(
        (found.place, found.check),
        (
            place(4, 1),
            ExportCheck::Seq {
                expected: 3,
                found: 4
            }
        )
    );

    let mut swapped = proof.clone();
    swapped.after = Some(forge(proof.after.as_ref().unwrap(), |r| {
        r.event.audience = Some("other".into());
    }));
    let found = refusal(&jsonl(&lines), &swapped, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::Proof,
            ExportCheck::ProvenNotLast { proven: 8, last: 8 }
        )
    );
    swapped.after = Some(log[9].clone());
    let found = refusal(&jsonl(&lines), &swapped, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::After { seq: Some(10) },
            ExportCheck::Seq {
                expected: 8,
                found: 10
            }
        )
    );
}

#[tokio::test]
async fn a_forged_bundle_or_another_pinned_key_is_refused() {
    let (dir, lines, proof, key) = sliced().await;
    holds(&jsonl(&lines), &proof, &key);
    let inclusion = |found: ExportBreak| match (found.place, found.check) {
        (ExportPlace::Proof, ExportCheck::Inclusion { reason }) => reason,
        other => panic!("{other:?}"),
    };

    let mut forged = proof.clone();
    let first = &mut forged.inclusion.proof[0];
    let flipped = if first.starts_with('0') { "1" } else { "0" };
    first.replace_range(0..1, flipped);
    let reason = inclusion(refusal(&jsonl(&lines), &forged, &key));
    assert!(
        reason.contains("is not in the tree the checkpoint signed"),
        "{reason}"
    );

    // A checkpoint signed by a key of the forger's own.
    let (forger, _) = AuditSigner::generate(1).unwrap();
    let mut forged = proof.clone();
    let checkpoint = &proof.inclusion.checkpoint;
    forged.inclusion.checkpoint = SignedCheckpoint::sign(
        &forger,
        checkpoint.seq,
        checkpoint.hash.clone(),
        &merkle::from_hex(&checkpoint.root).unwrap(),
        checkpoint.time.clone(),
        checkpoint.replica.clone(),
    );
    let reason = inclusion(refusal(&jsonl(&lines), &forged, &key));
    assert!(
        reason.contains("is not signed by the audit key of epoch 1"),
        "{reason}"
    );

    // A good bundle, but of another record.
    let mut other = proof.clone();
    let ProofBundle::Inclusion(bundle) = prove_inclusion(dir.path(), 9, None).unwrap() else {
        panic!("inclusion")
    };
    other.inclusion = bundle;
    let found = refusal(&jsonl(&lines), &other, &key);
    assert_eq!(
        found.check,
        ExportCheck::ProvenNotLast { proven: 9, last: 8 }
    );

    // Another root key pinned.
    let stranger = tempfile::tempdir().unwrap();
    write_log(stranger.path(), 1).await;
    let reason = inclusion(refusal(&jsonl(&lines), &proof, &pinned(stranger.path())));
    assert!(reason.contains("not the pinned key"), "{reason}");
}

/// A log with records whose fields a spreadsheet would take for formulas, or that need
/// quoting.
async fn awkward_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path()).unwrap();
    log.append(event(1)).await.unwrap();
    log.append(AuditEvent {
        action: "jwt.mint".into(),
        outcome: Outcome::Refused,
        actor: "=HYPERLINK(\"http://x\",\"y\")".into(),
        spiffe_id: Some("+spiffe://td/a".into()),
        audience: Some("-1+1".into()),
        serial: Some("@SUM(A1)".into()),
        reason: Some("line one\r\nline \"two\", with a comma".into()),
        detail: Some(serde_json::json!(-5)),
        ..Default::default()
    })
    .await
    .unwrap();
    log.append(AuditEvent {
        action: "entry.update".into(),
        actor: "admin:uid=1000".into(),
        entry_id: Some("e-1".into()),
        evidence_sha256: Some("ab".repeat(32)),
        detail: Some(serde_json::json!({"changed": ["ttl", "=x"], "a": "\ttab"})),
        ..Default::default()
    })
    .await
    .unwrap();
    log.close().await.unwrap();
    dir
}

#[tokio::test]
async fn csv_has_the_records_exactly_and_cells_a_spreadsheet_will_not_evaluate() {
    let dir = awkward_log().await;
    let key = pinned(dir.path());
    let lines = log_lines(dir.path());
    let (records, exported) = export_of(dir.path(), &ExportRange::default(), ExportFormat::Csv);
    let verified = holds(&records, &exported.proof, &key);
    assert_eq!(verified.count, 3);

    let mut reader = &records[..];
    let mut buf = Vec::new();
    let mut rows = Vec::new();
    while let Some(row) = csv::read_row(&mut reader, &mut buf, check::MAX_LINE_LEN).unwrap() {
        rows.push(row.unwrap());
    }
    assert_eq!(rows[0], csv::COLUMNS);
    let cell = |row: usize, column: &str| {
        rows[row][csv::COLUMNS.iter().position(|c| *c == column).unwrap()].clone()
    };
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            &cell(i + 1, "record"),
            line,
            "the record column is the stored line"
        );
    }
    assert_eq!(cell(2, "actor"), "'=HYPERLINK(\"http://x\",\"y\")");
    assert_eq!(cell(2, "spiffe_id"), "'+spiffe://td/a");
    assert_eq!(cell(2, "audience"), "'-1+1");
    assert_eq!(cell(2, "serial"), "'@SUM(A1)");
    assert_eq!(cell(2, "detail"), "'-5");
    assert_eq!(cell(2, "reason"), "line one\r\nline \"two\", with a comma");
    assert_eq!(cell(2, "outcome"), "refused");
    assert_eq!(cell(3, "detail"), r#"{"a":"\ttab","changed":["ttl","=x"]}"#);
    assert_eq!(cell(3, "entry_id"), "e-1");
    assert_eq!(cell(1, "jti"), "jti-1");
    assert!(
        cell(2, "record").starts_with("{\"seq\":2,"),
        "never defused"
    );
    assert!(
        records.starts_with(b"seq,time,action,outcome,actor,spiffe_id,entry_id,audience,serial,jti,evidence_sha256,reason,detail,prev,hash,record\r\n")
    );

    // A person's cell edited, the record left alone: the row and column are named.
    let text = String::from_utf8(records.clone()).unwrap();
    let edited = text.replacen("'@SUM(A1)", "'@SUM(A2)", 1);
    let found = refusal(edited.as_bytes(), &exported.proof, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::Row {
                row: 3,
                seq: Some(2)
            },
            ExportCheck::Cell { column: "serial" }
        )
    );
    // The record edited, the cells left alone.
    let edited = text.replacen("\"\"jti\"\":\"\"jti-1\"\"", "\"\"jti\"\":\"\"jti-7\"\"", 1);
    assert_ne!(edited, text);
    let found = refusal(edited.as_bytes(), &exported.proof, &key);
    assert_eq!(
        (found.place, found.check),
        (
            ExportPlace::Row {
                row: 2,
                seq: Some(1)
            },
            ExportCheck::Edited
        )
    );
    // A row removed.
    let rows_text: Vec<&str> = text.split_inclusive("\r\n").collect();
    let without: String = rows_text
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, r)| *r)
        .collect();
    let found = refusal(without.as_bytes(), &exported.proof, &key);
    assert_eq!(found.check, ExportCheck::NothingBefore, "{found}");
    // Not CSV at all, or another header.
    let found = refusal(b"hello\n", &exported.proof, &key);
    assert_eq!(found.place, ExportPlace::Records);
    let found = refusal(
        text.replacen("seq,time", "seq,when", 1).as_bytes(),
        &exported.proof,
        &key,
    );
    assert_eq!(found.place, ExportPlace::Row { row: 1, seq: None });
    let found = refusal(
        text.replacen("\"{\"\"seq\"\":3", "{\"seq\":3", 1)
            .as_bytes(),
        &exported.proof,
        &key,
    );
    assert!(matches!(found.check, ExportCheck::Format { .. }), "{found}");
}

#[tokio::test]
async fn a_time_range_on_a_clock_set_back_warns() {
    let mut times = TIMES;
    times[5] = "2026-11-01T09:45:00.000Z";
    let dir = timed_log(&times).await;
    let key = pinned(dir.path());
    let (records, exported) = export_of(
        dir.path(),
        &range(Some("2026-11-01T10:00:00Z"), Some("2026-11-01T11:30:00Z")),
        ExportFormat::Jsonl,
    );
    // Record 6 (09:45) sits between 5 and 7 in the chain: it is in the slice.
    assert_eq!(
        exported.proof.first_seq.zip(exported.proof.last_seq),
        Some((3, 7))
    );
    let verified = holds(&records, &exported.proof, &key);
    assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
    assert!(
        verified.warnings[0].contains(
            "go back from 2026-11-01T10:15:00.500Z (seq 5) to 2026-11-01T09:45:00.000Z (seq 6)"
        ),
        "{:?}",
        verified.warnings
    );
    let (records, exported) =
        export_of(dir.path(), &range(Some("seq:2"), None), ExportFormat::Jsonl);
    let verified = holds(&records, &exported.proof, &key);
    assert!(
        !verified.warnings[0].contains("inside the range"),
        "a seq range is not affected"
    );
    let calm = timed_log(&TIMES).await;
    let (records, exported) = export_of(calm.path(), &ExportRange::default(), ExportFormat::Jsonl);
    assert!(
        holds(&records, &exported.proof, &pinned(calm.path()))
            .warnings
            .is_empty(),
        "control"
    );
}

#[tokio::test]
async fn a_log_that_does_not_verify_or_is_not_signed_gets_no_export() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 4).await;
    export_of(dir.path(), &ExportRange::default(), ExportFormat::Jsonl);
    let copy = copy_with_key(dir.path());
    let mut lines = log_lines(copy.path());
    lines[3] = lines[3].replace("audience-4", "audience-X");
    write_lines(copy.path(), &lines);
    let refused = |range: &ExportRange| {
        export(
            copy.path(),
            range,
            ExportFormat::Jsonl,
            &mut Vec::new(),
            Path::new("out"),
        )
        .unwrap_err()
        .to_string()
    };
    let error = refused(&ExportRange::default());
    assert!(error.contains("record 4 of the audit log"), "{error}");
    assert!(error.contains("does not verify"), "{error}");
    // An edit past the slice is found too: the whole log is verified for the proof.
    let error = refused(&range(None, Some("seq:2")));
    assert!(error.contains("does not verify (line 4 (seq 4)"), "{error}");

    std::fs::remove_file(copy.path().join(CHECKPOINT_FILE)).unwrap();
    let error = refused(&ExportRange::default());
    assert!(error.contains("checkpoint.json in"), "{error}");
    assert!(error.contains("does not exist"), "{error}");
}

#[tokio::test]
async fn an_export_file_is_written_whole_or_not_at_all() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = two_epochs().await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("slice.csv");
    let exported = export_to_file(
        dir.path(),
        &range(Some("seq:3"), None),
        ExportFormat::Csv,
        &path,
    )
    .unwrap();
    assert_eq!(exported.proof.count, 8);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let records = std::fs::read(&path).unwrap();
    holds(&records, &exported.proof, &pinned(dir.path()));
    let proof_path = out.path().join("slice.csv.proof.json");
    exported.proof.write(&proof_path).unwrap();
    let mode = std::fs::metadata(&proof_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);

    // A failed export (nothing signed) leaves the earlier file as it was, and no other.
    let empty = tempfile::tempdir().unwrap();
    assert!(
        export_to_file(
            empty.path(),
            &ExportRange::default(),
            ExportFormat::Csv,
            &path
        )
        .is_err()
    );
    assert_eq!(std::fs::read(&path).unwrap(), records);
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 2);
}

#[test]
fn bounds_are_a_seq_or_an_rfc_3339_time_and_nothing_else() {
    let seq: ExportBound = "seq:120".parse().unwrap();
    assert_eq!(seq.to_string(), "seq:120");
    let time: ExportBound = "2026-11-01T01:00:00+01:00".parse().unwrap();
    assert_eq!(time.to_string(), "2026-11-01T01:00:00+01:00");
    let utc: ExportBound = "2026-11-01T00:00:00Z".parse().unwrap();
    assert!(
        ExportRange::new(Some(time.clone()), Some(utc.clone())).is_ok(),
        "the same instant"
    );
    assert!(matches!(
        "120".parse::<ExportBound>(),
        Err(BoundError::BareNumber { .. })
    ));
    assert!(
        "120"
            .parse::<ExportBound>()
            .unwrap_err()
            .to_string()
            .contains("write seq:120 for a record number")
    );
    for bad in ["seq:0", "seq:x", "seq:", "seq:-1"] {
        assert!(
            matches!(bad.parse::<ExportBound>(), Err(BoundError::BadSeq { .. })),
            "{bad}"
        );
    }
    for bad in ["2026-11-01", "yesterday", "2026-13-01T00:00:00Z", ""] {
        assert!(
            matches!(bad.parse::<ExportBound>(), Err(BoundError::BadTime { .. })),
            "{bad}"
        );
    }
    let later: ExportBound = "2026-11-02T00:00:00Z".parse().unwrap();
    assert!(matches!(
        ExportRange::new(Some(later.clone()), Some(utc.clone())),
        Err(BoundError::Reversed { .. })
    ));
    assert!(ExportRange::new(Some(utc), Some(later)).is_ok(), "control");
    assert!(matches!(
        ExportRange::new(
            Some("seq:5".parse().unwrap()),
            Some("seq:4".parse().unwrap())
        ),
        Err(BoundError::Reversed { .. })
    ));
    assert!(
        ExportRange::new(Some(seq), Some("2020-01-01T00:00:00Z".parse().unwrap())).is_ok(),
        "mixed: not compared"
    );
}

/// The CSV read by python's csv module, each record's hash recomputed with hashlib from
/// the `record` column as record.rs defines it (the line without its `hash` field), and
/// the `prev` links and seqs checked: nothing of this crate reads the file.
#[tokio::test]
async fn python_checks_the_csv_independently() {
    const SCRIPT: &str = r#"
import csv, hashlib, json, sys
with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
prev, seq = None, None
for row in rows:
    line = row["record"]
    record = json.loads(line)
    suffix = ',"hash":"%s"}' % record["hash"]
    if not line.endswith(suffix): sys.exit("seq %s: hash is not the last field" % record["seq"])
    canonical = line[: -len(suffix)] + "}"
    without = dict(record); del without["hash"]
    if json.loads(canonical) != without: sys.exit("seq %s: canonical form" % record["seq"])
    if hashlib.sha256(canonical.encode()).hexdigest() != record["hash"]:
        sys.exit("seq %s: hash mismatch" % record["seq"])
    if row["hash"] != record["hash"] or row["seq"] != str(record["seq"]):
        sys.exit("seq %s: columns" % record["seq"])
    if prev is not None and (record["prev"] != prev or record["seq"] != seq + 1):
        sys.exit("seq %s: chain broken" % record["seq"])
    prev, seq = record["hash"], record["seq"]
print("csv ok %d" % len(rows))
"#;
    let dir = awkward_log().await;
    append_more(dir.path(), 4, 3).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("export.csv");
    let (records, _) = export_of(dir.path(), &ExportRange::default(), ExportFormat::Csv);
    let python = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        std::process::Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(&path)
            .output()
            .expect("python3 runs")
    };
    let ran = python(&records);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "csv ok 6");

    // Negative controls: an edited record, and one re-hashed after its edit.
    let text = String::from_utf8(records).unwrap();
    let edited = text.replacen("\"\"jti\"\":\"\"jti-1\"\"", "\"\"jti\"\":\"\"jti-9\"\"", 1);
    assert_ne!(edited, text);
    let ran = python(edited.as_bytes());
    assert!(!ran.status.success());
    assert!(String::from_utf8_lossy(&ran.stderr).contains("seq 1: hash mismatch"));
    let line = log_lines(dir.path())[4].clone();
    let forged = forge(&line, |r| r.event.audience = Some("audience-X".into()));
    let quote = |l: &str| format!("\"{}\"", l.replace('"', "\"\""));
    // The record and its `hash` cell (followed by the record cell's opening quote) replaced.
    let hash = |l: &str| serde_json::from_str::<AuditRecord>(l).unwrap().hash;
    let rehashed = text.replacen(&quote(&line), &quote(&forged), 1).replacen(
        &format!(",{},\"{{", hash(&line)),
        &format!(",{},\"{{", hash(&forged)),
        1,
    );
    assert_ne!(rehashed, text);
    let ran = python(rehashed.as_bytes());
    assert!(!ran.status.success());
    assert!(
        String::from_utf8_lossy(&ran.stderr).contains("seq 6: chain broken"),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

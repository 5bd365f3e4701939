//! The attacks of someone who can write the data directory, knows the format and can read
//! the current audit key: each is detected, with the place named, by the log's own key
//! chain, or by a checkpoint kept elsewhere (an anchor, an auditor's copy), or by the root
//! key an auditor pinned. Every attack runs on a copy, next to the untouched original.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::super::AuditLog;
use super::super::merkle::{self, Frontier};
use super::super::seal::{AuditSigner, KEY_FILE, ROOT_PUBLIC_KEY_FILE};
use super::super::test_support::{
    append_more, copy_dir, copy_files, forge, log_lines, relink, write_lines, write_log,
};
use super::super::trust::KEYS_FILE;
use super::*;

/// Two key epochs: records 1-4 under the root key (epoch 0), 5-8 under epoch 1, which took
/// over at size 4 with a hand-over the root key signed (and the root key then erased).
async fn two_epochs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 4).await;
    append_more(dir.path(), 5, 4).await;
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "control: {report:?}");
    assert_eq!(report.records, 8);
    let epochs: Vec<(u64, u64)> = report
        .keys
        .iter()
        .map(|key| (key.epoch, key.from_size))
        .collect();
    assert_eq!(epochs, [(0, 0), (1, 4)], "every open starts an epoch");
    assert_eq!(report.signed_through, 8);
    dir
}

/// The key an insider reads from the host: the current epoch's.
fn stolen_key(original: &Path) -> AuditSigner {
    AuditSigner::load(&original.join("key").join(KEY_FILE))
        .unwrap()
        .unwrap()
}

/// What an insider with `key` writes as checkpoint.json for the lines now in `dir`.
fn resign(dir: &Path, key: &AuditSigner) {
    let lines = log_lines(dir);
    let frontier = Frontier::from_leaves(lines.iter().map(|l| merkle::leaf_hash(l.as_bytes())));
    let head = serde_json::from_str::<AuditRecord>(lines.last().unwrap()).unwrap();
    let checkpoint = SignedCheckpoint::sign(
        key,
        head.seq,
        head.hash,
        &frontier.root(),
        "2026-12-03T00:00:00.000Z".into(),
        "local".into(),
    );
    checkpoint::write(&dir.join(checkpoint::CHECKPOINT_FILE), &checkpoint).unwrap();
}

fn kept_checkpoint(dir: &Path) -> SignedCheckpoint {
    checkpoint::read_checkpoint(&dir.join(checkpoint::CHECKPOINT_FILE)).unwrap()
}

fn with_checkpoints(checkpoints: Vec<SignedCheckpoint>) -> VerifyOptions {
    VerifyOptions {
        public_key: None,
        checkpoints,
    }
}

#[tokio::test]
async fn an_edit_before_the_last_hand_over_is_named_although_the_checkpoint_is_re_signed() {
    let original = two_epochs().await;
    let copy = copy_dir(original.path());
    let mut lines = log_lines(copy.path());
    lines[1] = forge(&lines[1], |r| r.event.audience = Some("audience-x".into()));
    relink(&mut lines);
    write_lines(copy.path(), &lines);
    resign(copy.path(), &stolen_key(original.path()));

    let problem = verify(copy.path()).unwrap().problem.expect("detected");
    assert_eq!(
        problem.kind,
        BreakKind::HandoverMismatch { epoch: 1, since: 0 }
    );
    assert_eq!((problem.line, problem.seq), (4, Some(4)));
    assert!(
        problem
            .to_string()
            .contains("records between seq 1 and seq 4 were rewritten"),
        "{problem}"
    );

    // Re-pointing the hand-over at the forged tree needs the erased root key's signature.
    let frontier =
        Frontier::from_leaves(lines[..4].iter().map(|l| merkle::leaf_hash(l.as_bytes())));
    let mut keys: Vec<Handover> = std::fs::read_to_string(copy.path().join(KEYS_FILE))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    keys[1].root = merkle::to_hex(&frontier.root());
    keys[1].head = serde_json::from_str::<AuditRecord>(&lines[3]).unwrap().hash;
    let text: String = keys
        .iter()
        .map(|k| serde_json::to_string(k).unwrap() + "\n")
        .collect();
    std::fs::write(copy.path().join(KEYS_FILE), text).unwrap();
    let problem = verify(copy.path()).unwrap().problem.expect("detected");
    assert_eq!(
        problem.kind,
        BreakKind::HandoverSignature { epoch: 1, since: 0 }
    );
    assert!(
        problem
            .to_string()
            .contains("not signed by the key of epoch 0"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_removed_record_renumbered_and_re_hashed_is_named_by_the_hand_over() {
    let original = two_epochs().await;
    let copy = copy_dir(original.path());
    let mut lines = log_lines(copy.path());
    lines.remove(2);
    relink(&mut lines);
    write_lines(copy.path(), &lines);
    resign(copy.path(), &stolen_key(original.path()));
    let problem = verify(copy.path()).unwrap().problem.expect("detected");
    assert_eq!(
        (problem.line, problem.kind),
        (4, BreakKind::HandoverMismatch { epoch: 1, since: 0 })
    );
}

#[tokio::test]
async fn an_edit_in_the_current_epoch_is_caught_by_a_checkpoint_kept_elsewhere() {
    let original = two_epochs().await;
    let anchored = kept_checkpoint(original.path());
    let copy = copy_dir(original.path());
    let mut lines = log_lines(copy.path());
    lines[5] = forge(&lines[5], |r| r.event.audience = Some("audience-x".into()));
    relink(&mut lines);
    write_lines(copy.path(), &lines);
    resign(copy.path(), &stolen_key(original.path()));

    // No hand-over follows the edit, and the current key's holder can re-sign its own
    // epoch: the log alone cannot tell (why anchors exist).
    let alone = verify(copy.path()).unwrap();
    assert!(alone.is_intact(), "{alone:?}");
    let report = verify_with(copy.path(), &with_checkpoints(vec![anchored.clone()])).unwrap();
    let problem = report.problem.expect("detected");
    assert_eq!(
        (problem.line, problem.kind),
        (8, BreakKind::CheckpointMismatch { seq: 8 })
    );
    let control = verify_with(original.path(), &with_checkpoints(vec![anchored])).unwrap();
    assert!(control.is_intact(), "control: {control:?}");
}

#[tokio::test]
async fn a_rollback_with_its_matching_checkpoint_is_caught_by_a_later_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 4).await;
    let snapshot = copy_dir(dir.path());
    append_more(dir.path(), 5, 4).await;
    let later = kept_checkpoint(dir.path());
    copy_files(snapshot.path(), dir.path());

    let alone = verify(dir.path()).unwrap();
    assert!(alone.is_intact(), "a consistent older copy: {alone:?}");
    let report = verify_with(dir.path(), &with_checkpoints(vec![later])).unwrap();
    let problem = report.problem.expect("detected");
    assert_eq!(
        problem.kind,
        BreakKind::Truncated {
            checkpoint_seq: 8,
            last_seq: 4
        }
    );
}

#[tokio::test]
async fn a_removed_or_unsigned_checkpoint_over_a_cut_tail_is_caught() {
    let original = two_epochs().await;
    let sixth = serde_json::from_str::<AuditRecord>(&log_lines(original.path())[5])
        .unwrap()
        .hash;
    let legacy = format!("{{\"seq\":6,\"hash\":\"{sixth}\"}}\n");
    for replace_with in [None, Some(legacy)] {
        let copy = copy_dir(original.path());
        let mut lines = log_lines(copy.path());
        lines.truncate(6);
        write_lines(copy.path(), &lines);
        let path = copy.path().join(checkpoint::CHECKPOINT_FILE);
        match &replace_with {
            None => std::fs::remove_file(&path).unwrap(),
            Some(legacy) => std::fs::write(&path, legacy).unwrap(),
        }
        let problem = verify(copy.path()).unwrap().problem.expect("detected");
        assert!(
            matches!(problem.kind, BreakKind::CheckpointMissing { .. }),
            "{problem:?}"
        );
    }
}

#[tokio::test]
async fn a_checkpoint_signed_without_the_key_is_caught() {
    let original = two_epochs().await;
    let copy = copy_dir(original.path());
    let (forger, _) = AuditSigner::generate(2).unwrap();
    resign(copy.path(), &forger);
    let problem = verify(copy.path()).unwrap().problem.expect("detected");
    assert_eq!(
        problem.kind,
        BreakKind::CheckpointSignature { seq: 8, epoch: 2 }
    );
    resign(copy.path(), &stolen_key(original.path()));
    assert!(
        verify(copy.path()).unwrap().is_intact(),
        "control: the right key"
    );
}

#[tokio::test]
async fn a_log_re_made_under_a_new_key_fails_the_pinned_key_and_an_old_checkpoint() {
    let original = two_epochs().await;
    let pinned = AuditPublicKey::from_pem(
        &std::fs::read(original.path().join("key").join(ROOT_PUBLIC_KEY_FILE)).unwrap(),
    )
    .unwrap();
    let old = kept_checkpoint(original.path());

    // The insider re-makes everything: records edited, a new root key, a new chain.
    let remade = tempfile::tempdir().unwrap();
    let mut lines = log_lines(original.path());
    lines[1] = forge(&lines[1], |r| r.event.audience = Some("audience-x".into()));
    relink(&mut lines);
    let forged = tempfile::tempdir().unwrap();
    write_lines(forged.path(), &lines);
    // A log opened over the forged records gets a genuine-looking chain of its own.
    copy_files(forged.path(), remade.path());
    let log = AuditLog::open(remade.path()).unwrap();
    log.close().await.unwrap();
    let alone = verify(remade.path()).unwrap();
    assert!(alone.is_intact(), "consistent with itself: {alone:?}");

    let pinned_options = VerifyOptions {
        public_key: Some(pinned),
        checkpoints: Vec::new(),
    };
    let problem = verify_with(remade.path(), &pinned_options)
        .unwrap()
        .problem
        .expect("detected");
    assert!(
        matches!(problem.kind, BreakKind::UnpinnedKey { .. }),
        "{problem:?}"
    );
    let problem = verify_with(remade.path(), &with_checkpoints(vec![old]))
        .unwrap()
        .problem
        .expect("detected");
    assert!(
        matches!(problem.kind, BreakKind::CheckpointSignature { .. }),
        "{problem:?}"
    );

    let control = verify_with(original.path(), &pinned_options).unwrap();
    assert!(
        control.is_intact() && control.pinned,
        "control: {control:?}"
    );
}

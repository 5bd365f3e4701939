//! [`AuditLog`]: the handle the broker appends through.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::AuditError;
use super::checkpoint::{self, Checkpoint};
use super::private;
use super::record::{AuditEvent, AuditReceipt};
use super::verify::{LOG_FILE, scan};
use super::writer::{self, Command, MAX_BATCH, Writer};

/// Appends waiting for the writer; beyond this, `append` waits for room (backpressure)
/// instead of queueing without bound while the disk is slow.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// What [`AuditLog::queue`] hands back: the outcome of one record, once its batch is durable.
type Receipt = oneshot::Receiver<Result<AuditReceipt, AuditError>>;

/// The append-only, hash-chained audit log of one broker.
///
/// A cheap handle: clones share one writer thread, which owns the file. Dropping every clone
/// stops the writer after it has written what is queued; [`close`](Self::close) does the same
/// and waits for it.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    commands: mpsc::Sender<Command>,
    /// Becomes true once the writer has stopped and released the file.
    stopped: watch::Receiver<bool>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.inner.dir)
            .field("closed", &self.inner.commands.is_closed())
            .finish()
    }
}

impl AuditLog {
    /// Opens or creates `<dir>/audit.log` and starts its writer thread.
    ///
    /// The log and its checkpoint are created with mode 0600, and an existing log that others
    /// may read is narrowed to 0600, with a log line.
    ///
    /// Verifies the whole existing log first (time linear in its size), and continues the
    /// chain from its last record. A final line without its newline is a record whose write
    /// a crash interrupted; it was never acknowledged, so it is cut off, with a warning.
    /// Blocking: call it at startup or from `spawn_blocking`.
    ///
    /// # Errors
    /// - [`AuditError::Broken`] if the existing log does not verify (edited, reordered,
    ///   truncated…): the server must not build on it; an operator has to look at it.
    /// - [`AuditError::Locked`] if another `AuditLog` (in any process) has it open.
    /// - [`AuditError::Io`] if the directory or files cannot be created, read or locked, or
    ///   the log's mode cannot be narrowed (a log owned by another user).
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        private::create_dir_all(dir).map_err(|e| AuditError::io("create", dir, e))?;
        let path = dir.join(LOG_FILE);
        let file = private::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;
        lock(&file, &path)?;
        restrict_log(&file, &path)?;
        // A record is acknowledged once its bytes are synced, which is worthless if the file
        // itself can vanish in a crash because its directory entry was never synced.
        sync_dir(dir)?;
        let (len, head) = recover(dir, &file, &path)?;
        checkpoint::write(dir, &head).map_err(|e| AuditError::io("write checkpoint in", dir, e))?;
        tracing::info!(dir = %dir.display(), head_seq = head.seq, "audit log open");
        let writer = Writer {
            dir: dir.to_owned(),
            path,
            file,
            len,
            head,
            halted: false,
            unanchored: false,
        };
        Self::start(writer)
    }

    fn start(writer: Writer) -> Result<AuditLog, AuditError> {
        let dir = writer.dir.clone();
        let (commands, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (stopped_tx, stopped) = watch::channel(false);
        std::thread::Builder::new()
            .name("mayfly-audit".into())
            .spawn(move || writer::run(stopped_tx, writer, receiver))
            .map_err(|e| AuditError::io("start writer thread for", &dir, e))?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                dir,
                commands,
                stopped,
            }),
        })
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends a record and returns once it is durable on disk (fdatasync'd), together with
    /// every other record that was waiting (group commit).
    ///
    /// If this future is dropped after the record was queued, the record is still written.
    ///
    /// # Errors
    /// Each means the record is not in the log, so the request it records must be refused:
    /// - [`AuditError::Write`] if writing or syncing its batch failed.
    /// - [`AuditError::Halted`] if an earlier failure left the file in an unknown state.
    /// - [`AuditError::Closed`] if the log was closed or its writer thread is gone.
    /// - [`AuditError::Encode`] if the event could not be encoded (a bug).
    pub async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        let receipt = self.queue(event).await?;
        receipt.await.map_err(|_| AuditError::Closed)?
    }

    /// Queues one record for the writer; the receiver answers once it is durable.
    async fn queue(&self, event: AuditEvent) -> Result<Receipt, AuditError> {
        let (reply, receipt) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Append { event, reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        Ok(receipt)
    }

    /// Appends several records and returns once all are durable, each with its own outcome,
    /// in order. They are queued back to back, so they share a group commit instead of each
    /// waiting for its own.
    ///
    /// # Errors
    /// Per record, as [`append`](Self::append).
    pub async fn append_all(
        &self,
        events: Vec<AuditEvent>,
    ) -> Vec<Result<AuditReceipt, AuditError>> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            pending.push(self.queue(event).await);
        }
        let mut receipts = Vec::with_capacity(pending.len());
        for receipt in pending {
            receipts.push(match receipt {
                Ok(receipt) => receipt.await.unwrap_or(Err(AuditError::Closed)),
                Err(e) => Err(e),
            });
        }
        receipts
    }

    /// Stops the writer for every clone of this handle: appends already queued are written,
    /// later ones fail with [`AuditError::Closed`]. Returns once the writer has stopped and
    /// released the file, so the log can be opened again at once. Calling it again, from any
    /// clone, is harmless.
    ///
    /// # Errors
    /// [`AuditError::Closed`] if the writer thread died (panicked) instead of stopping:
    /// appends that were waiting on it have failed.
    pub async fn close(&self) -> Result<(), AuditError> {
        // An error means a close is already under way; waiting below is all that is left.
        let _ = self.inner.commands.send(Command::Close).await;
        let mut stopped = self.inner.stopped.clone();
        stopped
            .wait_for(|stopped| *stopped)
            .await
            .map(|_| ())
            .map_err(|_| AuditError::Closed)
    }
}

/// Narrows the log to mode 0600 if others may read it (earlier versions created it 0644).
fn restrict_log(file: &File, path: &Path) -> Result<(), AuditError> {
    let narrowed =
        private::restrict(file).map_err(|e| AuditError::io("restrict permissions of", path, e))?;
    if let Some(mode) = narrowed {
        tracing::info!(
            path = %path.display(),
            old_mode = format!("{mode:o}"),
            "audit log was readable by others; its mode is now 600"
        );
    }
    Ok(())
}

/// Takes the advisory lock: two writers would both continue the chain from the same head.
fn lock(file: &File, path: &Path) -> Result<(), AuditError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(AuditError::io("lock", path, e)),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("sync", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), AuditError> {
    // Directories cannot be opened for syncing here; the file system orders metadata itself.
    Ok(())
}

/// Verifies the existing log and cuts off a torn final line. Returns the length and head to
/// continue from.
fn recover(dir: &Path, file: &File, path: &Path) -> Result<(u64, Checkpoint), AuditError> {
    let checkpoint = checkpoint::read(dir)?;
    let scan = scan(BufReader::new(file), &checkpoint, path)?;
    if let Some(problem) = scan.report.problem {
        return Err(AuditError::Broken {
            dir: dir.to_owned(),
            problem,
        });
    }
    for note in &scan.report.notes {
        tracing::warn!(dir = %dir.display(), "audit log: {note}");
    }
    if let Some(torn) = scan.torn_len {
        tracing::warn!(path = %path.display(), bytes = torn,
            "audit log ends with a record a crash interrupted; it was never acknowledged, removing it");
        file.set_len(scan.good_len)
            .and_then(|()| file.sync_data())
            .map_err(|e| AuditError::io("truncate torn record in", path, e))?;
    }
    let head = Checkpoint {
        seq: scan.report.head_seq,
        hash: scan.report.head_hash,
    };
    Ok((scan.good_len, head))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeSet;

    use super::super::test_support::{copy_dir, event, log_lines, write_lines, write_log};
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
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
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
        let control = copy_dir(dir.path());
        let tampered = copy_dir(dir.path());
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
    async fn unreadable_checkpoint_is_a_note_and_rewritten_at_open() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 3).await;
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
}

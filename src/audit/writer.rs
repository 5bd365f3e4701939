//! The writer thread: group commit of every record that is waiting, one fdatasync per batch.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tokio::sync::{mpsc, oneshot, watch};

use super::AuditError;
use super::checkpoint::{self, Checkpoint};
use super::record::{AuditEvent, AuditReceipt, canonical_bytes, line_bytes, normalize, sha256_hex};

/// Most records one fdatasync covers. Large enough that a burst rarely needs two syncs, small
/// enough that the first waiter of a batch is not held up writing megabytes.
pub(super) const MAX_BATCH: usize = 1024;

/// RFC 3339, UTC, milliseconds.
const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Where the writer sends one append's outcome.
pub(super) type Reply = oneshot::Sender<Result<AuditReceipt, AuditError>>;

/// What the writer thread is asked to do.
// `Close` is sent once per log; boxing every append to make it smaller would cost an
// allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Command {
    /// Append one record; the receipt goes back once it is durable.
    Append { event: AuditEvent, reply: Reply },
    /// Write what is queued, then stop.
    Close,
}

/// Owns the log file: only this thread ever writes it, so seq and prev need no lock.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    /// Opened for append, so a write after a rollback lands at the new end.
    pub(super) file: File,
    /// Length of the file up to the last durable record.
    pub(super) len: u64,
    /// The last durable record, which the next one links to.
    pub(super) head: Checkpoint,
    /// Set when a failed write could not be rolled back.
    pub(super) halted: bool,
    /// Records were made durable since the last checkpoint.
    pub(super) unanchored: bool,
    /// Told of every batch made durable (metrics), once one is set.
    pub(super) observer: Observer,
}

/// The longest the checkpoint lags the log, under load and when idle.
pub(super) const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What is told of every batch the writer commits: for metrics, never on
/// the path of a waiter's answer beyond a call that must not block.
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    /// A batch of `records` was written and fdatasync'd (`durable`), or its
    /// write failed, `took` after it was taken from the queue; the log's
    /// head is then at `head_seq`.
    fn committed(&self, records: usize, took: std::time::Duration, durable: bool, head_seq: u64);
}

/// The observer the writer thread reads, set once after the log is open.
pub(super) type Observer = Arc<std::sync::OnceLock<Arc<dyn CommitObserver>>>;

/// One append that is waiting for its batch to be durable.
struct Waiter {
    reply: Reply,
    receipt: AuditReceipt,
}

/// The writer thread's body. Runs until `Close` arrives or every sender is gone, then drains
/// what is queued. `stopped` is set to true once the file (and its lock) is released and the
/// last checkpoint written; a panic drops it unset, which `AuditLog::close` reports.
///
/// The checkpoint (a rename, which ext4 turns into a flush of its journal, milliseconds on
/// a busy disk) is written by a thread of its own ([`write_checkpoints`]), so the writer never
/// stalls the appends behind it: after each batch it only hands over the new head.
pub(super) fn run(
    stopped: watch::Sender<bool>,
    mut writer: Writer,
    mut commands: mpsc::Receiver<Command>,
) {
    let (anchors, heads) = std::sync::mpsc::channel::<Checkpoint>();
    let dir = writer.dir.clone();
    let checkpointer = std::thread::Builder::new()
        .name("mayfly-audit-checkpoint".into())
        .spawn(move || write_checkpoints(&dir, &heads))
        .inspect_err(|e| {
            tracing::warn!(error = %e, "no checkpoint thread; the audit writer checkpoints itself");
        })
        .ok();
    let anchors = checkpointer.as_ref().map(|_| anchors);
    let mut received = Vec::with_capacity(MAX_BATCH);
    // Blocks for the first command, then takes whatever else is waiting: that is the group.
    while commands.blocking_recv_many(&mut received, MAX_BATCH) > 0 {
        let mut batch = Vec::with_capacity(received.len());
        for command in received.drain(..) {
            match command {
                Command::Append { event, reply } => batch.push((event, reply)),
                // Refuse new sends; what is already queued is still received and written.
                Command::Close => commands.close(),
            }
        }
        writer.commit(batch);
        // Without a checkpoint thread, anchor only when the queue runs empty.
        if anchors.is_some() || commands.is_empty() {
            writer.anchor(anchors.as_ref());
        }
    }
    writer.anchor(anchors.as_ref());
    // The last head is written before the log counts as stopped.
    drop(anchors);
    if let Some(checkpointer) = checkpointer
        && checkpointer.join().is_err()
    {
        tracing::warn!("the audit checkpoint thread panicked; the checkpoint may lag");
    }
    drop(writer);
    stopped.send_replace(true);
}

/// The checkpoint thread: writes the newest head it was sent, at most once per
/// [`CHECKPOINT_INTERVAL`] (it only anchors truncation checks; a lagging one is expected
/// after a crash), and the last one when the writer hangs up.
fn write_checkpoints(dir: &std::path::Path, heads: &std::sync::mpsc::Receiver<Checkpoint>) {
    use std::sync::mpsc::RecvTimeoutError;
    let write = |head: &Checkpoint| {
        if let Err(e) = checkpoint::write(dir, head) {
            // The records are durable; only the truncation anchor is stale.
            tracing::warn!(dir = %dir.display(), error = %e, "audit checkpoint not updated");
        }
    };
    let mut written = std::time::Instant::now();
    while let Ok(mut head) = heads.recv() {
        // Only the newest head matters: take what arrives until the interval is up.
        let due = written + CHECKPOINT_INTERVAL;
        loop {
            match heads.recv_timeout(due.saturating_duration_since(std::time::Instant::now())) {
                Ok(newer) => head = newer,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    write(&head);
                    return;
                }
            }
        }
        write(&head);
        written = std::time::Instant::now();
    }
}

impl Writer {
    /// Appends a batch with one write and one fdatasync, then answers every waiter.
    pub(super) fn commit(&mut self, batch: Vec<(AuditEvent, Reply)>) {
        if batch.is_empty() {
            return;
        }
        if self.halted {
            for (_, reply) in batch {
                let _ = reply.send(Err(self.halted_error()));
            }
            return;
        }
        let started = std::time::Instant::now();
        let Some((buf, waiters, head)) = self.encode(batch) else {
            return;
        };
        let persisted = self.persist(&buf);
        if let Some(observer) = self.observer.get() {
            observer.committed(
                waiters.len(),
                started.elapsed(),
                persisted.is_ok(),
                head.seq,
            );
        }
        if let Err(e) = persisted {
            tracing::error!(path = %self.path.display(), error = %e, records = waiters.len(),
                "audit log write failed; refusing the requests it was recording");
            let source = Arc::new(e);
            for waiter in waiters {
                let _ = waiter.reply.send(Err(AuditError::Write {
                    path: self.path.clone(),
                    source: Arc::clone(&source),
                }));
            }
            return;
        }
        self.len += buf.len() as u64;
        self.head = head;
        // A waiter that gave up (its future was dropped) is no reason to stop.
        for waiter in waiters {
            let _ = waiter.reply.send(Ok(waiter.receipt));
        }
        self.unanchored = true;
    }

    /// Hands the last durable record to the checkpoint thread, if it moved; without one,
    /// writes it here.
    fn anchor(&mut self, checkpointer: Option<&std::sync::mpsc::Sender<Checkpoint>>) {
        if !self.unanchored {
            return;
        }
        match checkpointer {
            Some(to) if to.send(self.head.clone()).is_ok() => self.unanchored = false,
            _ => self.checkpoint(),
        }
    }

    /// Writes the checkpoint of the last durable record, if it moved.
    pub(super) fn checkpoint(&mut self) {
        if !self.unanchored {
            return;
        }
        match checkpoint::write(&self.dir, &self.head) {
            Ok(()) => self.unanchored = false,
            // The records are durable; only the truncation anchor is stale.
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "audit checkpoint not updated");
            }
        }
    }

    /// Assigns seq, time and prev in arrival order and encodes the lines. Returns the bytes,
    /// the waiters, and the head the log will have once the bytes are durable; `None` if no
    /// record of the batch could be encoded (each waiter has been answered).
    fn encode(
        &self,
        batch: Vec<(AuditEvent, Reply)>,
    ) -> Option<(Vec<u8>, Vec<Waiter>, Checkpoint)> {
        // One clock read per batch: the batch commits at one instant.
        let time = match OffsetDateTime::now_utc().format(TIME_FORMAT) {
            Ok(time) => time,
            Err(e) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(AuditError::Encode {
                        reason: format!("time stamp: {e}"),
                    }));
                }
                return None;
            }
        };
        let mut head = self.head.clone();
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut waiters = Vec::with_capacity(batch.len());
        for (event, reply) in batch {
            let seq = head.seq + 1;
            match canonical_bytes(seq, &time, &head.hash, &normalize(event)) {
                Ok(canonical) => {
                    let hash = sha256_hex(&canonical);
                    buf.extend_from_slice(&line_bytes(&canonical, &hash));
                    buf.push(b'\n');
                    waiters.push(Waiter {
                        reply,
                        receipt: AuditReceipt {
                            seq,
                            hash: hash.clone(),
                        },
                    });
                    head = Checkpoint { seq, hash };
                }
                // Only this record fails; it takes no seq, so the chain stays contiguous.
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        (!waiters.is_empty()).then_some((buf, waiters, head))
    }

    /// Writes and syncs `buf`. On failure, cuts the file back to its last durable length so
    /// the log never holds a record whose requester was told it failed; if even that fails,
    /// the end of the file is unknown and the writer halts.
    fn persist(&mut self, buf: &[u8]) -> io::Result<()> {
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if result.is_err() {
            let rollback = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = rollback {
                self.halted = true;
                tracing::error!(path = %self.path.display(), error = %e,
                    "audit log could not be rolled back after a failed write; halting");
            }
        }
        result
    }

    fn halted_error(&self) -> AuditError {
        AuditError::Halted {
            path: self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn event(n: u32) -> AuditEvent {
        AuditEvent {
            action: "test".into(),
            actor: format!("actor-{n}"),
            ..Default::default()
        }
    }

    fn writer_on(file: File, dir: &std::path::Path) -> Writer {
        Writer {
            dir: dir.to_owned(),
            path: dir.join("audit.log"),
            file,
            len: 0,
            head: Checkpoint {
                seq: 0,
                hash: super::super::record::GENESIS_HASH.into(),
            },
            halted: false,
            unanchored: false,
            observer: Observer::default(),
        }
    }

    fn submit(writer: &mut Writer, n: u32) -> Vec<Result<AuditReceipt, AuditError>> {
        let mut receivers = Vec::new();
        let batch = (0..n)
            .map(|i| {
                let (tx, rx) = oneshot::channel();
                receivers.push(rx);
                (event(i), tx)
            })
            .collect();
        writer.commit(batch);
        receivers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect()
    }

    #[test]
    fn one_batch_gets_contiguous_seqs_and_one_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut writer = writer_on(file, dir.path());
        let receipts: Vec<_> = submit(&mut writer, 5)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(writer.head.seq, 5);
        assert_eq!(writer.head.hash, receipts[4].hash);
        assert_eq!(writer.len, std::fs::metadata(&path).unwrap().len());
        let text = std::fs::read_to_string(&path).unwrap();
        let times: std::collections::BTreeSet<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["time"].to_string())
            .collect();
        assert_eq!(times.len(), 1, "one batch, one commit time");
        let time = times.into_iter().next().unwrap();
        let time = time.trim_matches('"');
        assert!(
            time.ends_with('Z') && time.len() == "2025-01-01T00:00:00.000Z".len(),
            "{time}"
        );
    }

    #[test]
    fn failed_write_fails_every_waiter_and_keeps_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"").unwrap();
        // A read-only handle: the write fails, and so does the rollback, so the writer
        // also halts.
        let file = File::open(&path).unwrap();
        let mut writer = writer_on(file, dir.path());
        let results = submit(&mut writer, 3);
        assert_eq!(results.len(), 3);
        for result in results {
            assert!(
                matches!(result, Err(AuditError::Write { .. })),
                "{result:?}"
            );
        }
        assert_eq!(writer.head.seq, 0, "no record pretends to exist");
        assert!(writer.halted);
        let again = submit(&mut writer, 1);
        assert!(
            matches!(again[0], Err(AuditError::Halted { .. })),
            "{:?}",
            again[0]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(!dir.path().join("checkpoint.json").exists());
    }
}

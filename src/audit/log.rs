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
    /// Shared with the writer thread.
    observer: super::writer::Observer,
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
            observer: super::writer::Observer::default(),
        };
        Self::start(writer)
    }

    fn start(writer: Writer) -> Result<AuditLog, AuditError> {
        let dir = writer.dir.clone();
        let observer = writer.observer.clone();
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
                observer,
            }),
        })
    }

    /// Tells `observer` of every batch committed from now on (metrics). The
    /// first observer set stays; returns false if one was set before.
    pub fn observe(&self, observer: Arc<dyn super::CommitObserver>) -> bool {
        self.inner.observer.set(observer).is_ok()
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
mod tests;

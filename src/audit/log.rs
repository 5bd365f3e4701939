//! [`AuditLog`]: the handle the broker appends through.

use std::fmt;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::AuditError;
use super::anchor::{AnchorHealth, AnchorStatus};
use super::breaks::ChainBreak;
use super::checkpoint::{self, Checkpoint, CheckpointState};
use super::private;
use super::record::{AuditEvent, AuditReceipt, Outcome};
use super::seal::{AUDIT_ACTOR, AuditSigner, KEY_FILE, NEXT_KEY_FILE, SignedCheckpoint};
use super::segment::Layout;
use super::trust::{self, Facts, KeysFile};
use super::verify::{LOG_FILE, Scan, VerifyOptions, scan};
use super::writer::{self, Command, MAX_BATCH, Rotation, Seal, SegmentState, Writer};

/// The lock file that keeps a second writer off the log.
const LOCK_FILE: &str = "audit.lock";

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
    /// Every anchor outside the host and how it fares: the anchor file first, if there is
    /// one, then the sinks added with [`AuditLog::add_anchor`].
    anchors: std::sync::Mutex<Vec<Arc<AnchorHealth>>>,
    /// The last signed checkpoint written.
    checkpoints: watch::Receiver<Option<SignedCheckpoint>>,
}

/// Where an open log stands (see [`AuditLog::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStatus {
    /// The seq the last signed checkpoint covers.
    pub signed_seq: u64,
    /// The epoch of the key that signed it.
    pub key_epoch: u64,
    /// The id of the root key of the current chain (what auditors pin).
    pub root_key: String,
    /// Every anchor outside the host (the anchor file, an HTTP witness, syslog) and
    /// whether it works; empty without one.
    pub anchors: Vec<AnchorStatus>,
}

/// How a log is opened: its audit key, the key's epoch, the replica named in checkpoints,
/// the anchor, and whether to start on a log that does not continue its anchored history.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Where the audit key lives (mode 0700; `audit-key.json` 0600, `audit-root.pub`). Best
    /// on another volume than the log, or another machine's mount: a copy of the data
    /// directory then holds no key.
    pub key_dir: PathBuf,
    /// How long one key signs before the writer hands over to the next (and erases it).
    pub key_epoch: std::time::Duration,
    /// The replica named in every signed checkpoint.
    pub replica: String,
    /// A file on another volume that every signed checkpoint is also written to, and that
    /// the log is compared with at the next open.
    pub anchor: Option<PathBuf>,
    /// Start even though the log does not continue its anchored history; the reason is
    /// audited first, and a new root key starts.
    pub accept_divergence: Option<String>,
    /// Checkpoints of this log that witnesses outside the host hold (the shared store's
    /// copy), each with where it came from; compared like the anchor file's.
    pub anchored: Vec<(String, SignedCheckpoint)>,
    /// When the live segment is sealed and a new one started, and how long sealed segments
    /// are kept.
    pub rotation: Rotation,
    /// The longest a group commit waits for more records when the load says more are
    /// coming (zero: never); see `audit::pace`.
    pub commit_linger: std::time::Duration,
}

impl AuditOptions {
    /// Keys in `key_dir`, a new key every hour, replica "local", no anchor.
    pub fn new(key_dir: impl Into<PathBuf>) -> Self {
        AuditOptions {
            key_dir: key_dir.into(),
            key_epoch: std::time::Duration::from_secs(3600),
            replica: "local".into(),
            anchor: None,
            accept_divergence: None,
            anchored: Vec::new(),
            rotation: Rotation::default(),
            commit_linger: super::DEFAULT_COMMIT_LINGER,
        }
    }
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
    /// Opens or creates `<dir>/audit.log` and starts its writer thread, with the audit key
    /// in `<dir>/key` and the defaults of [`AuditOptions::new`]. The broker keeps its key
    /// apart from the log ([`AuditLog::open_with`]); this is for tests and tools.
    ///
    /// # Errors
    /// As [`AuditLog::open_with`].
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        Self::open_with(dir, &AuditOptions::new(dir.join("key")))
    }

    /// Opens or creates `<dir>/audit.log` and starts its writer thread.
    ///
    /// The log and its checkpoint are created with mode 0600, and an existing log that others
    /// may read is narrowed to 0600, with a log line.
    ///
    /// Verifies the whole existing log first (time linear in its size): every record, the
    /// chain, the audit key's hand-overs and the signed checkpoint; then compares it with the
    /// anchored checkpoint and the audit key, and continues the chain from its last record
    /// under a new key epoch (every start begins one). A final line without its newline is a
    /// record whose write a crash interrupted; it was never acknowledged, so it is cut off,
    /// with a warning. A new log, or one of a version before the audit key, gets a new root
    /// key (`audit-root.pub` in the key directory is its public half, for auditors to pin).
    /// Blocking: call it at startup or from `spawn_blocking`.
    ///
    /// # Errors
    /// - [`AuditError::Broken`] if the existing log does not verify (edited, reordered,
    ///   truncated…): the server must not build on it; an operator has to look at it.
    /// - [`AuditError::Diverged`] if it verifies but does not continue its anchored history
    ///   (shorter than, or different from, the anchored checkpoint; an audit key of another
    ///   epoch than the log's), and `options` does not accept that with a reason.
    /// - [`AuditError::Locked`] if another `AuditLog` (in any process) has it open.
    /// - [`AuditError::Io`] and [`AuditError::Key`] if the directories or files cannot be
    ///   created, read, written or locked, or the log's mode cannot be narrowed.
    pub fn open_with(dir: &Path, options: &AuditOptions) -> Result<AuditLog, AuditError> {
        private::create_dir_all(dir).map_err(|e| AuditError::io("create", dir, e))?;
        private::create_dir_all(&options.key_dir)
            .map_err(|e| AuditError::io("create", &options.key_dir, e))?;
        // The lock is a file of its own: the log file is renamed away when it rotates.
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = private::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io("open", &lock_path, e))?;
        lock(&lock_file, &lock_path)?;
        let path = dir.join(LOG_FILE);
        // A new live segment a crash left before it took the place of the old one.
        let _ = std::fs::remove_file(dir.join(writer::NEXT_LOG_FILE));
        let file = private::options()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;
        restrict_log(&file, &path)?;
        // A record is acknowledged once its bytes are synced, which is worthless if the file
        // itself can vanish in a crash because its directory entry was never synced.
        sync_dir(dir)?;
        checkpoint::remove_stale_temporaries(dir, checkpoint::CHECKPOINT_FILE);
        for name in [KEY_FILE, NEXT_KEY_FILE, super::seal::ROOT_PUBLIC_KEY_FILE] {
            checkpoint::remove_stale_temporaries(&options.key_dir, name);
        }
        if let Some(anchor) = &options.anchor
            && let (Some(parent), Some(name)) = (anchor.parent(), anchor.file_name())
        {
            checkpoint::remove_stale_temporaries(parent, &name.to_string_lossy());
        }
        let mut anchored = options.anchored.clone();
        if let (Some(anchor), Some(checkpoint)) = (&options.anchor, read_anchor(options)?) {
            anchored.push((anchor.display().to_string(), checkpoint));
        }
        let keys = trust::read_keys(dir)?;
        let kept: Vec<SignedCheckpoint> = anchored.iter().map(|(_, c)| c.clone()).collect();
        let layout = Layout::read(dir)?;
        let scan = recover(dir, &file, &layout, &keys, &kept)?;
        let mut diverged = Vec::new();
        for (source, checkpoint) in &anchored {
            if let Some(kind) = scan.facts.judge(checkpoint) {
                let place = ChainBreak {
                    file: None,
                    line: checkpoint.seq.min(scan.report.records + 1),
                    seq: Some(checkpoint.seq),
                    kind,
                };
                diverged.push(format!(
                    "against the checkpoint anchored in {source} (seq {}, signed {}): {place}",
                    checkpoint.seq, checkpoint.time
                ));
            }
        }
        let signer = reconcile_keys(&options.key_dir, &scan.facts, &mut diverged)?;
        if !diverged.is_empty() && options.accept_divergence.is_none() {
            return Err(AuditError::Diverged {
                dir: dir.to_owned(),
                problem: diverged.join("; "),
            });
        }
        let head = Checkpoint {
            seq: scan.report.head_seq,
            hash: scan.report.head_hash.clone(),
        };
        let segment = SegmentState::at_open(&path, &scan)?;
        let mut writer = Writer {
            dir: dir.to_owned(),
            path,
            file,
            _lock: lock_file,
            len: scan.file_lens.last().copied().unwrap_or(0),
            head,
            frontier: scan.frontier.clone(),
            segment,
            rotation: options.rotation.clone(),
            commit_linger: options.commit_linger,
            last_time: super::tail::tail(dir, 1)?
                .pop()
                .and_then(|record| writer::parse_time(&record.time)),
            seal: Seal {
                signer,
                key_dir: options.key_dir.clone(),
                epoch_length: options.key_epoch,
                next_handover: std::time::Instant::now() + options.key_epoch,
                keys_len: keys.good_len,
                replica: options.replica.clone(),
                anchor: options.anchor.clone(),
                anchor_health: Arc::new(AnchorHealth::new(
                    "file",
                    options
                        .anchor
                        .as_ref()
                        .map(|path| path.display().to_string())
                        .unwrap_or_default(),
                )),
                published: Arc::new(watch::channel(None).0),
            },
            halted: false,
            unanchored: false,
            observer: super::writer::Observer::default(),
        };
        // With the key in force when the segment was made: the next key only signs for
        // sizes from its hand-over on.
        writer.seal_unsealed(&layout, &scan)?;
        match (&options.accept_divergence, diverged.is_empty()) {
            (Some(reason), false) => accept(&mut writer, reason, &diverged)?,
            _ => writer.hand_over(None)?,
        }
        writer.remove_expired_leftovers(&layout);
        writer.expire();
        let head = writer.head.clone();
        // The first signed checkpoint of this run, before anything is appended.
        let signed = writer
            .signed_head()
            .ok_or_else(|| AuditError::key("no audit key after the hand-over"))?;
        writer
            .places()
            .write(&signed)
            .map_err(|e| AuditError::io("write the signed checkpoint in", dir, e))?;
        writer.unanchored = false;
        tracing::info!(dir = %dir.display(), head_seq = head.seq, "audit log open");
        Self::start(writer)
    }

    fn start(writer: Writer) -> Result<AuditLog, AuditError> {
        let dir = writer.dir.clone();
        let observer = writer.observer.clone();
        let checkpoints = writer.seal.published.subscribe();
        let anchors = writer
            .seal
            .anchor
            .is_some()
            .then(|| Arc::clone(&writer.seal.anchor_health))
            .into_iter()
            .collect();
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
                anchors: std::sync::Mutex::new(anchors),
                checkpoints,
            }),
        })
    }

    /// Where the log stands, for `mayfly status`: the last signed checkpoint, the key, the
    /// root key, and the anchors.
    pub fn status(&self) -> AuditStatus {
        let signed = self.inner.checkpoints.borrow().clone();
        let root_key = self
            .handovers()
            .ok()
            .and_then(|handovers| {
                handovers
                    .iter()
                    .rev()
                    .find(|handover| handover.epoch == 0)
                    .and_then(|root| root.key().ok())
            })
            .map(|key| key.id());
        let anchors = self
            .inner
            .anchors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|anchor| anchor.status())
            .collect();
        AuditStatus {
            signed_seq: signed.as_ref().map_or(0, |checkpoint| checkpoint.seq),
            key_epoch: signed.as_ref().map_or(0, |checkpoint| checkpoint.epoch),
            root_key: root_key.unwrap_or_default(),
            anchors,
        }
    }

    /// Adds an anchor that a task of its own writes (an HTTP witness, syslog) to what
    /// [`status`](Self::status) reports; the task records each try in `health`.
    pub fn add_anchor(&self, health: Arc<AnchorHealth>) {
        self.inner
            .anchors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(health);
    }

    /// The last signed checkpoint, updated about once a second while records are appended
    /// (for witnesses outside the host).
    pub fn checkpoints(&self) -> watch::Receiver<Option<SignedCheckpoint>> {
        self.inner.checkpoints.clone()
    }

    /// The key hand-overs so far, from the root key on (`keys.jsonl`), for a witness to
    /// check the checkpoints by.
    ///
    /// # Errors
    /// [`AuditError::Io`] or [`AuditError::Key`] if `keys.jsonl` cannot be read.
    pub fn handovers(&self) -> Result<Vec<super::Handover>, AuditError> {
        trust::read_keys(&self.inner.dir).map(|keys| keys.handovers)
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
///
/// A lock that is held is tried again for up to [`LOCK_PATIENCE`] before the log counts as
/// open elsewhere: a process that forks (to start a helper program) holds a copy of every
/// open file until its child calls exec, so a log closed a moment ago can still look
/// locked for a few milliseconds.
fn lock(file: &File, path: &Path) -> Result<(), AuditError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(AuditError::io("lock", path, e)),
        }
    }
}

/// How long [`lock`] waits for a lock that is held.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

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

/// Verifies the existing log (with the key hand-overs of `keys`, and the roots at the
/// anchored checkpoint's size for the caller to judge) and cuts off a torn final line of the
/// live segment (`file`).
fn recover(
    dir: &Path,
    file: &File,
    layout: &Layout,
    keys: &KeysFile,
    anchored: &[SignedCheckpoint],
) -> Result<Scan, AuditError> {
    let checkpoint = checkpoint::read(dir)?;
    let options = VerifyOptions {
        public_key: None,
        checkpoints: anchored.to_vec(),
    };
    let (reader, lens) = layout.reader()?;
    let scan = scan(reader, lens, &checkpoint, layout, &options, &keys.handovers)?;
    if let Some(problem) = scan.report.problem.clone() {
        return Err(AuditError::Broken {
            dir: dir.to_owned(),
            problem: Box::new(problem),
        });
    }
    for note in &scan.report.notes {
        tracing::warn!(dir = %dir.display(), "audit log: {note}");
    }
    if keys.torn {
        tracing::warn!(dir = %dir.display(),
            "keys.jsonl ends with a key hand-over a crash interrupted; it never took effect, removing it");
    }
    if let Some(torn) = scan.torn_len {
        let good = scan.file_lens.last().copied().unwrap_or(0);
        tracing::warn!(path = %layout.live.display(), bytes = torn,
            "audit log ends with a record a crash interrupted; it was never acknowledged, removing it");
        file.set_len(good)
            .and_then(|()| file.sync_data())
            .map_err(|e| AuditError::io("truncate torn record in", &layout.live, e))?;
    }
    Ok(scan)
}

/// The anchored checkpoint, if an anchor is configured and holds one. An anchor that cannot
/// be read as a checkpoint is logged and passed over: it never stops the broker (a witness
/// that is away must not block issuance); one that reads and disagrees does.
fn read_anchor(options: &AuditOptions) -> Result<Option<SignedCheckpoint>, AuditError> {
    let Some(anchor) = &options.anchor else {
        return Ok(None);
    };
    match checkpoint::read_file(anchor) {
        Ok(CheckpointState::Found(anchored)) => Ok(Some(anchored)),
        Ok(CheckpointState::Missing) => {
            tracing::info!(anchor = %anchor.display(), "no anchored audit checkpoint yet");
            Ok(None)
        }
        Ok(CheckpointState::Legacy(_) | CheckpointState::Unreadable(_)) => {
            tracing::warn!(anchor = %anchor.display(),
                "the audit anchor holds no signed checkpoint; it is overwritten with the next one");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(anchor = %anchor.display(), error = %e,
                "the audit anchor cannot be read; starting without comparing against it");
            Ok(None)
        }
    }
}

/// The audit key to continue with, after finishing or discarding an interrupted hand-over;
/// `None` for a log without keys (a new root key follows). A key that does not match the
/// end of the log's key chain is a divergence, described in `diverged`.
fn reconcile_keys(
    key_dir: &Path,
    facts: &Facts,
    diverged: &mut Vec<String>,
) -> Result<Option<Arc<AuditSigner>>, AuditError> {
    let key_path = key_dir.join(KEY_FILE);
    let next_path = key_dir.join(NEXT_KEY_FILE);
    let mut current = AuditSigner::load(&key_path)?;
    let last = facts.epochs.last();
    if let Some(next) = AuditSigner::load(&next_path)? {
        let took_over =
            last.is_some_and(|last| last.epoch == next.epoch() && last.key == next.public());
        if took_over {
            std::fs::rename(&next_path, &key_path)
                .and_then(|()| File::open(key_dir)?.sync_all())
                .map_err(|e| AuditError::io("install the new audit key as", &key_path, e))?;
            current = Some(next);
        } else {
            std::fs::remove_file(&next_path)
                .map_err(|e| AuditError::io("remove", &next_path, e))?;
        }
    }
    let dir = key_dir.display();
    match (last, current) {
        (None, None) => Ok(None),
        (Some(last), Some(key)) if last.epoch == key.epoch() && last.key == key.public() => {
            Ok(Some(Arc::new(key)))
        }
        (None, Some(key)) => {
            diverged.push(format!(
                "the audit key in {dir} is at epoch {} but the log holds no key hand-over: \
                 the log or its keys.jsonl was replaced",
                key.epoch()
            ));
            Ok(None)
        }
        (Some(last), None) => {
            diverged.push(format!(
                "the log's key chain ends at epoch {} but there is no audit key in {dir}: \
                 the key was removed",
                last.epoch
            ));
            Ok(None)
        }
        (Some(last), Some(key)) if key.epoch() > last.epoch => {
            diverged.push(format!(
                "the audit key in {dir} is at epoch {} but the log's key chain ends at epoch \
                 {}: the log was rolled back",
                key.epoch(),
                last.epoch
            ));
            Ok(None)
        }
        (Some(last), Some(key)) => {
            diverged.push(format!(
                "the audit key in {dir} (epoch {}, {}) is not the one the log's key chain ends \
                 with (epoch {}, {}): the key was replaced or rolled back",
                key.epoch(),
                key.public().id(),
                last.epoch,
                last.key.id()
            ));
            Ok(None)
        }
    }
}

/// Starts over from a log an operator accepted although it diverged: the acceptance, with
/// the reason and what was found, is the first record, and a new root key takes over.
fn accept(writer: &mut Writer, reason: &str, diverged: &[String]) -> Result<(), AuditError> {
    tracing::warn!(reason, problem = %diverged.join("; "),
        "starting on an audit log that does not continue its anchored history, as accepted");
    let (reply, mut receipt) = tokio::sync::oneshot::channel();
    let event = AuditEvent {
        action: "audit.divergence.accepted".into(),
        outcome: Outcome::Ok,
        actor: AUDIT_ACTOR.into(),
        reason: Some(reason.to_owned()),
        detail: Some(serde_json::json!({ "found": diverged })),
        ..AuditEvent::default()
    };
    writer.commit(vec![(event, reply)]);
    match receipt.try_recv() {
        Ok(Ok(_)) => writer.hand_over(Some(reason.to_owned())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AuditError::Closed),
    }
}

#[cfg(test)]
mod tests;
